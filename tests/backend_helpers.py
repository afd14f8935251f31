"""Helpers for backend tests: an app on a dataset, and Label Studio-shaped request bodies."""
from __future__ import annotations

from pathlib import Path

from ml_backend._wsgi import create_app
from ml_backend.settings import Settings
from pose6d import labeling
from pose6d.dataset import Dataset, ObjectKey


def make_client(dataset: Dataset, **settings):
    app = create_app(Settings(data_root=Path(dataset.root), **settings))
    return app.test_client()


def task_for(dataset: Dataset, key: ObjectKey, task_id: int = 1) -> dict:
    record = dataset.read(key)
    return {"id": task_id, "project": 1, "data": {
        "image": f"/data/local-files/?d={dataset.image_relpath(key)}", "object_key": str(key),
        "category": key.category, "bbox": [float(v) for v in record.bbox],
        "width": int(record.extra["width"]), "height": int(record.extra["height"]),
        "viewport": record.pose.viewport, "cad_index": record.cad_index}}


def results_by_name(result: list[dict]) -> dict[str, dict]:
    """Index a result list: Numbers/Choices/TextArea by from_name, regions by id."""
    out = {}
    for item in result:
        if item["type"] in ("number", "choices", "textarea"):
            out[item["from_name"]] = item
        else:
            out[item["id"]] = item
    return out


def numbers_of(result: list[dict]) -> dict[str, float]:
    return {r["from_name"]: r["value"]["number"] for r in result if r["type"] == "number"}


def interactive_body(task: dict, context_result: list[dict]) -> dict:
    return {"tasks": [task], "project": "1.1", "label_config": "<View/>",
            "params": {"login": None, "password": None, "context": {"result": context_result}}}


def submitted_context(numbers: dict[str, float], cad: int, box_id: str = "box-of-annotation-1",
                      quality: str = "good", dense: str = "no") -> list[dict]:
    """The annotation Label Studio submits: the values shown, the CAD, the command box (empty),
    the quality and dense choices."""
    return command_context(numbers, cad, "", box_id) + [
        {"from_name": name, "to_name": labeling.IMAGE, "type": "choices",
         "value": {"choices": [value]}}
        for name, value in ((labeling.QUALITY, quality), (labeling.DENSE, dense))]


def command_context(numbers: dict[str, float], cad: int, command: str,
                    box_id: str = "box-of-annotation-1") -> list[dict]:
    """The context Label Studio sends when the command box is submitted (docs/label_studio_notes.md):
    ``box_id`` is the id the browser gave the box's result in that annotation."""
    out = [{"from_name": n, "to_name": labeling.IMAGE, "type": "number", "value": {"number": v}}
           for n, v in numbers.items()]
    out.append({"from_name": labeling.CAD, "to_name": labeling.IMAGE, "type": "choices",
                "value": {"choices": [str(cad)]}})
    out.append({"id": box_id, "from_name": labeling.COMMAND, "to_name": labeling.IMAGE,
                "type": "textarea", "value": {"text": [command]}})
    return out
