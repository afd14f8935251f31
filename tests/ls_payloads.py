"""Webhook payloads as Label Studio 1.23.2 sends them (label_studio/webhooks).

ANNOTATION_CREATED / ANNOTATION_UPDATED: ``{"action", "annotation", "task", "project"}`` where
annotation and task are ModelSerializers with ``fields = '__all__'`` (foreign keys as ids,
datetimes as DRF ISO 8601 with "Z") and project is the ProjectWebhookSerializer.
ANNOTATIONS_DELETED (api_webhook_for_delete, the data manager's delete action): ids only.
"""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

_ids = itertools.count(1)
BASE_TIME = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def ls_time(seconds: float) -> str:
    """BASE_TIME + seconds as DRF renders a DateTimeField (microseconds dropped when zero)."""
    return (BASE_TIME + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _item(from_name: str, kind: str, value: dict) -> dict:
    return {"id": f"r{next(_ids)}", "from_name": from_name, "to_name": "image", "type": kind,
            "origin": "manual", "value": value}


def pose_result(azimuth=30.0, elevation=15.0, theta=0.0, distance=8.0, px=160.0, py=120.0,
                quality: str | None = "good", dense: str | None = "no",
                cad: str | None = "1") -> list[dict]:
    """A submitted result: six Numbers (degrees, pixels) and the cad / quality / dense Choices.
    A None value leaves that control out."""
    numbers = dict(azimuth=azimuth, elevation=elevation, theta=theta, distance=distance, px=px,
                   py=py)
    out = [_item(name, "number", {"number": v}) for name, v in numbers.items() if v is not None]
    for name, value in (("cad", cad), ("quality", quality), ("dense", dense)):
        if value is not None:
            out.append(_item(name, "choices", {"choices": [value]}))
    return out


def task(task_id: int, object_key: str, project_id: int = 1, viewport: float = 500.0,
         cad_index: int = 1) -> dict:
    """TaskWebhookSerializer output for one object task."""
    return {
        "id": task_id, "project": project_id, "inner_id": task_id, "is_labeled": True,
        "data": {"image": f"/data/local-files/?d=images/{object_key}.JPEG",
                 "object_key": object_key, "category": object_key.split("/")[0],
                 "viewport": viewport, "cad_index": cad_index, "bbox": [100, 80, 220, 160],
                 "width": 320, "height": 240},
        "meta": {}, "created_at": ls_time(-3600), "updated_at": ls_time(0), "overlap": 1,
        "total_annotations": 1, "cancelled_annotations": 0, "total_predictions": 1,
        "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None,
        "updated_by": None, "file_upload": None, "comment_authors": [], "allow_skip": True,
        "precomputed_agreement": None,
    }


def annotation(annotation_id: int, task_id: int, result: list[dict], updated: float,
               user: Any = 7, project_id: int = 1, was_cancelled: bool = False) -> dict:
    """AnnotationWebhookSerializer output; ``updated`` is seconds after BASE_TIME."""
    return {
        "id": annotation_id, "result": result, "was_cancelled": was_cancelled,
        "ground_truth": False, "created_at": ls_time(updated - 60), "updated_at": ls_time(updated),
        "draft_created_at": None, "lead_time": 42.5, "import_id": None,
        "last_action": "submitted", "bulk_created": False, "task": task_id,
        "project": project_id, "completed_by": user, "updated_by": user,
        "parent_prediction": 3, "parent_annotation": None, "last_created_by": user,
        "result_count": len(result), "unique_id": f"00000000-0000-4000-8000-{annotation_id:012d}",
    }


def project(project_id: int = 1) -> dict:
    return {"id": project_id, "title": "pose6d", "label_config": "<View>...</View>",
            "task_number": 3, "finished_task_number": 1, "created_by": 1}


def annotation_event(action: str, annotation_id: int, task_id: int, object_key: str,
                     updated: float, result: list[dict] | None = None, **kwargs) -> dict:
    """ANNOTATION_CREATED / ANNOTATION_UPDATED for one annotation of one object task."""
    task_kwargs = {k: kwargs.pop(k) for k in ("viewport", "cad_index") if k in kwargs}
    result = pose_result() if result is None else result
    return {"action": action,
            "annotation": annotation(annotation_id, task_id, result, updated, **kwargs),
            "task": task(task_id, object_key, **task_kwargs), "project": project()}


def created(annotation_id, task_id, object_key, updated, result=None, **kwargs) -> dict:
    return annotation_event("ANNOTATION_CREATED", annotation_id, task_id, object_key, updated,
                            result, **kwargs)


def updated(annotation_id, task_id, object_key, updated, result=None, **kwargs) -> dict:
    return annotation_event("ANNOTATION_UPDATED", annotation_id, task_id, object_key, updated,
                            result, **kwargs)


def deleted(*annotation_ids: int) -> dict:
    """ANNOTATIONS_DELETED: OnlyIDWebhookSerializer(many=True) plus the project."""
    return {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": i} for i in annotation_ids],
            "project": project()}


def tasks_deleted(*task_ids: int) -> dict:
    return {"action": "TASKS_DELETED", "tasks": [{"id": i} for i in task_ids],
            "project": project()}
