"""The sync engine: applies Label Studio's annotation events to ``annotations_new/``.

An object's synced record is always the newest (by updated_at) valid version of a not-deleted,
not-skipped annotation of that object, or no file; a reviewer's decision on that annotation
(label_sync.review) is added to it. Events of quality-control projects (label_sync.quality_store)
are routed by the project's kind: a qualification project's annotations are test answers (never
records), an evaluation project's are blind A/B ratings, a review project's are review decisions.
With ``require_qualification`` an annotation by someone who has not passed the qualification is
held (journaled, not applied) and ``release_held`` applies it once they pass.

Every event is journaled before it is applied and its outcome recorded: applied, duplicate,
stale, ignored, held, rejected or failed. A
failed one (disk full, store down) is kept and applied again by ``retry_failed``; reconcile
(ls_admin) repairs what never arrived with ``apply_annotation``, ``delete_annotation`` and
``resync_object``. Safe across threads, processes and replicas (the store's locks).
"""
from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
from typing import Any, Iterable

from pose6d.dataset import INITIAL, SYNCED, Dataset, ObjectKey
from pose6d.errors import DataError, StoreFailure
from pose6d.inout import load_npz, remove_stale_temp_files
from label_sync.database import canonical_json
from label_sync.journal import UPSERT_ACTIONS, journaled
from label_sync.records import (MalformedEvent, SyncRejected, annotation_record, annotator_of,
                                file_matches, is_id, is_skipped, ls_id, object_key_of,
                                parse_updated_at, record_fields, record_from_fields)
from label_sync.outcome import Outcome
from label_sync.quality_store import QualityTx
from label_sync.quality_sync import QualityRouting, with_review
from label_sync.store import SyncStore, SyncTx, Version, default_store_url

log = logging.getLogger(__name__)

STUCK_AFTER = dt.timedelta(minutes=5)  # a 'received' event this old was cut off by a crash
# Finished events keep their payload this long (for inspection), then only their outcome.
JOURNAL_PAYLOAD_DAYS = 7
# An atomic write's temporary file this old belongs to a writer that died (a young one may be
# being written by another process right now).
STALE_TEMP_AFTER_S = 60.0


# --- The service. ---


class SyncService(QualityRouting):
    """Applies Label Studio annotation events to ``annotations_new/``; safe across replicas."""

    def __init__(self, dataset: Dataset, store_url: str | None = None,
                 require_qualification: bool | None = None):
        """require_qualification: the backend's flag, kept in the store; None (reconcile, the
        admin tools) follows what the store says, so every writer applies the same rule."""
        self.dataset = dataset
        self.store = SyncStore(default_store_url(dataset.root, store_url))
        self.require_qualification = self._qualification_rule(require_qualification)
        self.remove_stale_temp_files()  # left by a writer killed mid-write

    def handle_event(self, payload: dict) -> dict:
        """Journal and apply one webhook payload; returns {action, status, reason, written,
        removed}. Raises MalformedEvent (400) or SyncRejected (422); a file-system or store
        failure is journaled as 'failed' (retry_failed) and reported in the summary."""
        action = payload.get("action") if isinstance(payload, dict) else None
        with self.store.transaction() as tx:
            event_id = tx.journal_add(str(action), canonical_json(journaled(payload)))
        return self._run(event_id, payload)

    def apply_annotation(self, annotation: dict, task: dict) -> dict:
        """Apply one annotation as a webhook would (for reconciling from an export)."""
        return self.handle_event({"action": "RECONCILE", "annotation": annotation, "task": task})

    def release_held(self) -> int:
        """Apply the held events (annotations of annotators not qualified when they arrived) of
        every annotator who has passed since; returns how many were applied now. An event of an
        annotator still not qualified stays held."""
        with self.store.transaction() as tx:
            held = tx.journal_held()
        done = 0
        for event_id, _, text in held:
            try:
                summary = self._run(event_id, json.loads(text))
            except (SyncRejected, MalformedEvent):
                done += 1  # no longer held: refused for good, and journaled so
                continue
            done += summary["status"] != "held"
        return done

    def pending_events(self) -> list[tuple[int, str, str]]:
        """(id, action, payload) of the journaled events ``retry_failed`` would apply again."""
        stuck = dt.datetime.now(dt.timezone.utc) - STUCK_AFTER
        with self.store.transaction() as tx:
            return tx.journal_pending(stuck.isoformat(timespec="microseconds"))

    def retry_failed(self) -> int:
        """Re-apply failed (and crash-interrupted) events; returns how many no longer fail."""
        pending = self.pending_events()
        done = 0
        for event_id, _, text in pending:
            try:
                summary = self._run(event_id, json.loads(text))
            except (SyncRejected, MalformedEvent):
                done += 1
                continue
            except StoreFailure:
                raise  # the store itself is down: the next retry starts over
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the others
                log.exception("sync event %s cannot be applied; refused", event_id)
                self._finish(event_id, "rejected", f"cannot be applied: {type(exc).__name__}")
                continue
            done += summary["status"] != "failed"
        return done

    def delete_annotation(self, annotation_id: int, project_id: int) -> dict:
        """Apply a confirmed deletion as the webhook would (for reconcile)."""
        return self.handle_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": annotation_id}],
                                  "project": {"id": project_id}})

    def deleted_annotations(self) -> set[int]:
        """Ids of the annotations the store holds as deleted (tombstoned)."""
        with self.store.transaction() as tx:
            return tx.deleted_ids()

    def restore_annotation(self, annotation: dict, task: dict) -> dict:
        """Lift a tombstone Label Studio contradicts (it still has the annotation: the deletion
        event was forged or wrong), then apply the annotation as ``apply_annotation`` does; the
        annotation's objects are synced again either way."""
        annotation_id = _id_of(annotation, "annotation")
        with self.store.transaction() as tx:
            tx.lock_annotation(annotation_id)
            lifted = tx.unmark_deleted(annotation_id)
            keys = tx.object_keys_of(annotation_id)
        written, removed = [], []
        for key in keys:  # older versions count again even if the current one is refused
            with self.store.transaction() as tx:
                tx.lock_objects([key])
                w, r = self._sync_object(tx, ObjectKey.parse(key))
            written, removed = written + w, removed + r
        try:
            summary = self.apply_annotation(annotation, task)
        except SyncRejected as exc:
            if exc.summary is not None:
                exc.summary.update(restored=lifted, written=written + exc.summary["written"],
                                   removed=removed + exc.summary["removed"])
            raise
        return dict(summary, restored=lifted, written=written + summary["written"],
                    removed=removed + summary["removed"])

    def remove_stale_temp_files(self, older_than_s: float = STALE_TEMP_AFTER_S) -> list[str]:
        """Delete atomic-write temporary files in annotations_new/ older than ``older_than_s``
        (a writer killed between creating and renaming its file); returns their paths."""
        return [str(p) for p in remove_stale_temp_files(self.dataset.root / SYNCED, older_than_s)]

    def compact_journal(self, days: float = JOURNAL_PAYLOAD_DAYS) -> int:
        """Empty the payloads of events finished more than ``days`` ago, whatever their outcome
        but failed / received (those are retried and keep theirs); returns how many."""
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
        with self.store.transaction() as tx:
            return tx.journal_compact(before.isoformat(timespec="microseconds"))

    def check_annotation(self, annotation: dict, task: dict) -> ObjectKey:
        """What ``apply_annotation`` would decide, without storing or writing anything: the
        object, or SyncRejected / MalformedEvent / DataError saying why it cannot be synced."""
        key = object_key_of(task)
        parse_updated_at(annotation.get("updated_at"))
        if not is_skipped(annotation):
            annotation_record(annotation, task, self.dataset.read(key, INITIAL), self.dataset)
        return key

    def versions(self, project_id: int | None = None) -> list[Version]:
        """Every version of every not-deleted annotation (of one project when given)."""
        with self.store.transaction() as tx:
            return tx.live_versions(project_id)

    def annotation_objects(self, annotation_id: int) -> list[str]:
        """The object keys an annotation's versions belong to."""
        with self.store.transaction() as tx:
            return tx.object_keys_of(annotation_id)

    def project_objects(self, project_id: int) -> set[str]:
        """Objects the store or a synced file links to the project."""
        with self.store.transaction() as tx:
            keys = tx.project_object_keys(project_id)
        for key in self.dataset.objects(SYNCED):
            try:
                claimed = int(load_npz(self.dataset.record_path(key, SYNCED)).get("ls_project_id", -1))
            except (DataError, TypeError, ValueError):
                continue  # not ours to judge: the webhook writes well-formed files
            if claimed == project_id:
                keys.add(str(key))
        return keys

    def resync_object(self, key: ObjectKey, dry_run: bool = False) -> str | None:
        """Make one object's synced file match the store's winner (a file removed, edited or
        left behind by hand); says what (would have) changed, None when nothing."""
        with self.store.transaction() as tx:
            tx.lock_objects([str(key)])  # the webhook may be writing the same object right now
            written, removed = self._sync_object(tx, key, dry_run)
            source = tx.winner(str(key)).annotation_id if written else None  # only to say so
        would = "would " if dry_run else ""
        if removed:
            return f"{would}remove{'' if dry_run else 'd'} {key} (no annotation of it left)"
        if written:
            return f"{would}rewr{'ite' if dry_run else 'ote'} {key} from annotation {source}"
        return None

    def stats(self) -> dict:
        """Event counts by status and store sizes (for /metrics)."""
        with self.store.transaction() as tx:
            return {"events": tx.journal_counts(),
                    "annotation_versions": tx.count("pose6d_sync_version"),
                    "deleted_annotations": tx.count("pose6d_sync_deleted")}

    def journal(self, limit: int = 100) -> list[dict]:
        with self.store.transaction() as tx:
            return tx.journal(limit)

    def close(self) -> None:
        self.store.close()

    # --- internals ---

    def _run(self, event_id: int, payload: Any) -> dict:
        action = payload.get("action") if isinstance(payload, dict) else None
        try:
            outcome = self._dispatch(action, payload)
        except MalformedEvent as exc:
            self._finish(event_id, "rejected", f"malformed: {exc}")
            raise
        except (OSError, DataError, StoreFailure) as exc:
            outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
            log.error("sync event %s (%s) failed, kept for retry: %s", event_id, action, exc)
        except Exception as exc:  # noqa: BLE001 - a poison event: refused for good, never a 500
            log.exception("sync event %s (%s) cannot be applied; refused", event_id, action)
            outcome = Outcome("rejected", f"cannot be applied: {type(exc).__name__}")
        self._finish(event_id, outcome.status, outcome.reason)
        summary = {"action": action, "status": outcome.status, "reason": outcome.reason,
                   "written": outcome.written, "removed": outcome.removed, "event_id": event_id}
        if outcome.status == "rejected":
            log.warning("sync event %s (%s) rejected: %s", event_id, action, outcome.reason)
            raise SyncRejected(outcome.reason or "rejected", summary)
        return summary

    def _finish(self, event_id: int, status: str, reason: str | None) -> None:
        with self.store.transaction() as tx:
            tx.journal_finish(event_id, status, reason)

    def _dispatch(self, action: Any, payload: Any) -> Outcome:
        if not isinstance(payload, dict) or not isinstance(action, str):
            raise MalformedEvent("payload must be a JSON object with an 'action'")
        if action in UPSERT_ACTIONS:
            annotations, tasks = payload.get("annotation"), payload.get("task")
            if action == "ANNOTATIONS_CREATED":
                return self._each(self._upsert(a, _task_of(a, tasks), payload.get("project"))
                                  for a in _list(annotations, "annotation"))
            return self._upsert(annotations, tasks, payload.get("project"))
        if action == "ANNOTATIONS_DELETED":
            ids = [_id_of(a, "annotation") for a in _list(payload.get("annotations"), "annotations")]
            project_id = ls_id(payload.get("project"))
            if project_id < 0:  # Label Studio always names the project
                return Outcome("ignored", "a deletion without a project deletes nothing")
            kind = self._project_kind(project_id)
            if kind is not None:
                return self._each(self._delete_qc(a, project_id, kind) for a in ids)
            return self._each(self._delete(a, project_id) for a in ids)
        if action == "TASKS_DELETED":
            task_ids = [_id_of(t, "task") for t in _list(payload.get("tasks"), "tasks")]
            project_id = ls_id(payload.get("project"))
            if project_id < 0:
                return Outcome("ignored", "a deletion without a project deletes nothing")
            if self._project_kind(project_id) is not None:
                return Outcome("ignored", f"tasks of quality-control project {project_id} are not "
                                          "synced (their annotations' own deletions are)")
            with self.store.transaction() as tx:
                ids = sorted({a for t in task_ids for a in tx.annotations_of_task(t)})
            return self._each(self._delete(a, project_id) for a in ids)
        return Outcome("ignored", f"action {action} is not synced")

    @staticmethod
    def _each(outcomes: Iterable[Outcome]) -> Outcome:
        total = Outcome("ignored")
        for outcome in outcomes:  # a generator: each annotation commits before the next starts
            total = total.merge(outcome)
        return total

    def _upsert(self, annotation: Any, task: Any, project: Any) -> Outcome:
        if not isinstance(annotation, dict) or not isinstance(task, dict):
            raise MalformedEvent("an annotation event needs 'annotation' and 'task' objects")
        annotation_id = _id_of(annotation, "annotation")
        if not isinstance(task.get("data"), dict):
            raise MalformedEvent("task has no 'data' object")
        if annotation.get("project") is None and project is not None:
            annotation = dict(annotation, project=ls_id(project))
        updated_at, updated_us = parse_updated_at(annotation.get("updated_at"))
        project_id = ls_id(annotation.get("project"))
        kind = self._project_kind(project_id)
        if kind is not None:
            return self._upsert_qc(annotation, task, project_id, kind)
        if self.require_qualification and not is_skipped(annotation):
            unqualified = self._not_qualified(annotation)
            if unqualified:
                return Outcome("held", unqualified)  # journaled: release_held applies it
        try:
            key = object_key_of(task)
        except SyncRejected as exc:
            return Outcome("rejected", exc.reason)
        try:
            initial = self.dataset.read(key)
        except DataError as exc:
            return self._unreadable_initial(key, task, exc)
        try:
            fields, reason = record_fields(annotation_record(annotation, task, initial,
                                                             self.dataset)), None
        except SyncRejected as exc:
            fields, reason = None, exc.reason
        skipped = is_skipped(annotation)
        digest = hashlib.sha256(canonical_json([fields, reason]).encode()).hexdigest()[:16]
        version = Version(annotation_id, updated_us, digest, str(key), ls_id(task.get("id")),
                          ls_id(annotation.get("project")), updated_at, fields is not None,
                          reason, fields, skipped, annotator_of(annotation))
        with self.store.transaction() as tx:
            tx.lock_annotation(annotation_id)
            tx.lock_objects([version.object_key])
            status, note = self._store_version(tx, version)
            written, removed = self._sync_object(tx, key)
        if skipped:
            status = "ignored"  # a skip is kept (it never wins) but is no error
        elif not version.valid:
            status = "rejected"  # also when replayed: the annotation is still invalid
        return Outcome(status, reason or note, written, removed)

    def _unreadable_initial(self, key: ObjectKey, task: dict, exc: DataError) -> Outcome:
        """No usable initial record: refused for good when it is missing or corrupt, but a
        failure to retry when the file cannot be read right now (an I/O error, e.g. on NFS)."""
        try:
            self.dataset.record_path(key).read_bytes()
        except FileNotFoundError:
            return Outcome("rejected", f"unknown object {task['data'].get('object_key')!r}: "
                                       "no initial record")
        except OSError as io_error:
            if io_error.errno == errno.ENAMETOOLONG:  # no retry makes the name shorter
                return Outcome("rejected", f"no initial record can be used for {key}: {io_error}")
            return Outcome("failed", f"cannot read the initial record of {key}: {io_error}")
        return Outcome("rejected", f"no initial record can be used for {key}: {exc}")

    @staticmethod
    def _store_version(tx: SyncTx, version: Version) -> tuple[str, str | None]:
        """Keep the version, also a late older one: the record depends only on the set of
        versions seen, never on their arrival order. Returns (status, note)."""
        if tx.is_deleted(version.annotation_id, version.project_id):
            return "stale", "annotation was deleted"
        seen = tx.version_keys(version.annotation_id)
        if (version.updated_us, version.content_hash) in seen:
            return "duplicate", None
        tx.insert_version(version)
        if any(us >= version.updated_us for us, _ in seen):
            return "stale", "a newer version of this annotation was already synced"
        return "applied", None

    def _delete(self, annotation_id: int, project_id: int) -> Outcome:
        """Tombstone one annotation of ``project_id``; one the store holds for other projects
        only is not that project's to delete (a forged or misdirected event)."""
        with self.store.transaction() as tx:
            tx.lock_annotation(annotation_id)
            projects = tx.annotation_projects(annotation_id)
            if projects and project_id not in projects:
                return Outcome("ignored", f"annotation {annotation_id} is not of project "
                                          f"{project_id}; not deleted")
            fresh = tx.mark_deleted(annotation_id, project_id)
            keys = tx.object_keys_of(annotation_id)
            tx.lock_objects(keys)
            written, removed = [], []
            for key in keys:
                w, r = self._sync_object(tx, ObjectKey.parse(key))
                written, removed = written + w, removed + r
        return Outcome("applied" if fresh else "duplicate", None, written, removed)

    def _sync_object(self, tx: SyncTx, key: ObjectKey,
                     dry_run: bool = False) -> tuple[list[str], list[str]]:
        """Make the object's npz match the store (inside the object's lock); no-op if it does.
        Returns (written, removed) keys; ``dry_run`` only says what it would do."""
        path = self.dataset.record_path(key, SYNCED)
        winner = tx.winner(str(key))
        if winner is None:
            if dry_run:
                return [], [str(key)] if path.exists() else []
            return [], [str(key)] if self.dataset.remove(key, SYNCED) else []
        fields = with_review(winner, QualityTx(tx.cur, tx.dialect).review_of(winner.annotation_id))
        if file_matches(path, fields):
            return [], []
        if not dry_run:
            self.dataset.write(key, record_from_fields(fields), SYNCED)
        return [str(key)], []


def _list(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise MalformedEvent(f"'{name}' must be a list")
    return value


def _id_of(item: Any, name: str) -> int:
    value = item.get("id") if isinstance(item, dict) else None
    if not is_id(value):
        raise MalformedEvent(f"{name} needs an integer 'id', got {item!r}")
    return value


def _task_of(annotation: Any, tasks: Any) -> Any:
    """The task of one annotation of a bulk ANNOTATIONS_CREATED event (matched by id)."""
    task_id = annotation.get("task") if isinstance(annotation, dict) else None
    return next((t for t in _list(tasks, "task") if isinstance(t, dict) and t.get("id") == task_id),
                None)
