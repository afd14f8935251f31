"""Label Studio annotation -> dataset record: the translation the sync, reconcile and the
exports share, so that a record synced by the webhook and one exported from a project agree
field for field (docs/data_formats.md).

Label Studio's webhooks (1.23.2) send:
- ANNOTATION_CREATED / ANNOTATION_UPDATED: ``{"action", "annotation": {...}, "task": {...},
  "project": {...}}``; the annotation carries ``id``, ``result``, ``was_cancelled``,
  ``completed_by`` (a user id), ``task`` and ``project`` (ids), ``updated_at`` (ISO 8601, "Z").
- ANNOTATIONS_CREATED: the same with lists under "annotation" and "task" (bulk import).
- ANNOTATIONS_DELETED: ``{"action", "annotations": [{"id": 1}, ...], "project": {...}}``: ids only.
- TASKS_DELETED: ``{"tasks": [{"id": 1}, ...]}``; their annotations go without their own event.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from pose6d.camera import InvalidPoseError
from pose6d.dataset import Dataset, ObjectKey, ObjectRecord
from pose6d.errors import BadInput, DataError
from pose6d.inout import load_npz
from pose6d.labeling import CAD, DENSE, QUALITY, read_results
from pose6d.labels import dense_code, quality_code
from pose6d.tasks import TaskError, task_object_key
from label_sync.database import canonical_json


# Set on a webhook's annotation by the service before syncing: was the submitted pose drawn for
# the annotator (True / False)? Kept in the record as ``pose_rendered`` (journaled with the event,
# so a retried event keeps it); absent when nobody could tell (an annotation made by the API).
POSE_RENDERED = "pose6d_pose_rendered"
# Likewise the annotator's email when the service knows it (Label Studio's webhook names the
# user by id only): kept as ``annotator_email``.
ANNOTATOR_EMAIL = "pose6d_annotator_email"


class SyncRejected(BadInput):
    """An annotation that must not reach the dataset (HTTP 422); the message says why.

    summary: what the sync did with the event (its journal id, status, files), when it got
    that far.
    """

    def __init__(self, reason: str, summary: dict | None = None):
        super().__init__(reason)
        self.summary = summary

    @property
    def reason(self) -> str:
        return str(self)


class MalformedEvent(BadInput):
    """A payload that is not a Label Studio event we understand (HTTP 400)."""


def parse_updated_at(value: Any) -> tuple[str, int]:
    """(ISO 8601 UTC text, microseconds since the epoch) of Label Studio's ``updated_at``."""
    if not isinstance(value, str) or len(value) > 64:
        raise MalformedEvent(f"updated_at must be an ISO 8601 string, got {str(value)[:64]!r}")
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
    return "unknown" if user is None else str(user)[:254]


def is_skipped(annotation: dict) -> bool:
    """The annotator skipped the task (Label Studio's ``was_cancelled``)."""
    return bool(annotation.get("was_cancelled"))


def object_key_of(task: Any) -> ObjectKey:
    """The task's object (pose6d.tasks.task_object_key); SyncRejected when it names none."""
    try:
        return task_object_key(task)
    except TaskError as exc:
        raise SyncRejected(f"bad object_key: {exc}") from None


def is_id(value: Any) -> bool:
    """An int that fits the store's BIGINT columns (a bigger one would crash the store)."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def ls_id(value: Any) -> int:
    """A Label Studio id as stored in the npz: -1 when unknown (npz cannot hold None unpickled)."""
    if isinstance(value, dict):
        value = value.get("id")
    return int(value) if is_id(value) else -1


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SyncRejected(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise SyncRejected(f"{name} must be > 0, got {value!r}")
    return number


def annotation_record(annotation: dict, task: dict, initial: ObjectRecord,
                      dataset: Dataset) -> ObjectRecord:
    """The dataset record of one submitted annotation; SyncRejected if it cannot be one.

    Pose Numbers are degrees in Label Studio and radians in the record. ``cad`` is the 1-based
    cad index as text (the task's / initial one when the control was left alone). bbox, width,
    height come from the initial record (the task's data otherwise).
    """
    key = object_key_of(task)
    data = task.get("data") or {}
    if is_skipped(annotation):
        raise SyncRejected("annotation was skipped")
    values = read_results(annotation.get("result"))
    codes = {}
    for name, to_code in ((QUALITY, quality_code), (DENSE, dense_code)):
        if name not in values.choices:
            raise SyncRejected(f"missing {name} choice")
        try:
            codes[name] = to_code(values.choices[name])
        except KeyError:
            raise SyncRejected(f"unknown {name} {values.choices[name][:60]!r}") from None
    viewport = _positive(data.get("viewport", initial.pose.viewport), "viewport")
    try:
        pose = values.pose(viewport)
    except InvalidPoseError as exc:
        raise SyncRejected(f"invalid pose: {exc}") from None
    cad_text = str(values.choices.get(CAD, data.get("cad_index", initial.cad_index))).strip()
    if not (cad_text.isascii() and cad_text.isdigit() and len(cad_text) <= 6):
        raise SyncRejected(f"cad choice must be a cad index, got {cad_text[:40]!r}")
    cad_index = int(cad_text)
    available = dataset.cad.indices(key.category)
    if cad_index not in available:
        raise SyncRejected(f"unknown cad index {cad_index} for {key.category} "
                           f"(available: {available})")
    updated_at, _ = parse_updated_at(annotation.get("updated_at"))
    extra = {name: initial.extra.get(name, data.get(name)) for name in ("bbox", "width", "height")}
    extra = {name: value for name, value in extra.items() if value is not None}
    if isinstance(annotation.get(POSE_RENDERED), bool):
        extra["pose_rendered"] = annotation[POSE_RENDERED]
    if isinstance(annotation.get(ANNOTATOR_EMAIL), str):
        extra["annotator_email"] = annotation[ANNOTATOR_EMAIL][:254]
    extra.update(annotator=annotator_of(annotation), object_status=codes[QUALITY],
                 dense=codes[DENSE], ls_annotation_id=ls_id(annotation.get("id")),
                 ls_task_id=ls_id(task.get("id")), ls_project_id=ls_id(annotation.get("project")),
                 updated_at=updated_at)
    return ObjectRecord(pose, cad_index, extra)


def record_fields(record: ObjectRecord) -> dict[str, Any]:
    """A record's npz fields as plain JSON values (how the store keeps it)."""
    return _plain(record.to_npz_dict())


def record_from_fields(fields: dict[str, Any], source: str = "sync store") -> ObjectRecord:
    """The inverse of ``record_fields``; DataError for fields that are no record."""
    return ObjectRecord.from_npz_dict(
        {k: np.asarray(v) if isinstance(v, list) else v for k, v in fields.items()}, source)


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v.item() if isinstance(v, np.generic)
                else v) for k, v in fields.items()}


def file_matches(path: Path, fields: dict[str, Any]) -> bool:
    """True if the npz at ``path`` already holds exactly ``fields`` (then it is not rewritten)."""
    try:
        return canonical_json(_plain(load_npz(path))) == canonical_json(fields)
    except DataError:
        return False
