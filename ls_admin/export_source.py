"""Where exported labels come from: the synced dataset folder or a Label Studio project.

Both sources give ``Label`` items built the same way: a project's annotations go through
``label_sync.records.annotation_record``, the very function the webhook sync uses, so an export
from the project and one from ``annotations_new/`` agree field for field.

- Synced folder, newest per object: ``annotations_new/<category>/<name>_<k>.npz`` (the sync
  keeps there the newest valid annotation of each object). Objects whose only annotations are
  skips have no file there; they are read from the sync store (``annotations_new/.sync.sqlite3``
  or ``--sync-store``) when it exists.
- Synced folder, all annotations: the sync store keeps every version of every annotation; per
  annotation its newest valid version is taken (as the sync does), or a skip when it has none.
- Project: its annotated tasks from export snapshots (``ls_admin.snapshot``); cancelled
  (skipped) annotations become skipped labels, annotations the sync would reject are reported
  and left out.

A skipped label keeps the object's INITIAL pose and CAD, with ``skipped=True`` and the quality
code of "bad quality - no object" so ImageNet3D loaders that drop ``status_bad`` drop it too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from label_sync.database import redact_url
from label_sync.engine import SyncService
from label_sync.records import (SyncRejected, annotation_record, annotator_of, is_skipped,
                                object_key_of, parse_updated_at, record_from_fields)
from label_sync.store import default_store_url, store_exists
from pose6d.dataset import GROUND_TRUTH, INITIAL, SYNCED, Dataset, ObjectKey, ObjectRecord
from pose6d.errors import DataError, Pose6DError, StoreFailure
from pose6d.inout import load_npz
from pose6d.labels import BAD_QUALITY

BAD_STATUS = BAD_QUALITY.code  # status_bad
SKIPPED_STATUS = BAD_STATUS  # what a skipped object's object_status says (module docstring)


class ExportError(Pose6DError):
    """An export or report that cannot run (missing folder, no store, ...). One-line message."""


@dataclasses.dataclass
class ExportSummary:
    """What an export wrote: files, objects (annotations) and how many of them were marked."""

    files: int = 0
    objects: int = 0
    skipped: int = 0
    bad: int = 0
    left_out: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Label:
    """One exported label of one object.

    record: pose (radians inside Pose), cad_index, extra (bbox x1 y1 x2 y2 px, width, height,
    object_status, dense codes, ...). For a skipped label it is the initial record.
    updated_us: updated_at as microseconds since the epoch (the ordering key; 0 when unknown).
    """

    key: ObjectKey
    record: ObjectRecord
    annotator: str
    skipped: bool = False
    annotation_id: int = -1
    task_id: int = -1
    project_id: int = -1
    updated_at: str = ""
    updated_us: int = 0

    @property
    def object_status(self) -> str:
        return SKIPPED_STATUS if self.skipped else str(self.record.extra.get("object_status", ""))

    @property
    def dense(self) -> str:
        value = self.record.extra.get("dense")
        return "" if value is None else str(value)

    @property
    def usable(self) -> bool:
        """A completed label with an object in it (not skipped, not status_bad)."""
        return not self.skipped and self.object_status != BAD_STATUS


def _int(value: Any, default: int = -1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _stamp(value: Any) -> tuple[str, int]:
    try:
        return parse_updated_at(value)
    except ValueError:  # MalformedEvent is a ValueError: old records may lack updated_at
        return "", 0


def label_from_record(key: ObjectKey, record: ObjectRecord, skipped: bool = False,
                      **ids: Any) -> Label:
    """A Label from a synced record (its extra holds annotator, ls_*_id and updated_at)."""
    extra = record.extra
    updated_at, updated_us = _stamp(ids.get("updated_at", extra.get("updated_at")))
    return Label(key, record, str(ids.get("annotator", extra.get("annotator", "unknown"))),
                 skipped, _int(ids.get("annotation_id", extra.get("ls_annotation_id"))),
                 _int(ids.get("task_id", extra.get("ls_task_id"))),
                 _int(ids.get("project_id", extra.get("ls_project_id"))), updated_at, updated_us)


def newest_per_object(labels: Iterable[Label]) -> list[Label]:
    """One label per object: the newest completed one, else the newest skip. Sorted by key."""
    best: dict[ObjectKey, Label] = {}
    for lab in labels:
        rank = (not lab.skipped, lab.updated_us, lab.annotation_id)
        cur = best.get(lab.key)
        if cur is None or rank > (not cur.skipped, cur.updated_us, cur.annotation_id):
            best[lab.key] = lab
    return [best[k] for k in sorted(best)]


def sort_labels(labels: Iterable[Label]) -> list[Label]:
    """Key order, then oldest first (deterministic output)."""
    return sorted(labels, key=lambda l: (l.key, l.updated_us, l.annotation_id))


# --- Reading 10k records: np.load parses every member's header with ast (~1.6 ms a record). ---

def read_records(dataset: Dataset, kind: str, keys: Sequence[ObjectKey] | None = None
                 ) -> dict[ObjectKey, ObjectRecord]:
    """Every record of ``kind`` (annotations / annotations_new / ground_truth), by key.

    Raises ExportError naming the first malformed file.
    """
    keys = dataset.objects(kind) if keys is None else list(keys)
    out = {}
    try:
        for key in keys:
            path = dataset.record_path(key, kind)
            out[key] = ObjectRecord.from_npz_dict(load_npz(path), path)
    except DataError as exc:
        raise ExportError(str(exc)) from None
    return out


# --- Synced folder and sync store. ---


def store_labels(dataset: Dataset, store_url: str | None = None) -> list[Label] | None:
    """Every not-deleted annotation the sync store has seen, one Label each; None without a store.

    Per annotation: its newest valid version (what the sync would write), else a skip when its
    versions say it was skipped; annotations that were only ever rejected are left out.
    """
    url = default_store_url(dataset.root, store_url)
    if not store_exists(url):
        return None
    try:
        sync = SyncService(dataset, url)
        try:
            versions = sync.versions()
        finally:
            sync.close()
    except StoreFailure as exc:
        raise ExportError(f"cannot read the sync store {redact_url(url)}: {exc}") from None
    best = {}
    for v in versions:
        if not (v.valid or v.skipped):
            continue
        rank = (v.valid, v.updated_us, v.content_hash)  # valid beats skip, then newest
        if v.annotation_id not in best or rank > best[v.annotation_id][0]:
            best[v.annotation_id] = (rank, v)
    initial: dict[ObjectKey, ObjectRecord] = {}
    out = []
    for _, v in best.values():
        try:
            key = ObjectKey.parse(v.object_key)
            if v.valid:
                record = record_from_fields(v.record, f"sync store annotation {v.annotation_id}")
            else:
                if key not in initial:
                    initial[key] = dataset.read(key, INITIAL)
                record = initial[key]
        except DataError as exc:
            raise ExportError(f"sync store annotation {v.annotation_id}: {exc}") from None
        out.append(label_from_record(key, record, skipped=not v.valid, annotation_id=v.annotation_id,
                                     task_id=v.task_id, project_id=v.project_id,
                                     updated_at=v.updated_at,
                                     **({} if v.valid else {"annotator": v.annotator or "unknown"})))
    return sort_labels(out)


def labels_from_synced(dataset: Dataset, all_annotations: bool = False,
                       store_url: str | None = None) -> list[Label]:
    """Labels of the synced folder (module docstring). Raises ExportError when it cannot."""
    if not (dataset.root / INITIAL).is_dir():
        raise ExportError(f"{dataset.root} has no {INITIAL}/ folder (not a dataset root)")
    stored = store_labels(dataset, store_url)
    if all_annotations:
        if stored is None:
            raise ExportError(f"--all-annotations needs the sync store "
                              f"({redact_url(default_store_url(dataset.root, store_url))} not found); "
                              "or export --from project")
        return stored
    if not (dataset.root / SYNCED).is_dir() and stored is None:
        raise ExportError(f"{dataset.root} has no {SYNCED}/ folder: nothing was synced yet")
    labels = [label_from_record(k, r) for k, r in read_records(dataset, SYNCED).items()]
    done = {lab.key for lab in labels}
    skips = [lab for lab in stored or [] if lab.skipped and lab.key not in done]
    return sort_labels(labels + newest_per_object(skips))


# --- Label Studio project. ---


def labels_from_tasks(tasks: Iterable[dict], dataset: Dataset, all_annotations: bool = False,
                      on_reject: Callable[[str], None] | None = None,
                      progress: Callable[[int], None] | None = None) -> list[Label]:
    """Labels of Label Studio tasks (dicts with ``data`` and ``annotations``).

    Cancelled annotations become skipped labels (initial pose); annotations the sync would reject
    go to ``on_reject("task T annotation A: reason")`` and are left out.
    """
    out = []
    for task in tasks:
        if progress:
            progress(1)
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
        if not annotations:
            continue
        try:
            key = object_key_of(task)
            initial = dataset.read(key, INITIAL)
        except (SyncRejected, DataError) as exc:
            if on_reject:
                on_reject(f"task {task.get('id')}: {exc}")
            continue
        for ann in annotations:
            ann = dict(ann, project=ann.get("project", task.get("project")))
            ids = dict(annotator=annotator_of(ann), annotation_id=ann.get("id"),
                       task_id=task.get("id"), project_id=ann.get("project"),
                       updated_at=ann.get("updated_at"))
            if is_skipped(ann):
                out.append(label_from_record(key, initial, skipped=True, **ids))
                continue
            try:
                record = annotation_record(ann, task, initial, dataset)
            except ValueError as exc:  # SyncRejected, MalformedEvent (updated_at)
                if on_reject:
                    on_reject(f"task {task.get('id')} annotation {ann.get('id')}: {exc}")
                continue
            out.append(label_from_record(key, record, **ids))
    return sort_labels(out if all_annotations else newest_per_object(out))


def labels_from_project(client: Any, project_id: int, dataset: Dataset,
                        all_annotations: bool = False, **kwargs: Any) -> list[Label]:
    """Labels of a Label Studio project (see labels_from_tasks); ExportError if unreachable."""
    from ls_admin.connection import AdminError
    from ls_admin.snapshot import annotated_tasks

    try:  # streamed: 100k tasks with their annotations are not held in memory at once
        return labels_from_tasks(annotated_tasks(client, project_id), dataset, all_annotations,
                                 **kwargs)
    except AdminError as exc:
        raise ExportError(str(exc)) from None


def user_names(client: Any) -> dict[str, str]:
    """{str(user id): email} of the Label Studio users (annotators are stored by id)."""
    try:
        return {str(u.id): u.email or str(u.id) for u in client.users.list()}
    except Exception:  # names are a nicety of the report; ids still work
        return {}


# --- Output: a staging folder renamed into place, so a failed export leaves nothing half done. ---


@contextlib.contextmanager
def staged_output(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty sibling folder to write into; on success it becomes ``out``.

    ``out`` must be absent or empty unless ``overwrite`` (then the old folder is replaced only
    after the new one is complete). On an exception the staging folder is removed.
    """
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "x")
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


STALE_STAGE_S = 60.0  # a staging folder untouched this long belongs to an export that died


def remove_stale_stages(out: Path, now: float | None = None) -> None:
    """Clean what an export killed midway left beside ``out``: its hidden staging folder
    (``.<name>.partial-*``: never taken for an output) is removed; a complete earlier output it
    had moved aside (``.<name>.old-*/x``) while swapping is put back when ``out`` is missing."""
    now = time.time() if now is None else now
    for folder in out.parent.glob(f".{out.name}.*-*"):
        kind = folder.name[len(out.name) + 2:].split("-", 1)[0]
        if kind not in ("partial", "old") or now - folder.stat().st_mtime < STALE_STAGE_S:
            continue
        if kind == "old" and (folder / "x").is_dir() and not out.exists():
            os.replace(folder / "x", out)
        shutil.rmtree(folder, ignore_errors=True)


def parallel_writes(jobs: Sequence[Any], write: Callable[[Any], Any], workers: int = 8,
                    desc: str = "write", progress: bool = True) -> None:
    """Run ``write(job)`` for every job on a thread pool (each file write fsyncs: threads overlap
    the waits) with a tqdm bar; the first exception propagates."""
    from tqdm import tqdm

    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress) as bar:
        for _ in pool.map(write, jobs):
            bar.update(1)


# --- Review decisions (pose6d-review): rejected objects are left out unless asked. ---


def read_quality_store(dataset: Dataset, store_url: str | None, read: Callable[[Any], Any],
                       empty: Any) -> Any:
    """``read(store)`` on the quality-control tables of the sync store (a
    label_sync.quality_store.QualityStore, closed afterwards); ``empty``, and no store made,
    when there is none."""
    from label_sync.quality_store import QualityStore

    url = default_store_url(dataset.root, store_url)
    if not store_exists(url):
        return empty
    store = QualityStore(url)
    try:
        return read(store)
    finally:
        store.close()


def stored_reviews(dataset: Dataset, store_url: str | None = None) -> list[Any]:
    """Every live review decision in the sync store (label_sync.quality_store.Review); [] when
    there is no store. ExportError when the store cannot be read."""
    def reviews(store: Any) -> list[Any]:
        with store.transaction() as tx:
            return tx.reviews()

    try:
        return read_quality_store(dataset, store_url, reviews, [])
    except StoreFailure as exc:
        url = redact_url(default_store_url(dataset.root, store_url))
        raise ExportError(f"cannot read the reviews in {url}: {exc}") from None


def rejected_annotations(dataset: Dataset, store_url: str | None = None) -> dict[int, int | None]:
    """{annotation id: reviewed_us} of the annotations whose live review rejects them (the
    store's pose6d_qc_review); {} without a store."""
    reviews = stored_reviews(dataset, store_url)
    newest: dict[int, Any] = {}
    for r in reviews:  # the newest live review of an annotation decides (QualityTx.review_of)
        if r.annotation_id not in newest or (r.updated_us, r.review_annotation_id) > \
                (newest[r.annotation_id].updated_us, newest[r.annotation_id].review_annotation_id):
            newest[r.annotation_id] = r
    return {a: r.reviewed_us for a, r in newest.items() if r.decision == "reject"}


def is_rejected(label: Label, rejected: dict[int, int | None]) -> bool:
    """The label's record says review_status "rejected", or the store's review of its
    annotation rejects the version it has (a later edit is not covered by the review)."""
    if label.record.extra.get("review_status") == "rejected":
        return True
    if label.skipped or label.annotation_id not in rejected:
        return False
    reviewed_us = rejected[label.annotation_id]
    return reviewed_us is None or label.updated_us <= reviewed_us


def without_rejected(labels: list[Label], dataset: Dataset,
                     store_url: str | None = None) -> tuple[list[Label], int]:
    """(the labels a reviewer did not reject, how many were left out)."""
    rejected = rejected_annotations(dataset, store_url)
    kept = [lab for lab in labels if not is_rejected(lab, rejected)]
    return kept, len(labels) - len(kept)


def ground_truth_records(dataset: Dataset) -> dict[ObjectKey, ObjectRecord]:
    """The dataset's ground_truth/ records (demo datasets, test questions); {} when none."""
    return read_records(dataset, GROUND_TRUTH) if (dataset.root / GROUND_TRUTH).is_dir() else {}
