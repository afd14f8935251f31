"""Rotation errors between poses and ImageNet3D's summary metrics."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from pose6d.camera import Pose, object_rotation, rot_z

SYMMETRIES = ("none", "half_turn", "rotational")  # about the object's vertical (z) axis


def rotation_error(r1: np.ndarray, r2: np.ndarray) -> float:
    """Geodesic angle between two 3x3 rotations, radians in [0, pi].

    Equals ||logm(R1^T R2)||_F / sqrt(2); computed from the trace, clipped for round-off.
    """
    cos = (np.trace(np.asarray(r1).T @ np.asarray(r2)) - 1.0) / 2.0
    return float(math.acos(min(1.0, max(-1.0, cos))))


def pose_rotation_error(p1: Pose, p2: Pose) -> float:
    """Rotation error (radians) between two poses, with R = Rip(theta) @ Rx(e') @ Rz(a')."""
    return rotation_error(object_rotation(p1), object_rotation(p2))


def symmetric_rotation_error(p1: Pose, p2: Pose, symmetry: str = "none") -> float:
    """Rotation error (radians) up to the object's symmetry about its vertical z axis
    (pose6d.fitting.silhouette.mesh_symmetry names it), the smallest over the poses that look the same:

    - "none": pose_rotation_error;
    - "half_turn": the smaller of the errors to p1 and to p1 turned by 180 deg in azimuth;
    - "rotational": any azimuth turn (an azimuth move is R @ Rz(-d), so the smallest error is
      the angle between the object's z axis seen in the two cameras, R1[:, 2] and R2[:, 2]).
    """
    r1, r2 = object_rotation(p1), object_rotation(p2)
    if symmetry == "none":
        return rotation_error(r1, r2)
    if symmetry == "half_turn":
        return min(rotation_error(r1, r2), rotation_error(r1 @ rot_z(math.pi), r2))
    if symmetry == "rotational":
        return float(math.acos(min(1.0, max(-1.0, float(r1[:, 2] @ r2[:, 2])))))
    raise ValueError(f"symmetry must be one of {', '.join(SYMMETRIES)}, got {symmetry!r}")


def summarize_errors(errors: Iterable[float]) -> dict[str, float]:
    """ImageNet3D metrics over rotation errors in radians.

    Returns count, acc_pi6 and acc_pi18 (fractions in [0, 1]) and median_deg; NaN where empty.
    """
    e = np.asarray(list(errors), dtype=np.float64)
    if e.size == 0:
        return {"count": 0, "acc_pi6": math.nan, "acc_pi18": math.nan, "median_deg": math.nan}
    return {
        "count": int(e.size),
        "acc_pi6": float(np.mean(e < math.pi / 6)),
        "acc_pi18": float(np.mean(e < math.pi / 18)),
        "median_deg": float(np.degrees(np.median(e))),
    }
