"""Repair ``annotations_new/`` from Label Studio, for when webhooks were lost (backend down).

``reconcile(client, dataset, project_id)``:
0. retries the webhook events whose writes failed earlier (``SyncService.retry_failed``) and
   applies those held for annotators who have passed the qualification since
   (``SyncService.release_held``; with --require-qualification, docs/quality_control.md);
1. reads every annotation of the project's annotated tasks from Label Studio export snapshots
   (``ls_admin.snapshot``: one server-side pass over a task list fixed when it starts; at 100k
   tasks 573 tasks/s, the paged listing 179/s over its first 10,000 and slower after; and it
   cannot shift while annotators work);
2. applies each version the sync store does not have yet (same annotation id and updated_at)
   with ``SyncService.apply_annotation`` (the webhook's own logic: a newer one replaces the
   record). A version it has is left alone: the webhook's copy carries what only the backend
   knows (was the pose drawn, the annotator's email), which Label Studio's listing lacks, so
   re-applying it stored a second copy of every synced version and rewrote about half the
   files without those marks (benchmarks/bench_scale.py found it). An annotation of an
   annotator not qualified (when the backend requires it) is reported as held and left in
   Label Studio: a later run applies it once they pass;
3. tells the sync about annotations it holds for the project that Label Studio no longer has
   (deleted while the backend was down), as an ANNOTATIONS_DELETED event. A deletion is
   permanent (a tombstone), so each is confirmed first: Label Studio must answer 404 for the
   annotation. One it still has (made while the snapshot was built) is re-read through its
   task; any other answer leaves the annotation alone and reports it. The other way round, an
   annotation Label Studio lists that the store holds as deleted (a forged or misdirected
   deletion event) is restored (``SyncService.restore_annotation``);
4. makes every synced file of the project match the sync store again (a file removed, edited
   or left behind by hand is rewritten or removed).
It also deletes the temporary files of writes killed midway (older than a minute) and drops
the payloads of journal events finished more than a week ago. A second run finds nothing to do.
``dry_run`` reports the same plan without writing to the dataset or the store (Label Studio
still makes, and deletes, its temporary snapshots).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Iterable, Iterator

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from label_sync.engine import SyncService
from label_sync.records import MalformedEvent, SyncRejected, is_skipped, parse_updated_at
from ls_admin.connection import AdminError, api_error_text
from ls_admin.snapshot import annotated_tasks
from pose6d.dataset import Dataset, ObjectKey
from pose6d.errors import DataError, StoreFailure

TASK_PAGE = 100  # tasks per page with all their annotations and predictions
ID_BATCH = 50  # tasks read by id per request


@dataclasses.dataclass
class ReconcileReport:
    project_id: int
    dry_run: bool = False
    annotations: int = 0  # in Label Studio
    changes: list[str] = dataclasses.field(default_factory=list)
    rejected: list[str] = dataclasses.field(default_factory=list)  # never synced, and why
    retried: int = 0  # failed webhook events retried (dry run: that would be)
    retry_ok: int = 0  # of those, how many no longer fail
    unconfirmed: list[str] = dataclasses.field(default_factory=list)  # deletions not confirmed
    held: list[str] = dataclasses.field(default_factory=list)  # annotators not qualified yet

    def lines(self) -> list[str]:
        verb = "would change" if self.dry_run else "changed"
        retry = "would retry" if self.dry_run else "retried"
        head = (f"project {self.project_id}: {self.annotations} annotation(s) in Label Studio; "
                + (f"{verb} {len(self.changes)} thing(s)" if self.changes else "no changes")
                + f"; {retry} {self.retried} failed webhook event(s)"
                + ("" if self.dry_run or not self.retried else f", {self.retry_ok} now applied"))
        return ([head] + [f"  {line}" for line in self.changes]
                + [f"  not synced: {line}" for line in self.rejected]
                + [f"  not deleted: {line}" for line in self.unconfirmed]
                + [f"  held: {line}" for line in self.held])


# --- Reading Label Studio and the sync store. ---


def _plain(value: Any) -> dict:
    return value if isinstance(value, dict) else value.dict()


def fetch_annotations(client: LabelStudio, project_id: int) -> Iterator[tuple[dict, dict]]:
    """(annotation, task) for every annotation (submitted or skipped) of the project, shaped as
    the webhook sends them (``completed_by`` an id, ``updated_at`` ISO 8601), from export
    snapshots. An annotation made while the snapshot is built may be missing: the webhook has it,
    or the next run."""
    for task in annotated_tasks(client, project_id):
        plain_task = {"id": task.get("id"), "project": project_id, "data": task.get("data")}
        for annotation in task.get("annotations") or []:
            if isinstance(annotation, dict):
                annotation = dict(annotation)
                annotation.setdefault("project", project_id)
                annotation.setdefault("task", plain_task["id"])
                yield annotation, plain_task


def fetch_task_annotations(client: LabelStudio, project_id: int,
                           task_ids: Iterable[int]) -> Iterator[tuple[dict, dict]]:
    """As ``fetch_annotations``, for the given tasks only."""
    ids = sorted(set(task_ids))
    for start in range(0, len(ids), ID_BATCH):
        query = json.dumps({"filters": {"conjunction": "or", "items": [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": i}
            for i in ids[start:start + ID_BATCH]]}})
        yield from _listed(client, project_id, query)


def deletion_check(client: LabelStudio, annotation_id: int) -> tuple[str, Any]:
    """("gone", None) when Label Studio answers 404 for the annotation, ("exists", its task id)
    when it has it, else ("unknown", why): only "gone" may be tombstoned."""
    try:
        annotation = client.annotations.get(id=annotation_id)
    except ApiError as exc:
        if exc.status_code == 404:
            return "gone", None
        return "unknown", api_error_text(exc)
    except Exception as exc:  # noqa: BLE001 - transport: not a confirmation
        return "unknown", api_error_text(exc)
    return "exists", getattr(annotation, "task", None)


def _listed(client: LabelStudio, project_id: int, query: str) -> Iterator[tuple[dict, dict]]:
    try:
        pages = client.tasks.list(project=project_id, fields="all", query=query,
                                  page_size=TASK_PAGE)
        for task in pages:
            plain_task = {"id": task.id, "project": project_id, "data": task.data}
            for annotation in task.annotations or []:
                annotation = dict(_plain(annotation))
                annotation.setdefault("project", project_id)
                annotation.setdefault("task", task.id)
                yield annotation, plain_task
    except Exception as exc:  # noqa: BLE001 - SDK / transport: one line
        raise AdminError(f"reading the annotations of project {project_id} failed: "
                         f"{api_error_text(exc)}") from None


def synced_versions(sync: SyncService, project_id: int) -> dict[int, set[int]]:
    """{annotation id: {updated_us, ...}} of the project's not-deleted annotations in the store."""
    out: dict[int, set[int]] = {}
    for v in sync.versions(project_id):
        out.setdefault(v.annotation_id, set()).add(v.updated_us)
    return out


# --- The steps. ---


def _is_known(annotation: dict, known: dict[int, set[int]]) -> bool:
    """The store has this version of the annotation (same id and updated_at) already."""
    try:
        _, updated_us = parse_updated_at(annotation.get("updated_at"))
    except MalformedEvent:
        return False  # applied, so that it is reported as not synced
    return updated_us in known.get(annotation.get("id"), set())


def _apply(sync: SyncService, annotation: dict, task: dict, report: ReconcileReport,
           tombstoned: set[int], known: dict[int, set[int]]) -> set[str]:
    """Step 2 for one annotation; returns the object keys it touched. A version the store
    has is skipped (step 4 still checks its object's file)."""
    aid, key = annotation.get("id"), (task.get("data") or {}).get("object_key")
    restore = aid in tombstoned
    if not restore and _is_known(annotation, known):
        return set()
    held = sync.held_reason(annotation)
    if held:  # not journaled again on every run: Label Studio keeps it until they pass
        report.held.append(f"annotation {aid} ({key}): {held}")
        return set()
    try:
        if restore:
            summary = sync.restore_annotation(annotation, task)
            report.changes.append(f"restored annotation {aid} ({key}): the store held it as "
                                  "deleted but Label Studio has it")
        else:
            summary = sync.apply_annotation(annotation, task)
    except SyncRejected as exc:
        report.rejected.append(f"annotation {aid} ({key}): {exc.reason}")
        summary = exc.summary or {}
    except MalformedEvent as exc:
        report.rejected.append(f"annotation {aid} ({key}): {exc}")
        return set()
    touched = set(summary.get("written", [])) | set(summary.get("removed", []))
    if summary.get("status") == "failed":
        raise AdminError(f"applying annotation {aid} ({key}) failed: {summary.get('reason')}")
    if (summary.get("status") == "applied" or touched) and not restore:
        files = ", ".join(f"wrote {k}" for k in summary.get("written", []))
        report.changes.append(f"applied annotation {aid} ({key})" + (f": {files}" if files else ""))
    return touched


def _plan(sync: SyncService, annotation: dict, task: dict, known: dict[int, set[int]],
          report: ReconcileReport, tombstoned: set[int]) -> set[str]:
    """Step 2 of a dry run: is this version new to the store, and would it be synced?"""
    aid = annotation.get("id")
    if aid in tombstoned:
        report.changes.append(f"would restore annotation {aid} (the store holds it as deleted "
                              "but Label Studio has it)")
        return set(sync.annotation_objects(aid))
    try:
        if _is_known(annotation, known):
            return set()
        held = sync.held_reason(annotation)
        if held:
            report.held.append(f"annotation {aid}: {held}")
            return set()
        key = sync.check_annotation(annotation, task)  # a malformed updated_at is refused here
    except (SyncRejected, MalformedEvent, DataError) as exc:
        report.rejected.append(f"annotation {aid}: {exc}")
        return set()
    if is_skipped(annotation):
        return set()
    report.changes.append(f"would apply annotation {aid} ({key})")
    return {str(key)}


def _delete(sync: SyncService, gone: list[int], report: ReconcileReport, dry_run: bool) -> set[str]:
    """Step 3: annotations the store has for the project but Label Studio no longer has."""
    touched: set[str] = set()
    for aid in gone:
        keys = sync.annotation_objects(aid)
        touched.update(keys)
        if dry_run:
            report.changes.append(f"would delete annotation {aid} ({', '.join(keys)})")
            continue
        summary = sync.delete_annotation(aid, report.project_id)
        files = [f"removed {k}" for k in summary["removed"]] + [f"wrote {k}" for k in summary["written"]]
        report.changes.append(f"deleted annotation {aid} ({', '.join(keys)})"
                              + (f": {', '.join(files)}" if files else ""))
    return touched


def reconcile(client: LabelStudio, dataset: Dataset, project_id: int, store_url: str | None = None,
              dry_run: bool = False, progress: bool = True) -> ReconcileReport:
    """Steps 0-4 of the module docstring; AdminError (one line) when Label Studio fails."""
    from tqdm import tqdm

    report = ReconcileReport(project_id, dry_run)
    try:
        sync = SyncService(dataset, store_url or None)
    except StoreFailure as exc:
        raise AdminError(str(exc)) from None
    try:
        report.retried = len(sync.pending_events())
        if report.retried and not dry_run:
            report.retry_ok = sync.retry_failed()
        if not dry_run:
            released = sync.release_held()
            if released:
                report.changes.append(f"applied {released} held event(s) of annotators who "
                                      "have passed the qualification since")
        if not dry_run:
            report.changes += [f"removed {path} (a write killed midway)"
                               for path in sync.remove_stale_temp_files()]
            sync.compact_journal()
        known = synced_versions(sync, project_id)
        tombstoned = sync.deleted_annotations()
        seen: set[int] = set()
        touched: set[str] = set()

        def take(pairs: Iterable[tuple[dict, dict]]) -> None:
            nonlocal touched
            for annotation, task in pairs:
                if annotation.get("id") in seen:
                    continue
                report.annotations += 1
                seen.add(annotation.get("id"))
                if dry_run:
                    touched |= _plan(sync, annotation, task, known, report, tombstoned)
                else:
                    touched |= _apply(sync, annotation, task, report, tombstoned, known)

        take(tqdm(fetch_annotations(client, project_id), desc="annotations", unit="ann",
                  file=sys.stderr, disable=not progress))
        gone, recheck = [], {}
        for aid in sorted(set(known) - seen):
            state, detail = deletion_check(client, aid)
            if state == "gone":
                gone.append(aid)
            elif state == "exists":
                recheck[aid] = detail
            else:
                report.unconfirmed.append(f"annotation {aid}: could not confirm it is deleted "
                                          f"({detail}); left as it is")
        take(fetch_task_annotations(client, project_id,
                                    {t for t in recheck.values() if isinstance(t, int)}))
        for aid, task_id in recheck.items():
            if aid not in seen:
                report.unconfirmed.append(f"annotation {aid}: Label Studio still has it (task "
                                          f"{task_id}) but did not list it; left as it is")
        touched |= _delete(sync, gone, report, dry_run)
        for key in sorted(sync.project_objects(project_id) - touched):
            change = sync.resync_object(ObjectKey.parse(key), dry_run)
            if change:
                report.changes.append(change)
    finally:
        sync.close()
    return report
