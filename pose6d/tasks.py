"""Label Studio tasks for a dataset: one task per object.

Task data (what labeling_config/pose6d.xml reads, names from pose6d.labeling)::

    image          URL of the photo (Label Studio local files by default)
    object_key     "category/name_k" (str(ObjectKey)): the link back to the dataset record
    category, bbox [x1, y1, x2, y2] pixels, width, height (of the photo), viewport
    cad_index      the initial 1-based CAD model
    cad_options    one {"value": "<index>", "html": ..., "hotkey": ...} per CAD model of the category,
                   the html showing its picture (pose6d.cad_gallery) and name
    instructions   the category's rule for annotators, or ""

By default a task carries no prediction: Label Studio then asks the ML backend for one when the
task is first opened, from the labeling stream or the Data Manager alike, and shows the pose with
its overlay. A task imported with ``predictions=True`` carries the initial pose as a prediction
(six Numbers, the CAD choice, the box) without the overlay, which the backend renders; Label
Studio shows an existing prediction and asks nobody, so such a task opened from the Data Manager
has no overlay until the first command (docs/label_studio_notes.md).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from pose6d import labeling as L
from pose6d.cad_gallery import thumbnail_relpath
from pose6d.cad_library import CadError
from pose6d.camera import InvalidPoseError
from pose6d.dataset import Dataset, ObjectKey
from pose6d.errors import DataError
from pose6d.inout import image_size
from pose6d.labels import CATEGORY_INSTRUCTIONS

LOCAL_FILES_PREFIX = "/data/local-files/?d="  # Label Studio's local-files URL; d is root-relative
PREDICTION_MODEL_VERSION = "initial-annotation"
THUMBNAIL_STYLE = "height: 56px; display: block"
# data fields of a task a reviewer sent back (ls_admin.review): why, shown in the command box,
# and the review it answers (the backend then opens it at the pose sent back, to be corrected)
REVIEW_NOTE, SENT_BACK_FOR = "review_note", "sent_back_for"


class TaskError(DataError):
    """An object that cannot become a task, or a task that names no usable object (missing photo
    or CAD, bad record, bad object_key). Names the object."""


def image_url(relpath: str, prefix: str | None = None) -> str:
    """URL of a photo given its dataset-root-relative path (posix); local files by default."""
    return (LOCAL_FILES_PREFIX if prefix is None else prefix) + quote(relpath, safe="/")


def cad_options(dataset: Dataset, category: str, image_url_prefix: str | None = None,
                pictures: bool = True) -> list[dict[str, str]]:
    """One dynamic-Choices option per CAD model of ``category`` (value = 1-based index as text).

    With ``pictures`` the option shows the model's picture (pose6d.cad_gallery, served like the
    photos: ``image_url_prefix``) above its name; Label Studio's sanitiser keeps <img> (it drops
    scripts, iframes and on* attributes). Raises TaskError when the category has no CAD model.
    """
    try:
        indices = dataset.cad.indices(category)
    except CadError as exc:
        raise TaskError(str(exc)) from None
    if not indices:
        raise TaskError(f"no CAD models for category {category!r} in {dataset.cad.root}")
    out = []
    for n, index in enumerate(indices):
        text = f"model {index}"
        if pictures:
            src = image_url(thumbnail_relpath(dataset.cad, category, index), image_url_prefix)
            html = f'<img src="{src}" alt="{text}" style="{THUMBNAIL_STYLE}">{text}'
        else:
            html = text
        option = {"value": str(index), "html": html}
        if n < len(L.CAD_HOTKEYS):  # explicit, or Label Studio picks keys that tools use
            option["hotkey"] = L.CAD_HOTKEYS[n]
        out.append(option)
    return out


def _bbox(extra_bbox, width: int, height: int) -> list[float] | None:
    if extra_bbox is None:
        return None
    box = [float(v) for v in extra_bbox]
    if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        raise TaskError(f"bad bbox {box} (x1, y1, x2, y2 pixels) for a {width}x{height} photo")
    return box


def object_task(dataset: Dataset, key: ObjectKey, image_url_prefix: str | None = None,
                pictures: bool = True, predictions: bool = False,
                fit_score: float | None = None) -> dict[str, Any]:
    """The Label Studio task of one object (``{"data": ..., "predictions": [...]}``).

    fit_score: the score of the object's pose fitted at prefill (ls_admin.prefill), kept as
    ``data.fit_score`` for the Data Manager to sort by; None: no such field.

    Raises TaskError naming the object when its photo is missing, unreadable, turned on screen
    by its EXIF orientation or a file browsers do not show (inout.image_size), its CAD category
    or initial CAD model is missing, or its record is malformed.
    """
    try:
        record = dataset.read(key)
        relpath = dataset.image_relpath(key)
        # header only: fast on big datasets
        width, height = image_size(dataset.root / relpath, for_labelling=True)
        options = cad_options(dataset, key.category, image_url_prefix, pictures)
        if str(record.cad_index) not in {o["value"] for o in options}:
            raise TaskError(f"CAD model {record.cad_index} missing (have "
                            f"{', '.join(o['value'] for o in options)})")
        stored = (record.extra.get("width"), record.extra.get("height"))
        if None not in stored and (int(stored[0]), int(stored[1])) != (width, height):
            raise TaskError(f"photo is {width}x{height} but the record says {stored[0]}x{stored[1]}")
        bbox = _bbox(record.bbox, width, height)
        pose_result = L.pose_results(record.pose) if predictions else []
    except (DataError, InvalidPoseError) as exc:
        raise TaskError(f"{key}: {exc}") from None  # always "<key>: <reason>"
    data = {
        L.DATA_IMAGE: image_url(relpath, image_url_prefix),
        "object_key": str(key),
        "category": key.category,
        "bbox": bbox,
        "width": int(width),
        "height": int(height),
        "viewport": float(record.pose.viewport),
        "cad_index": int(record.cad_index),
        L.DATA_CAD_OPTIONS: options,
        L.DATA_INSTRUCTIONS: CATEGORY_INSTRUCTIONS.get(key.category, ""),
    }
    if fit_score is not None:
        data[L.DATA_FIT_SCORE] = float(fit_score)
    task: dict[str, Any] = {"data": data}
    if predictions:
        result = pose_result + [L.choice_result(L.CAD, str(record.cad_index))]
        if bbox is not None:
            result.append(L.box_region(bbox, width, height))
        task["predictions"] = [{"model_version": PREDICTION_MODEL_VERSION, "score": 1.0,
                                "result": result}]
    return task


def iter_tasks(dataset: Dataset, keys: Iterable[ObjectKey] | None = None,
               categories: list[str] | None = None, limit: int | None = None,
               on_skip: Callable[[ObjectKey, str], None] | None = None,
               **task_kwargs: Any) -> Iterator[dict[str, Any]]:
    """Tasks of ``keys`` (default: every object of ``categories``, or of all), at most ``limit``.

    Objects that cannot become tasks are passed to ``on_skip(key, message)`` and left out; the
    other keyword arguments go to ``object_task``.
    """
    if keys is None:
        keys = dataset.objects(categories=categories)
    made = 0
    for key in keys:
        if limit is not None and made >= limit:
            return
        try:
            task = object_task(dataset, key, **task_kwargs)
        except TaskError as exc:
            if on_skip is not None:
                on_skip(key, str(exc))
            continue
        made += 1
        yield task


def task_object_key(task: dict[str, Any]) -> ObjectKey:
    """The ObjectKey a Label Studio task (or its ``data``) stands for: the one parser of tasks.

    Raises TaskError when ``data.object_key`` is missing or malformed, or when ``data.category``
    names another category than the key.
    """
    data = task.get("data", task) if isinstance(task, dict) else None
    if not isinstance(data, dict) or "object_key" not in data:
        raise TaskError("task data has no object_key")
    try:
        key = ObjectKey.parse(data["object_key"])
    except DataError as exc:
        raise TaskError(str(exc)) from None
    if data.get("category") not in (None, key.category):
        raise TaskError(f"task category {str(data['category'])[:60]!r} does not match object {key}")
    return key
