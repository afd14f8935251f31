"""Export 2D-3D correspondences: per labelled object, which model point each visible pixel shows.

Layout written under ``out``::

    README.md                        this description
    index.json                       [{"file", "object_key", "image", "category", "cad_index",
                                       "annotator", "ls_annotation_id", "visib_fract"}]
    <category>/<name>_<k>.npz        one object (with --all-annotations: <name>_<k>.a<id>.npz,
                                     one per annotation)
    left_out.json                    [{"object_key", "annotator", "reason"}]: skipped, "bad"
                                     (status_bad, unless --include-bad) or "not visible"

Each npz (np.savez_compressed; np.load(path) reads it, no pickle):
    object_key, image (path relative to the data root), category: str
    width, height: int, the photo's size in pixels; cad_index: int
    box: int32 (4,) x0, y0, x1, y1: the window of ``mask`` and ``xyz`` in the photo (x1, y1
         exclusive); the bounding box of the visible pixels
    mask: bool (h, w): the visible pixels (the z-buffer over the photo's labelled objects, as
          the COCO export's segmentation), h = y1 - y0, w = x1 - x0
    xyz: float16 (h, w, 3): per pixel, the point of the CAD model the pixel's centre sees, in the
         model's own frame and units (CAD units, z up); 0 outside ``mask``
    corners_3d: float64 (8, 3) the model's axis-aligned 3D box corners (model frame; corner
                4 i + 2 j + k takes x from (min, max)[i], y from [j], z from [k])
    corners_2d: float64 (8, 2) their pixels; centre_2d: float64 (2,) the model origin's pixel
    keypoint_names: str (n,), keypoints_3d: float64 (n, 3), keypoints_2d: float64 (n, 2): the
                keypoints the CAD folder defines (CAD/<category>/<NN>.keypoints.json,
                pose6d/keypoints.py); n = 0 when it defines none
    K, R: float64 (3, 3), t: float64 (3,): the OpenCV camera, pixel ~ K (R X + t), X in CAD
          units (pose6d.camera.opencv_camera)
    azimuth, elevation, theta (radians), distance, px, py, viewport: the label's pose
    visib_fract: float, visible pixels / pixels of the silhouette in the photo
Pixel coordinates: integers are pixel centres (docs/camera.md); mask[r, c] is photo pixel
(x0 + c, y0 + r), and pose6d.camera.project_points(xyz[r, c], pose) lands on it (float16 keeps
about 3 significant digits: a fraction of a pixel for objects of ordinary size).
"""
from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ls_admin.export_coco import exported, left_out_entry
from ls_admin.export_source import ExportSummary, Label, staged_output
from ls_admin.export_views import Photo, relative_image, render_photos
from pose6d.camera import opencv_camera, project_points
from pose6d.dataset import Dataset
from pose6d.inout import atomic_write_bytes
from pose6d.keypoints import read_keypoints
from pose6d.visibility import ObjectView, box_corners

README = __doc__


def visible_window(view: ObjectView) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding the visible pixels (x1, y1 exclusive), None when none."""
    cols, rows = np.flatnonzero(view.visible.any(axis=0)), np.flatnonzero(view.visible.any(axis=1))
    if cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def object_arrays(label: Label, view: ObjectView, photo: Photo, dataset: Dataset
                  ) -> dict[str, Any] | None:
    """The npz members of one object (module docstring), None when nothing of it is visible."""
    window = visible_window(view)
    if window is None:
        return None
    x0, y0, x1, y1 = window
    sx0, sy0 = view.surface.box[:2]
    mask = view.visible[y0:y1, x0:x1]
    xyz = view.surface.points(slice(y0 - sy0, y1 - sy0), slice(x0 - sx0, x1 - sx0))
    xyz = xyz.astype(np.float16)
    xyz[~mask] = 0
    pose = label.record.pose
    mesh = dataset.cad.mesh(label.key.category, int(label.record.cad_index))
    corners = box_corners(mesh.vertices)
    named = read_keypoints(mesh.path)
    names, kp3 = named if named else ([], np.zeros((0, 3)))
    k, r, t = opencv_camera(pose)
    out: dict[str, Any] = {
        "object_key": np.array(str(label.key)), "image": np.array(relative_image(dataset, label)),
        "category": np.array(label.key.category), "width": np.array(photo.width),
        "height": np.array(photo.height), "cad_index": np.array(int(label.record.cad_index)),
        "box": np.array(window, dtype=np.int32), "mask": mask, "xyz": xyz,
        "corners_3d": corners, "corners_2d": project_points(corners, pose),
        "centre_2d": np.array([pose.px, pose.py]),
        "keypoint_names": np.array(names, dtype=str), "keypoints_3d": kp3,
        "keypoints_2d": project_points(kp3, pose) if len(kp3) else np.zeros((0, 2)),
        "K": k, "R": r, "t": t, "visib_fract": np.array(view.visib_fract)}
    out.update({n: np.array(v) for n, v in pose.as_radians().items()})
    out["viewport"] = np.array(pose.viewport)
    return out


def npz_bytes(arrays: dict[str, Any]) -> bytes:
    """A compressed npz (what np.savez_compressed writes, np.load reads) at zlib level 1: the
    float16 points compress little more at higher levels, at several times the time."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def export_correspondences(labels: list[Label], dataset: Dataset, out: Path,
                           include_bad: bool = False, overwrite: bool = False,
                           workers: int = 2, progress: bool = True) -> ExportSummary:
    """Write the correspondence folder (module docstring) under ``out``; returns the summary."""
    left_out = [left_out_entry(l, "skipped" if l.skipped else l.object_status)
                for l in labels if not exported(l, include_bad)]
    kept = [l for l in labels if exported(l, include_bad)]
    repeated = {k for k, n in Counter(l.key for l in kept).items() if n > 1}
    index: list[dict[str, Any]] = []
    summary = ExportSummary(skipped=sum(l.skipped for l in labels))
    summary.bad = sum(not l.skipped and l.object_status == "status_bad" for l in labels)
    with staged_output(out, overwrite) as stage:
        def write(photo: Photo) -> list[tuple[Label, str | None, float]]:
            """Write the photo's npz files; per object (label, file or None, visib_fract)."""
            done = []
            for lab, view in zip(photo.labels, photo.views):
                arrays = object_arrays(lab, view, photo, dataset)
                rel = None
                if arrays is not None:
                    stem = lab.key.stem + (f".a{lab.annotation_id}" if lab.key in repeated else "")
                    rel = f"{lab.key.category}/{stem}.npz"
                    # a plain write: the staging folder's rename publishes the export whole
                    (stage / lab.key.category).mkdir(parents=True, exist_ok=True)
                    (stage / rel).write_bytes(npz_bytes(arrays))
                done.append((lab, rel, view.visib_fract))
            return done

        for objects in render_photos(kept, dataset, write, workers, progress,
                                     desc="correspondences", points=True):
            for lab, rel, visib_fract in objects:
                if rel is None:
                    left_out.append(left_out_entry(lab, "not visible"))
                    continue
                index.append({"file": rel, "object_key": str(lab.key),
                              "image": relative_image(dataset, lab),
                              "category": lab.key.category,
                              "cad_index": int(lab.record.cad_index),
                              "annotator": lab.annotator, "ls_annotation_id": lab.annotation_id,
                              "visib_fract": float(visib_fract)})
        for name, value in (("index.json", index), ("left_out.json", left_out)):
            atomic_write_bytes(stage / name, (json.dumps(value, indent=1) + "\n").encode())
        atomic_write_bytes(stage / "README.md", README.encode())
    summary.objects, summary.files, summary.left_out = len(index), len(index) + 3, len(left_out)
    return summary
