"""What of a webhook event the sync journals (``label_sync.engine`` journals every event before
applying it, and a retry applies the journaled copy)."""
from __future__ import annotations

from typing import Any

from label_sync.records import ANNOTATOR_EMAIL, POSE_RENDERED
from pose6d.labeling import REGION_TYPES

# Label Studio's webhook actions the sync acts on (engine._dispatch); setup_project makes the
# webhook send only these. RECONCILE is reconcile's own upsert, never sent by Label Studio.
DELETE_ACTIONS = ("ANNOTATIONS_DELETED", "TASKS_DELETED")
LS_UPSERT_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
SYNC_ACTIONS = LS_UPSERT_ACTIONS + DELETE_ACTIONS
UPSERT_ACTIONS = LS_UPSERT_ACTIONS + ("RECONCILE",)
# Result types the record never reads (the overlay and the drawn regions): not journaled.
REGION_RESULT_TYPES = frozenset(REGION_TYPES) | {"brush"}
TASK_DATA_KEPT = ("object_key", "category", "viewport", "cad_index", "bbox", "width", "height")
ANNOTATION_KEPT = ("id", "was_cancelled", "completed_by", "updated_at", "project", "task",
                   POSE_RENDERED, ANNOTATOR_EMAIL)


def journaled(payload: Any) -> Any:
    """The payload as journaled: only what the record (records.annotation_record) and a retry
    read. Label Studio sends whole objects (the project's label config, the task's fields, the
    overlay's brush regions: tens of KB an event); keeping them all grew the store by the body
    size per event. Annotation events keep the annotation's id, non-region results,
    was_cancelled, completed_by, updated_at, project, task and the service's marks, and the
    task's id and the data fields the record reads; deletions keep ids and the project; other
    actions nothing. A payload that is not an object is kept as it came (it is refused)."""
    if not isinstance(payload, dict):
        return payload
    action = payload.get("action")
    out: dict[str, Any] = {"action": action}
    if "project" in payload:
        project = payload["project"]
        out["project"] = {"id": project.get("id")} if isinstance(project, dict) else project
    if action in UPSERT_ACTIONS:
        for name, slim in (("annotation", _journaled_annotation), ("task", _journaled_task)):
            if name in payload:
                value = payload[name]
                out[name] = [slim(v) for v in value] if isinstance(value, list) else slim(value)
    elif action in DELETE_ACTIONS:
        name = "annotations" if action == "ANNOTATIONS_DELETED" else "tasks"
        value = payload.get(name)
        out[name] = [{"id": v.get("id")} if isinstance(v, dict) else v for v in value] \
            if isinstance(value, list) else value
    return out


def _journaled_annotation(annotation: Any) -> Any:
    if not isinstance(annotation, dict):
        return annotation
    out = {k: annotation[k] for k in ANNOTATION_KEPT if k in annotation}
    user = out.get("completed_by")
    if isinstance(user, dict):
        out["completed_by"] = {k: user[k] for k in ("id", "email") if k in user}
    result = annotation.get("result")
    if isinstance(result, list):
        out["result"] = [_journaled_item(item) for item in result
                         if not (isinstance(item, dict) and item.get("type") in REGION_RESULT_TYPES)]
    elif "result" in annotation:
        out["result"] = result
    return out


def _journaled_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    return {k: item[k] for k in ("from_name", "type", "value") if k in item}


def _journaled_task(task: Any) -> Any:
    if not isinstance(task, dict):
        return task
    out = {k: task[k] for k in ("id", "project") if k in task}
    data = task.get("data")
    if isinstance(data, dict):
        out["data"] = {k: data[k] for k in TASK_DATA_KEPT if k in data}
    elif "data" in task:
        out["data"] = data
    return out
