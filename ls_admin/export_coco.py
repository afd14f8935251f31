"""Export labels as a COCO instances file (https://cocodataset.org/#format-data): the masks and
boxes rendered from each labelled pose, with the pose itself on every annotation.

Layout written under ``out``::

    README.md                         this description
    annotations/instances_<split>.json  {"info", "images", "categories", "annotations"}
    left_out.json                     [{"object_key", "annotator", "reason"}]: skipped, "bad"
                                      (status_bad, unless --include-bad) or "not visible"

images: {id, file_name, width, height}; file_name is the photo's path relative to the data
root (images/<category>/<name>.JPEG): pass the data root as the image folder. One COCO image per
photo; its objects are its annotations. categories: {id, name, supercategory "object"}, ids
1.. over the CAD folder's categories in sorted order (stable across exports).
annotations: {id, image_id, category_id, iscrowd 0, segmentation, area, bbox,
segmentation_amodal, pose6d}:
- segmentation: compressed RLE ({"size": [h, w], "counts": str}, pycocotools' own encoding) of
  the VISIBLE mask: the pixels of the photo where the rendered object is nearer than every
  other labelled object of the photo (a z-buffer over all of them).
- area: its pixel count; bbox: [x, y, w, h] of it (pycocotools toBbox: w = x_max + 1 - x_min).
- segmentation_amodal: the same RLE of the whole silhouette (occluded parts included; cut to
  the photo).
- pose6d: {object_key, azimuth, elevation, theta (radians), distance, px, py, viewport, focal
  (as in the synced record), cad_index, object_status, dense, annotator, ls_annotation_id}.
Rendering: pose6d.renderer ray casting, pixel (col, row) sampled at its centre, the same
silhouette Label Studio's overlay shows. Objects with no visible pixel are left out.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from ls_admin.export_source import BAD_STATUS, ExportError, ExportSummary, Label, staged_output
from ls_admin.export_views import Photo, relative_image, render_photos
from pose6d import coco_rle
from pose6d.dataset import Dataset
from pose6d.inout import atomic_write_bytes
from pose6d.visibility import coco_bbox

README = __doc__


def pose_fields(label: Label) -> dict[str, Any]:
    """The pose6d field of an annotation (module docstring)."""
    rec = label.record
    out: dict[str, Any] = {"object_key": str(label.key)}
    out.update({k: float(v) for k, v in rec.pose.as_radians().items()})
    out.update(viewport=rec.pose.viewport, focal=rec.pose.focal, cad_index=int(rec.cad_index),
               object_status=label.object_status, dense=label.dense, annotator=label.annotator,
               ls_annotation_id=label.annotation_id)
    return out


def exported(label: Label, include_bad: bool) -> bool:
    """Skipped labels never; status_bad ones only when asked."""
    return not label.skipped and (include_bad or label.object_status != BAD_STATUS)


def left_out_entry(label: Label, reason: str) -> dict[str, Any]:
    return {"object_key": str(label.key), "annotator": label.annotator, "reason": reason}


def coco_categories(dataset: Dataset) -> list[dict[str, Any]]:
    """COCO categories: every CAD category, ids 1.. in sorted order."""
    return [{"id": n, "name": c, "supercategory": "object"}
            for n, c in enumerate(dataset.cad.categories(), start=1)]


def export_coco(labels: list[Label], dataset: Dataset, out: Path, split: str = "train",
                include_bad: bool = False, overwrite: bool = False, workers: int = 2,
                progress: bool = True) -> ExportSummary:
    """Write the COCO folder (module docstring) under ``out``; returns the summary."""
    categories = coco_categories(dataset)
    cat_ids = {c["name"]: c["id"] for c in categories}
    left_out = [left_out_entry(l, "skipped" if l.skipped else l.object_status)
                for l in labels if not exported(l, include_bad)]
    kept = [l for l in labels if exported(l, include_bad)]
    unknown = sorted({l.key.category for l in kept} - set(cat_ids))
    if unknown:
        raise ExportError(f"categories without CAD models: {', '.join(unknown)}")

    def encode(photo: Photo) -> tuple[Photo, list[tuple[Label, dict[str, Any] | None]]]:
        """The photo (views dropped: memory) and, per object, (label, its annotation without
        ids, or None when nothing of it is visible)."""
        out = []
        for lab, view in zip(photo.labels, photo.views):
            counts = coco_rle.run_counts(view.visible)
            area = coco_rle.area(counts)
            out.append((lab, None if area == 0 else {
                "category_id": cat_ids[lab.key.category], "iscrowd": 0,
                "segmentation": {"size": [photo.height, photo.width],
                                 "counts": coco_rle.counts_string(counts)},
                "area": area, "bbox": coco_bbox(view.visible),
                "segmentation_amodal": coco_rle.encode(view.amodal),
                "pose6d": pose_fields(lab)}))
        return dataclasses.replace(photo, views=[]), out

    images, annotations = [], []
    with staged_output(out, overwrite) as stage:  # refuses a non-empty out before rendering
        for photo, objects in render_photos(kept, dataset, encode, workers, progress,
                                            desc="coco"):
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": relative_image(dataset, photo.labels[0]),
                           "width": photo.width, "height": photo.height})
            for lab, ann in objects:
                if ann is None:
                    left_out.append(left_out_entry(lab, "not visible"))
                else:
                    annotations.append(dict({"id": len(annotations) + 1, "image_id": image_id},
                                            **ann))
        instances = {"info": {"description": "pose6d labels: masks rendered from 6D poses",
                              "date_created": datetime.date.today().isoformat(), "version": "1"},
                     "images": images, "categories": categories, "annotations": annotations}
        atomic_write_bytes(stage / "annotations" / f"instances_{split}.json",
                           json.dumps(instances, separators=(",", ":")).encode())
        atomic_write_bytes(stage / "left_out.json",
                           (json.dumps(left_out, indent=1) + "\n").encode())
        atomic_write_bytes(stage / "README.md", README.encode())
    summary = ExportSummary(objects=len(annotations), skipped=sum(l.skipped for l in labels),
                            bad=sum(not l.skipped and l.object_status == BAD_STATUS
                                    for l in labels), left_out=len(left_out), files=3)
    return summary
