"""Review with send-back (the original tool's quality page), over Label Studio Community.

``create_review``: a review project of the objects' submitted annotations (the sync store's
winners: what ``annotations_new/`` holds), each as a task showing the photo with the submitted
pose rendered over it (a PNG under ``<data root>/qc_review/``, served as a local file like the
photos), Accept / Reject, the reasons and a comment (label_sync.review). Registered in the store
as a REVIEW project before anything is imported; a re-run adds only annotations not yet in it.

``sync_reviews``: pulls the review projects' annotations through the SDK into the store (as the
webhook would: nothing depends on a webhook having arrived), then sends back every rejection not
yet sent back: a fresh task for the same object in the main project, carrying the review note
(``data.review_note``, also shown above the command box through ``data.instructions``) and the
marker ``data.sent_back_for`` = the review annotation id. The task's id is recorded right after
it is created; a task created by a run killed before it recorded one is found again by its
marker, so nothing is sent back twice. Label Studio 1.23.2's alternatives were measured
(docs/quality_control.md): a cancelled annotation never returns to its annotator, and a deletion
drops the annotation from Label Studio; a fresh task returns to the queue and keeps both.
"""
from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path
from typing import Any, Iterable

from label_studio_sdk import LabelStudio

from label_sync.engine import SyncService
from label_sync.quality_store import REVIEW, QualityStore
from label_sync.records import SyncRejected, record_from_fields
from label_sync import review as R
from label_sync.store import Version, default_store_url
from ls_admin.connection import AdminError, api_error_text, sdk_call
from ls_admin.evaluate_results import store_results
from ls_admin.local_files import ensure_local_storage
from ls_admin.project import LIST_PAGE, ensure_webhook, find_project, import_batches
from pose6d.dataset import Dataset, ObjectKey
from pose6d.errors import DataError
from pose6d.labeling import DATA_FIT_SCORE, DATA_INSTRUCTIONS
from pose6d.labels import CATEGORY_INSTRUCTIONS

DEFAULT_REVIEW_TITLE = "pose6d review"
RENDERS = "qc_review"  # <data root>/qc_review/<category>/<name>_<k>.a<id>.<hash>.png
DEFAULT_FIT_BELOW = 0.5  # --flagged: a prefill fit score below this is flagged (scores are 0-1)
HUMAN_SOURCE = "synced"  # the A/B pose source of the synced human pose (ls_admin.evaluate)


@dataclasses.dataclass
class ReviewOptions:
    """What to review; see pose6d-review create --help."""

    data_root: Path
    main_project_id: int | None = None
    main_title: str | None = None
    review_title: str = DEFAULT_REVIEW_TITLE
    mode: str = "all"  # all | sample | flagged
    sample: int = 0
    seed: int = 0
    fit_below: float = DEFAULT_FIT_BELOW
    backend_url: str | None = None  # the review project's sync webhook goes there when given
    backend_auth: tuple[str, str] | None = None
    store_url: str | None = None
    progress: bool = True


@dataclasses.dataclass
class ReviewReport:
    lines: list[str] = dataclasses.field(default_factory=list)
    imported: int = 0
    present: int = 0


# --- What to review. ---


def winners(sync: SyncService, main_project_id: int) -> list[Version]:
    """Per object, the synced winner (what annotations_new/ holds) if it is of the main project."""
    keys = sorted({v.object_key for v in sync.versions(main_project_id)})
    out = []
    with sync.store.transaction() as tx:
        for key in keys:
            win = tx.winner(key)
            if win is not None and win.project_id == main_project_id:
                out.append(win)
    return out


def lost_ab(store: QualityStore) -> set[str]:
    """Objects whose human (synced) pose lost a blind A/B evaluation against another source:
    more raters (each rater's newest verdict, as ``pose6d-evaluate results`` counts them)
    picked the other pose. Empty when no evaluation ran."""
    lost: set[str] = set()
    for e in store_results(store):
        if e["b"] == HUMAN_SOURCE != e["a"]:
            lost |= {o["object"] for o in e["a_won"]}
        elif e["a"] == HUMAN_SOURCE != e["b"]:
            lost |= {o["object"] for o in e["b_won"]}
    return lost


def flags(win: Version, task_data: dict, fit_below: float, lost: set[str]) -> list[str]:
    """Why the report flags this object's annotation (empty: not flagged)."""
    out = []
    if (win.record or {}).get("pose_rendered") is False:
        out.append("pose not rendered")
    score = task_data.get(DATA_FIT_SCORE)
    if isinstance(score, (int, float)) and score < fit_below:
        out.append(f"fit score {score:.2f}")
    if win.object_key in lost:
        out.append("lost the A/B evaluation")
    return out


def select(candidates: list[Version], mode: str, sample: int = 0, seed: int = 0,
           flagged: dict[int, list[str]] | None = None) -> list[Version]:
    """all, a random ``sample`` (seeded: the same draw on a re-run), or the flagged ones."""
    if mode == "flagged":
        return [v for v in candidates if (flagged or {}).get(v.annotation_id)]
    if mode == "sample":
        return sorted(random.Random(seed).sample(candidates, min(sample, len(candidates))),
                      key=lambda v: v.object_key)
    return candidates


# --- The review tasks. ---


def render_path(dataset: Dataset, win: Version) -> Path:
    key = ObjectKey.parse(win.object_key)
    name = f"{key.stem}.a{win.annotation_id}.{win.content_hash[:8]}.png"
    return dataset.root / RENDERS / key.category / name


def render_review_image(dataset: Dataset, win: Version) -> Path:
    """The photo with the submitted pose and CAD model rendered over it (kept: not redone)."""
    from pose6d.inout import read_image, write_image
    from pose6d.overlay import render_overlay

    path = render_path(dataset, win)
    if not path.is_file():
        key = ObjectKey.parse(win.object_key)
        record = record_from_fields(win.record, f"annotation {win.annotation_id}")
        mesh = dataset.cad.mesh(key.category, record.cad_index)
        image, _ = render_overlay(read_image(dataset.image_path(key)), mesh, record.pose)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, image)
    return path


def review_task(dataset: Dataset, win: Version, main_project_id: int, prefix: str,
                main_data: dict, why: list[str], names: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """One review task (data only: the review config's fields, label_sync.review)."""
    from urllib.parse import quote

    key = ObjectKey.parse(win.object_key)
    rel = render_review_image(dataset, win).relative_to(dataset.root).as_posix()
    photo = main_data.get("image") or prefix + quote(dataset.image_relpath(key), safe="/")
    record = win.record or {}
    annotator = (names or {}).get(str(win.annotator), win.annotator or "unknown")
    summary = (f"annotation {win.annotation_id} by {annotator}, "
               f"{win.updated_at[:19].replace('T', ' ')} UTC, CAD model {record.get('cad_index')}"
               + (f"; flagged: {', '.join(why)}" if why else ""))
    return {"data": {"object_key": str(key), "category": key.category,
                     R.DATA_REVIEWED: win.annotation_id,
                     R.DATA_REVIEWED_US: win.updated_us, R.DATA_MAIN_PROJECT: main_project_id,
                     R.DATA_OVERLAY: prefix + quote(rel, safe="/"), R.DATA_PHOTO: photo,
                     R.DATA_SUMMARY: summary}}


def task_data(client: LabelStudio, project_id: int) -> list[tuple[int, dict]]:
    """(task id, data) of every task of a project (big pages, ids and data only)."""
    pages = sdk_call("listing tasks", client.tasks.list, project=project_id, include="id,data",
                     page_size=LIST_PAGE)
    try:
        return [(int(t.id), t.data if isinstance(t.data, dict) else {}) for t in pages]
    except Exception as exc:  # noqa: BLE001 - the SDK pages lazily: errors surface here
        raise AdminError(f"listing the tasks of project {project_id} failed: "
                         f"{api_error_text(exc)}") from None


def ensure_review_project(client: LabelStudio, title: str) -> tuple[Any, str]:
    project = find_project(client, title)
    config = R.review_config()
    if project is None:
        return sdk_call("creating the review project", client.projects.create, title=title,
                        label_config=config, show_skip_button=True), "created"
    if (project.label_config or "").strip() != config.strip():
        sdk_call("updating the review config", client.projects.update, id=project.id,
                 label_config=config)
        return project, "labeling config updated"
    return project, "found"


def create_review(client: LabelStudio, options: ReviewOptions) -> ReviewReport:
    """Make (or extend) the review project; AdminError (one line) on any failure."""
    from tqdm import tqdm

    from ls_admin.export_source import user_names

    dataset = Dataset.open(options.data_root)
    main = find_project(client, options.main_title or "", options.main_project_id)
    if main is None:
        raise AdminError(f"no project titled {options.main_title!r}; pass --project-id")
    url = default_store_url(dataset.root, options.store_url)
    sync, store = SyncService(dataset, url), QualityStore(url)
    try:
        kind = _kind(store, main.id)
        if kind:
            raise AdminError(f"project {main.id} is a {kind} project, not a labelling project")
        project, state = ensure_review_project(client, options.review_title)
        report = ReviewReport([f"review project {project.id} {options.review_title!r}: {state}"])
        settings = {"mode": options.mode, "sample": options.sample, "seed": options.seed,
                    "fit_below": options.fit_below}
        with store.transaction() as tx:  # registered before any task: its events are reviews
            tx.register_project(project.id, REVIEW, options.review_title, main.id, settings)
        prefix, state = ensure_local_storage(client, project.id, dataset.root)
        report.lines.append(f"images: {state}")
        if options.backend_url:
            hook = ensure_webhook(client, project.id, options.backend_url, options.backend_auth)
            report.lines.append(f"sync webhook: {hook}")
        # (annotation, version) pairs already in review: an annotation edited since gets a new task
        present = {(d.get(R.DATA_REVIEWED), d.get(R.DATA_REVIEWED_US))
                   for _, d in task_data(client, project.id)}
        main_data = {str(d.get("object_key")): d for _, d in task_data(client, main.id)}
        candidates = winners(sync, main.id)
        lost = lost_ab(store) if options.mode == "flagged" else set()
        why = {v.annotation_id: flags(v, main_data.get(v.object_key, {}), options.fit_below, lost)
               for v in candidates}
        chosen = select(candidates, options.mode, options.sample, options.seed, why)
        todo = [v for v in chosen if (v.annotation_id, v.updated_us) not in present]
        report.present = len(chosen) - len(todo)
        names = user_names(client) if todo else {}
        tasks = []
        for win in tqdm(todo, desc="render", unit="obj", file=sys.stderr,
                        disable=not options.progress):
            try:
                tasks.append(review_task(dataset, win, main.id, prefix,
                                         main_data.get(win.object_key, {}), why[win.annotation_id],
                                         names))
            except (DataError, OSError) as exc:
                report.lines.append(f"  not reviewable {win.object_key}: {exc}")
        report.imported = import_batches(client, project.id, tasks) if tasks else 0
        report.lines.append(f"annotations of project {main.id}: {len(candidates)} synced, "
                            f"{len(chosen)} selected ({options.mode}), imported {report.imported}, "
                            f"already in review {report.present}")
        return report
    finally:
        sync.close()
        store.close()


def _kind(store: QualityStore, project_id: int) -> str | None:
    with store.transaction() as tx:
        project = tx.project(project_id)
    return project.kind if project else None


# --- Pulling reviews and sending rejections back. ---


@dataclasses.dataclass
class SyncReport:
    pulled: int = 0
    invalid: list[str] = dataclasses.field(default_factory=list)
    deleted: int = 0
    sent_back: list[str] = dataclasses.field(default_factory=list)
    found_again: int = 0
    waiting: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"reviews pulled: {self.pulled} annotations ({len(self.invalid)} invalid, "
               f"{self.deleted} deleted since)",
               f"sent back: {len(self.sent_back)} new tasks, {self.found_again} found from a "
               "run cut short"]
        out += [f"  invalid review {line}" for line in self.invalid]
        out += [f"  sent back {line}" for line in self.sent_back]
        out += [f"  not sent back {line}" for line in self.waiting]
        return out


def pull_reviews(client: LabelStudio, sync: SyncService, store: QualityStore, project_id: int,
                 report: SyncReport) -> None:
    """Apply every annotation of review project ``project_id`` as its webhook would (idempotent:
    the store keeps the newest version), and the deletions the webhook may have missed."""
    from ls_admin.snapshot import annotated_tasks

    seen = set()
    for task in annotated_tasks(client, project_id):
        for ann in task.get("annotations") or []:
            seen.add(ann.get("id"))
            try:
                sync.apply_annotation(dict(ann, project=project_id), task)
                report.pulled += 1
            except SyncRejected as exc:
                report.invalid.append(f"annotation {ann.get('id')}: {exc}")
    with store.transaction() as tx:
        gone = [r.review_annotation_id for r in tx.reviews() if r.project_id == project_id
                and r.review_annotation_id not in seen]
    for review_id in gone:
        sync.delete_annotation(review_id, project_id)
        report.deleted += 1


def sent_back_data(original: dict, note: str, review_id: int) -> dict:
    """The data of a sent-back task: the original task's, with the note and the marker. The note
    also leads the red instructions line above the command box (labeling config: $instructions)."""
    data = {k: v for k, v in original.items()
            if k not in (R.DATA_REVIEW_NOTE, R.DATA_SENT_BACK_FOR)}
    category = str(data.get("category", ""))
    data[DATA_INSTRUCTIONS] = " ".join(filter(None, (note,
                                                     CATEGORY_INSTRUCTIONS.get(category, ""))))
    data[R.DATA_REVIEW_NOTE], data[R.DATA_SENT_BACK_FOR] = note, review_id
    return data


def send_back(client: LabelStudio, sync: SyncService, store: QualityStore, review_ids: set[int],
              report: SyncReport) -> None:
    """Send back each live rejection of review projects ``review_ids`` not yet sent back, if the
    annotation it rejects is still its object's synced one."""
    from ls_admin.export_source import user_names

    with store.transaction() as tx:
        todo = [r for r in tx.reviews("reject") if r.project_id in review_ids
                and r.sent_back_task_id is None
                and tx.review_of(r.annotation_id).review_annotation_id == r.review_annotation_id]
        mains = {r.project_id: tx.project(r.project_id).main_project_id for r in todo}
    if not todo:
        return
    names = user_names(client)
    markers: dict[int, dict[int, int]] = {}  # main project -> {review id: task id}
    for review in todo:
        main = mains[review.project_id]
        with sync.store.transaction() as tx:
            win = tx.winner(review.object_key)
        if win is None or win.annotation_id != review.annotation_id:
            report.waiting.append(f"{review.object_key}: annotation {review.annotation_id} is no "
                                  "longer the object's synced one")
            continue
        if review.reviewed_us is not None and win.updated_us > review.reviewed_us:
            report.waiting.append(f"{review.object_key}: annotation {review.annotation_id} was "
                                  "edited after the review")
            continue
        if main not in markers:
            markers[main] = {int(d[R.DATA_SENT_BACK_FOR]): tid for tid, d in task_data(client, main)
                             if isinstance(d.get(R.DATA_SENT_BACK_FOR), int)}
        task_id = markers[main].get(review.review_annotation_id)
        if task_id is not None:
            report.found_again += 1
        else:
            original = sdk_call(f"reading task {win.task_id}", client.tasks.get, id=win.task_id)
            reviewer = names.get(str(review.reviewer), str(review.reviewer))
            note = R.review_note(reviewer, review.reasons, review.comment)
            task = sdk_call(f"sending {review.object_key} back", client.tasks.create, project=main,
                            data=sent_back_data(dict(original.data), note,
                                                review.review_annotation_id))
            task_id = int(task.id)
            report.sent_back.append(f"{review.object_key}: task {task_id} ({note})")
        with store.transaction() as tx:  # at once: a run killed after this sends nothing twice
            tx.set_sent_back(review.review_annotation_id, task_id)


def sync_reviews(client: LabelStudio, data_root: Path,
                 review_project_ids: Iterable[int] | None = None,
                 store_url: str | None = None) -> SyncReport:
    """Pull the review projects' annotations (all registered ones by default), then send back."""
    dataset = Dataset.open(data_root)
    url = default_store_url(dataset.root, store_url)
    sync, store = SyncService(dataset, url), QualityStore(url)
    try:
        with store.transaction() as tx:
            registered = {p.project_id for p in tx.projects(REVIEW)}
        ids = set(registered if review_project_ids is None else review_project_ids)
        unknown = ids - registered
        if unknown:
            raise AdminError(f"project(s) {sorted(unknown)} are not review projects made by "
                             "pose6d-review create")
        report = SyncReport()
        for project_id in sorted(ids):
            pull_reviews(client, sync, store, project_id, report)
        send_back(client, sync, store, ids, report)
        return report
    finally:
        sync.close()
        store.close()
