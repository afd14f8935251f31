"""Repair ``annotations_new/`` from Label Studio, for when webhooks were lost (backend down).

``reconcile(client, dataset, project_id)``:
1. reads every annotation of the project's annotated tasks through the SDK;
2. applies each with ``SyncService.apply_annotation`` (the webhook's own logic: a version the
   sync store already has is a no-op, a newer one replaces the record);
3. tells the sync about annotations it holds for the project that Label Studio no longer has
   (deleted while the backend was down), as an ANNOTATIONS_DELETED event;
4. makes every synced file of the project match the sync store again (a file removed, edited
   or left behind by hand is rewritten or removed).
A second run finds nothing to do. ``dry_run`` reports the same plan without writing anything.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Iterator

import numpy as np
from label_studio_sdk import LabelStudio

from ls_admin.connection import AdminError, api_error_text
from ml_backend.sync import (MalformedEvent, SyncRejected, SyncService, annotation_record,
                             file_matches, object_key_of, parse_updated_at)
from pose6d.dataset import SYNCED, Dataset, ObjectKey, ObjectRecord
from pose6d.inout import DataError, load_npz

TASK_PAGE = 100  # tasks per page with all their annotations and predictions
# Data-manager filter: tasks with at least one annotation, submitted or skipped.
ANNOTATED_QUERY = json.dumps({"filters": {"conjunction": "or", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "greater", "type": "Number",
     "value": 0}]}})


@dataclasses.dataclass
class ReconcileReport:
    project_id: int
    dry_run: bool = False
    annotations: int = 0  # in Label Studio
    changes: list[str] = dataclasses.field(default_factory=list)
    rejected: list[str] = dataclasses.field(default_factory=list)  # never synced, and why

    def lines(self) -> list[str]:
        verb = "would change" if self.dry_run else "changed"
        head = (f"project {self.project_id}: {self.annotations} annotation(s) in Label Studio; "
                + (f"{verb} {len(self.changes)} thing(s)" if self.changes else "no changes"))
        return ([head] + [f"  {line}" for line in self.changes]
                + [f"  not synced: {line}" for line in self.rejected])


# --- Reading Label Studio and the sync store. ---


def _plain(value: Any) -> dict:
    return value if isinstance(value, dict) else value.dict()


def fetch_annotations(client: LabelStudio, project_id: int) -> Iterator[tuple[dict, dict]]:
    """(annotation, task) for every annotation (submitted or skipped) of the project, shaped as
    the webhook sends them (``completed_by`` an id, ``updated_at`` ISO 8601)."""
    try:
        pages = client.tasks.list(project=project_id, fields="all", query=ANNOTATED_QUERY,
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
    with sync.store.transaction() as tx:
        rows = tx.run("SELECT annotation_id, updated_us FROM pose6d_sync_version "
                      "WHERE project_id = ? AND deleted = 0", (project_id,))
    out: dict[int, set[int]] = {}
    for annotation_id, updated_us in rows:
        out.setdefault(int(annotation_id), set()).add(int(updated_us))
    return out


def project_object_keys(sync: SyncService, project_id: int) -> set[str]:
    """Objects the store or a synced file links to the project."""
    with sync.store.transaction() as tx:
        keys = {r[0] for r in tx.run("SELECT DISTINCT object_key FROM pose6d_sync_version "
                                     "WHERE project_id = ?", (project_id,))}
    for key in sync.dataset.objects(SYNCED):
        try:
            claimed = int(load_npz(sync.dataset.record_path(key, SYNCED)).get("ls_project_id", -1))
        except (DataError, TypeError, ValueError):
            continue  # not ours to judge: the webhook writes well-formed files
        if claimed == project_id:
            keys.add(str(key))
    return keys


def resync_object(sync: SyncService, key: str, dry_run: bool = False) -> str | None:
    """Make one object's synced file match the store's winner; says what (would have) changed."""
    object_key = ObjectKey.parse(key)
    path = sync.dataset.record_path(object_key, SYNCED)
    with sync.store.transaction() as tx:
        tx.lock_objects([key])  # the webhook may be writing the same object right now
        winner = tx.winner(key)
        if winner is None:
            if not path.exists():
                return None
            if dry_run:
                return f"would remove {key} (no annotation of it left)"
            sync.dataset.remove(object_key, SYNCED)
            return f"removed {key} (no annotation of it left)"
        if file_matches(path, winner.record):
            return None
        if dry_run:
            return f"would rewrite {key} from annotation {winner.annotation_id}"
        fields = {k: np.asarray(v) if isinstance(v, list) else v for k, v in winner.record.items()}
        sync.dataset.write(object_key, ObjectRecord.from_npz_dict(fields), SYNCED)
        return f"rewrote {key} from annotation {winner.annotation_id}"


# --- The steps. ---


def _apply(sync: SyncService, annotation: dict, task: dict, report: ReconcileReport) -> set[str]:
    """Step 2 for one annotation; returns the object keys it touched."""
    aid, key = annotation.get("id"), (task.get("data") or {}).get("object_key")
    try:
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
    if summary.get("status") == "applied" or touched:
        files = ", ".join(f"wrote {k}" for k in summary.get("written", []))
        report.changes.append(f"applied annotation {aid} ({key})" + (f": {files}" if files else ""))
    return touched


def _plan(sync: SyncService, annotation: dict, task: dict, known: dict[int, set[int]],
          report: ReconcileReport) -> set[str]:
    """Step 2 of a dry run: is this version new to the store, and would it be synced?"""
    aid = annotation.get("id")
    try:
        key = object_key_of(task)
        _, updated_us = parse_updated_at(annotation.get("updated_at"))
        if updated_us in known.get(aid, set()):
            return set()
        annotation_record(annotation, task, sync.dataset.read(key), sync.dataset)
    except (SyncRejected, MalformedEvent, DataError) as exc:
        report.rejected.append(f"annotation {aid}: {getattr(exc, 'reason', exc)}")
        return set()
    if annotation.get("was_cancelled"):
        return set()
    report.changes.append(f"would apply annotation {aid} ({key})")
    return {str(key)}


def _delete(sync: SyncService, gone: list[int], report: ReconcileReport, dry_run: bool) -> set[str]:
    """Step 3: annotations the store has for the project but Label Studio no longer has."""
    touched: set[str] = set()
    for aid in gone:
        with sync.store.transaction() as tx:
            keys = tx.object_keys_of(aid)
        touched.update(keys)
        if dry_run:
            report.changes.append(f"would delete annotation {aid} ({', '.join(keys)})")
            continue
        summary = sync.handle_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": aid}],
                                     "project": {"id": report.project_id}})
        files = [f"removed {k}" for k in summary["removed"]] + [f"wrote {k}" for k in summary["written"]]
        report.changes.append(f"deleted annotation {aid} ({', '.join(keys)})"
                              + (f": {', '.join(files)}" if files else ""))
    return touched


def reconcile(client: LabelStudio, dataset: Dataset, project_id: int, store_url: str | None = None,
              dry_run: bool = False, progress: bool = True) -> ReconcileReport:
    """Steps 1-4 of the module docstring; AdminError (one line) when Label Studio fails."""
    from tqdm import tqdm

    report = ReconcileReport(project_id, dry_run)
    sync = SyncService(dataset, store_url or None)
    try:
        known = synced_versions(sync, project_id)
        seen: set[int] = set()
        touched: set[str] = set()
        items = tqdm(fetch_annotations(client, project_id), desc="annotations", unit="ann",
                     file=sys.stderr, disable=not progress)
        for annotation, task in items:
            report.annotations += 1
            seen.add(annotation.get("id"))
            if dry_run:
                touched |= _plan(sync, annotation, task, known, report)
            else:
                touched |= _apply(sync, annotation, task, report)
        touched |= _delete(sync, sorted(set(known) - seen), report, dry_run)
        for key in sorted(project_object_keys(sync, project_id) - touched):
            change = resync_object(sync, key, dry_run)
            if change:
                report.changes.append(change)
    finally:
        sync.close()
    return report
