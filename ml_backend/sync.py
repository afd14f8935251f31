"""Sync of submitted Label Studio annotations back to the dataset (``annotations_new/``).

Label Studio's webhooks (label_studio/webhooks, 1.23.2) send:
- ANNOTATION_CREATED / ANNOTATION_UPDATED: ``{"action", "annotation": {...}, "task": {...},
  "project": {...}}``; the annotation carries ``id``, ``result``, ``was_cancelled``,
  ``completed_by`` (a user id), ``task`` and ``project`` (ids), ``updated_at`` (ISO 8601, "Z").
- ANNOTATIONS_CREATED: the same with lists under "annotation" and "task" (bulk import).
- ANNOTATIONS_DELETED: ``{"action", "annotations": [{"id": 1}, ...], "project": {...}}``: ids only,
  so the store remembers which object each annotation belongs to.
- TASKS_DELETED: ``{"tasks": [{"id": 1}, ...]}``; their annotations go without their own event.

An object's synced record is always the newest (by updated_at) valid version of a not-deleted,
not-skipped annotation of that object, or no file. Every event is journaled before it is applied
and its outcome recorded: applied, duplicate, stale, ignored, rejected or failed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
from typing import Any, Iterable

import numpy as np

from ml_backend.sync_store import SyncStore, Tx, Version, canonical_json
from pose6d.camera import InvalidPoseError
from pose6d.dataset import SYNCED, Dataset, ObjectKey, ObjectRecord
from pose6d.inout import DataError, load_npz
from pose6d.labeling import CAD, DENSE, QUALITY, read_results
from pose6d.labels import dense_code, quality_code

log = logging.getLogger(__name__)

DEFAULT_STORE = "annotations_new/.sync.sqlite3"
UPSERT_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "RECONCILE")
# Worst first: an event touching several annotations reports its worst outcome.
STATUS_RANK = ("failed", "rejected", "applied", "stale", "duplicate", "ignored")
STUCK_AFTER = dt.timedelta(minutes=5)  # a 'received' event this old was cut off by a crash


class SyncRejected(Exception):
    """An annotation that must not reach the dataset (HTTP 422). ``reason`` says why."""

    def __init__(self, reason: str, summary: dict | None = None):
        super().__init__(reason)
        self.reason, self.summary = reason, summary


class MalformedEvent(ValueError):
    """A payload that is not a Label Studio event we understand (HTTP 400)."""


# --- Pure helpers: payload fields -> record. ---


def parse_updated_at(value: Any) -> tuple[str, int]:
    """(ISO 8601 UTC text, microseconds since the epoch) of Label Studio's ``updated_at``."""
    if not isinstance(value, str):
        raise MalformedEvent(f"updated_at must be an ISO 8601 string, got {value!r}")
    try:
        stamp = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEvent(f"updated_at is not ISO 8601: {value!r}") from None
    if stamp.tzinfo is None:  # Label Studio runs with USE_TZ and TIME_ZONE = UTC
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    try:
        stamp = stamp.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. year 1 with a positive offset
        raise MalformedEvent(f"updated_at is out of range: {value!r}") from None
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return stamp.isoformat(timespec="microseconds"), (stamp - epoch) // dt.timedelta(microseconds=1)


def annotator_of(annotation: dict) -> str:
    """The annotator's email when the payload has it (exports, expanded users), else the user id."""
    user = annotation.get("completed_by")
    if isinstance(user, dict):
        if user.get("email"):
            return str(user["email"])
        user = user.get("id")
    return "unknown" if user is None else str(user)


def object_key_of(task: dict) -> ObjectKey:
    """The task's ``data.object_key``; SyncRejected for a missing, malformed or unsafe one."""
    data = task.get("data") or {}
    try:
        key = ObjectKey.parse(data.get("object_key"))
    except DataError as exc:
        raise SyncRejected(f"bad object_key: {exc}") from None
    if data.get("category") not in (None, key.category):
        raise SyncRejected(f"task category {data['category']!r} does not match object {key}")
    return key


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SyncRejected(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise SyncRejected(f"{name} must be > 0, got {value!r}")
    return number


def _ls_id(value: Any) -> int:
    """A Label Studio id as stored in the npz: -1 when unknown (npz cannot hold None unpickled)."""
    if isinstance(value, dict):
        value = value.get("id")
    return int(value) if _is_id(value) else -1


def annotation_record(annotation: dict, task: dict, initial: ObjectRecord,
                      dataset: Dataset) -> ObjectRecord:
    """The dataset record of one submitted annotation; SyncRejected if it cannot be one.

    Pose Numbers are degrees in Label Studio and radians in the record. ``cad`` is the 1-based
    cad index as text (the task's / initial one when the control was left alone). bbox, width,
    height come from the initial record (the task's data otherwise).
    """
    key = object_key_of(task)
    data = task.get("data") or {}
    if annotation.get("was_cancelled"):
        raise SyncRejected("annotation was skipped (was_cancelled)")
    values = read_results(annotation.get("result"))
    codes = {}
    for name, to_code in ((QUALITY, quality_code), (DENSE, dense_code)):
        if name not in values.choices:
            raise SyncRejected(f"missing {name} choice")
        try:
            codes[name] = to_code(values.choices[name])
        except KeyError:
            raise SyncRejected(f"unknown {name} {values.choices[name]!r}") from None
    viewport = _positive(data.get("viewport", initial.pose.viewport), "viewport")
    try:
        pose = values.pose(viewport)
    except InvalidPoseError as exc:
        raise SyncRejected(f"invalid pose: {exc}") from None
    cad_text = values.choices.get(CAD, data.get("cad_index", initial.cad_index))
    try:
        cad_index = int(str(cad_text).strip())
    except ValueError:
        raise SyncRejected(f"cad choice must be a cad index, got {cad_text!r}") from None
    available = dataset.cad.indices(key.category)
    if cad_index not in available:
        raise SyncRejected(f"unknown cad index {cad_index} for {key.category} "
                           f"(available: {available})")
    updated_at, _ = parse_updated_at(annotation.get("updated_at"))
    extra = {name: initial.extra.get(name, data.get(name)) for name in ("bbox", "width", "height")}
    extra = {name: value for name, value in extra.items() if value is not None}
    extra.update(annotator=annotator_of(annotation), object_status=codes[QUALITY],
                 dense=codes[DENSE], ls_annotation_id=_ls_id(annotation.get("id")),
                 ls_task_id=_ls_id(task.get("id")), ls_project_id=_ls_id(annotation.get("project")),
                 updated_at=updated_at)
    return ObjectRecord(pose, cad_index, extra)


def record_fields(record: ObjectRecord) -> dict[str, Any]:
    """A record's npz fields as plain JSON values (how the store keeps it)."""
    return _plain(record.to_npz_dict())


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v.item() if isinstance(v, np.generic)
                else v) for k, v in fields.items()}


def file_matches(path, fields: dict[str, Any]) -> bool:
    """True if the npz at ``path`` already holds exactly ``fields`` (then it is not rewritten)."""
    try:
        return canonical_json(_plain(load_npz(path))) == canonical_json(fields)
    except DataError:
        return False


# --- The service. ---


@dataclasses.dataclass
class Outcome:
    status: str
    reason: str | None = None
    written: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)

    def merge(self, other: "Outcome") -> "Outcome":
        worst = min(self.status, other.status, key=STATUS_RANK.index)
        reasons = "; ".join(r for r in (self.reason, other.reason) if r) or None
        return Outcome(worst, reasons, self.written + other.written, self.removed + other.removed)


class SyncService:
    """Applies Label Studio annotation events to ``annotations_new/``; safe across replicas."""

    def __init__(self, dataset: Dataset, store_url: str | None = None):
        self.dataset = dataset
        self.store = SyncStore(store_url or str(dataset.root / DEFAULT_STORE))

    def handle_event(self, payload: dict) -> dict:
        """Journal and apply one webhook payload; returns {action, status, reason, written,
        removed}. Raises MalformedEvent (400) or SyncRejected (422); a file-system or store
        failure is journaled as 'failed' (retry_failed) and reported in the summary."""
        action = payload.get("action") if isinstance(payload, dict) else None
        with self.store.transaction() as tx:
            event_id = tx.journal_add(str(action), canonical_json(_slim(payload)))
        return self._run(event_id, payload)

    def apply_annotation(self, annotation: dict, task: dict) -> dict:
        """Apply one annotation as a webhook would (for reconciling from an export)."""
        return self.handle_event({"action": "RECONCILE", "annotation": annotation, "task": task})

    def retry_failed(self) -> int:
        """Re-apply failed (and crash-interrupted) events; returns how many no longer fail."""
        stuck = dt.datetime.now(dt.timezone.utc) - STUCK_AFTER
        stuck_before = stuck.isoformat(timespec="microseconds")
        with self.store.transaction() as tx:
            pending = tx.journal_pending(stuck_before)
        done = 0
        for event_id, _, text in pending:
            try:
                summary = self._run(event_id, json.loads(text))
            except (SyncRejected, MalformedEvent):
                done += 1
                continue
            done += summary["status"] != "failed"
        return done

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
        except (OSError, DataError, *self.store.errors) as exc:
            outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
            log.error("sync event %s (%s) failed, kept for retry: %s", event_id, action, exc)
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
            return self._each(self._delete(_id_of(a, "annotation"))
                              for a in _list(payload.get("annotations"), "annotations"))
        if action == "TASKS_DELETED":
            task_ids = [_id_of(t, "task") for t in _list(payload.get("tasks"), "tasks")]
            with self.store.transaction() as tx:
                ids = sorted({a for t in task_ids for a in tx.annotations_of_task(t)})
            return self._each(self._delete(a) for a in ids)
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
            annotation = dict(annotation, project=_ls_id(project))
        updated_at, updated_us = parse_updated_at(annotation.get("updated_at"))
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
        digest = hashlib.sha256(canonical_json([fields, reason]).encode()).hexdigest()[:16]
        version = Version(annotation_id, updated_us, digest, str(key), _ls_id(task.get("id")),
                          _ls_id(annotation.get("project")), updated_at, fields is not None,
                          reason, fields)
        with self.store.transaction() as tx:
            tx.lock_annotation(annotation_id)
            tx.lock_objects([version.object_key])
            status, note = self._store_version(tx, version)
            written, removed = self._sync_object(tx, key)
        if annotation.get("was_cancelled"):
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
            return Outcome("failed", f"cannot read the initial record of {key}: {io_error}")
        return Outcome("rejected", f"no initial record can be used for {key}: {exc}")

    @staticmethod
    def _store_version(tx: Tx, version: Version) -> tuple[str, str | None]:
        """Keep the version, also a late older one: the record depends only on the set of
        versions seen, never on their arrival order. Returns (status, note)."""
        if tx.is_deleted(version.annotation_id):
            return "stale", "annotation was deleted"
        seen = tx.version_keys(version.annotation_id)
        if (version.updated_us, version.content_hash) in seen:
            return "duplicate", None
        tx.insert_version(version)
        if any(us >= version.updated_us for us, _ in seen):
            return "stale", "a newer version of this annotation was already synced"
        return "applied", None

    def _delete(self, annotation_id: int) -> Outcome:
        with self.store.transaction() as tx:
            tx.lock_annotation(annotation_id)
            fresh = tx.mark_deleted(annotation_id)
            keys = tx.object_keys_of(annotation_id)
            tx.lock_objects(keys)
            written, removed = [], []
            for key in keys:
                w, r = self._sync_object(tx, ObjectKey.parse(key))
                written, removed = written + w, removed + r
        return Outcome("applied" if fresh else "duplicate", None, written, removed)

    def _sync_object(self, tx: Tx, key: ObjectKey) -> tuple[list[str], list[str]]:
        """Make the object's npz match the store (inside the object's lock); no-op if it does."""
        winner = tx.winner(str(key))
        if winner is None:
            return [], [str(key)] if self.dataset.remove(key, SYNCED) else []
        if file_matches(self.dataset.record_path(key, SYNCED), winner.record):
            return [], []
        record = ObjectRecord.from_npz_dict({k: np.asarray(v) if isinstance(v, list) else v
                                             for k, v in winner.record.items()})
        self.dataset.write(key, record, SYNCED)
        return [str(key)], []


def _list(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise MalformedEvent(f"'{name}' must be a list")
    return value


def _is_id(value: Any) -> bool:
    """An int that fits the store's BIGINT columns (a bigger one would crash the store)."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _id_of(item: Any, name: str) -> int:
    value = item.get("id") if isinstance(item, dict) else None
    if not _is_id(value):
        raise MalformedEvent(f"{name} needs an integer 'id', got {item!r}")
    return value


def _task_of(annotation: Any, tasks: Any) -> Any:
    """The task of one annotation of a bulk ANNOTATIONS_CREATED event (matched by id)."""
    task_id = annotation.get("task") if isinstance(annotation, dict) else None
    return next((t for t in _list(tasks, "task") if isinstance(t, dict) and t.get("id") == task_id),
                None)


def _slim(payload: Any) -> Any:
    """The payload as journaled: the project reduced to its id (its label config is large)."""
    if isinstance(payload, dict) and isinstance(payload.get("project"), dict):
        return dict(payload, project={"id": payload["project"].get("id")})
    return payload
