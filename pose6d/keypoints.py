"""Named 3D keypoints of a CAD model, defined by the CAD folder itself (optional).

``CAD/<category>/<NN>.keypoints.json`` next to ``<NN>.off``: a JSON object mapping each
keypoint's name to its [x, y, z] in the mesh's own frame and units (CAD units, z up), e.g.
``{"wheel_front_left": [0.42, -0.2, -0.18], "roof_centre": [0.0, 0.0, 0.3]}``. Models without
such a file have no keypoints. The correspondence export projects them with each object's pose.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pose6d.errors import DataError

SUFFIX = ".keypoints.json"


def keypoints_path(mesh_path: Path) -> Path:
    """Where the keypoints of the mesh at ``mesh_path`` (``.../<NN>.off``) live."""
    return Path(mesh_path).with_suffix(SUFFIX)


def read_keypoints(mesh_path: Path) -> tuple[list[str], np.ndarray] | None:
    """(names, points (N, 3) float64 CAD units) of a mesh, or None when it defines none.

    Raises DataError naming the file when it is not such a JSON object."""
    path = keypoints_path(mesh_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not data:
            raise ValueError("expected a non-empty object {name: [x, y, z]}")
        names = [str(n) for n in data]
        points = np.array([[float(c) for c in data[n]] for n in data], dtype=np.float64)
        if points.shape != (len(names), 3) or not np.isfinite(points).all():
            raise ValueError("each keypoint needs three finite numbers")
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"bad keypoints file {path}: {exc}") from None
    return names, points
