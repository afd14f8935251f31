"""Export labels to the released ImageNet3D per-image format.

``<out>/<category>/<image name>.npz`` holds ``annotations``: a list with one dict per object
(per annotation with --all-annotations), written by ``pose6d.dataset.write_image_annotations``:

    azimuth, elevation, theta   radians
    distance                    CAD units
    px, py, principal           object centre in pixels; principal = [px, py]
    focal, viewport             1, pixels per unit focal length
    cad_index                   1-based CAD model of CAD/<category>/
    bbox                        [x1, y1, x2, y2] pixels (float64), or None when unknown
    height, width               of the photo, pixels
    class                       the category name
    object_status               status_good | status_partially | status_barely | status_bad
    dense                       dense_no | dense_yes
plus ours: object_key ("category/name_k"), k (object index in the image), annotator, skipped,
ls_annotation_id, updated_at.

Objects labeled "bad quality - no object" have object_status status_bad. SKIPPED objects are
kept with their initial (model) pose and CAD, ``skipped=True`` and object_status status_bad, so
loaders that drop status_bad drop them. Objects without any annotation are left out.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ls_admin.export_source import ExportSummary, Label, parallel_writes, staged_output
from pose6d.dataset import write_image_annotations
from pose6d.inout import atomic_write_bytes

README = __doc__


def object_dict(label: Label) -> dict[str, Any]:
    """One object's released dict (angles in radians, straight from the record's Pose)."""
    rec, pose = label.record, label.record.pose
    bbox = rec.bbox
    return {
        **pose.as_radians(),
        "principal": np.array([pose.px, pose.py], dtype=np.float64),
        "focal": pose.focal,
        "viewport": pose.viewport,
        "cad_index": int(rec.cad_index),
        "bbox": None if bbox is None else bbox.astype(np.float64),
        "height": _opt_int(rec.extra.get("height")),
        "width": _opt_int(rec.extra.get("width")),
        "class": label.key.category,
        "object_status": label.object_status,
        "dense": label.dense or None,
        "object_key": str(label.key),
        "k": label.key.k,
        "annotator": label.annotator,
        "skipped": bool(label.skipped),
        "ls_annotation_id": int(label.annotation_id),
        "updated_at": label.updated_at,
    }


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def group_by_image(labels: Iterable[Label]) -> dict[tuple[str, str], list[Label]]:
    """{(category, image name): labels sorted by object index k, then oldest first}."""
    groups: dict[tuple[str, str], list[Label]] = defaultdict(list)
    for lab in labels:
        groups[(lab.key.category, lab.key.name)].append(lab)
    for items in groups.values():
        items.sort(key=lambda l: (l.key.k, l.updated_us, l.annotation_id))
    return dict(sorted(groups.items()))


def export_imagenet3d(labels: list[Label], out: Path, overwrite: bool = False,
                      workers: int = 8, progress: bool = True) -> ExportSummary:
    """Write the per-image npz files (and README.txt) under ``out``; returns the summary."""
    groups = group_by_image(labels)
    summary = ExportSummary(files=len(groups), objects=len(labels),
                            skipped=sum(l.skipped for l in labels),
                            bad=sum(not l.skipped and not l.usable for l in labels))
    with staged_output(out, overwrite) as stage:
        jobs = [(stage / cat / f"{name}.npz", [object_dict(l) for l in items])
                for (cat, name), items in groups.items()]
        parallel_writes(jobs, lambda job: write_image_annotations(*job), workers,
                        desc="imagenet3d", progress=progress)
        atomic_write_bytes(stage / "README.txt", README.encode())
    return summary
