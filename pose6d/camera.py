"""The ImageNet3D / PASCAL3D+ camera: pose parameters, projection and the equivalent OpenCV camera.

This module is the single implementation of the camera formula (docs/camera.md); everything
else (renderer, exports, interactive fitting) derives K, R, t or pixels from it.

Conventions:
- World is z-up; CAD meshes are roughly unit-sized.
- Angles are radians inside the code and in dataset files; degrees only at user-facing surfaces
  (see ``Pose.from_degrees`` / ``Pose.as_degrees``).
- Pixel coordinates have no +0.5 offset: integer coordinates are pixel centres. Continuous
  image coordinates (Label Studio's regions, Open3D's rays) put the centre of pixel (col, row)
  at (col + 0.5, row + 0.5): ``image_to_pixel`` / ``pixel_to_image`` convert, nothing else does.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from pose6d.errors import BadInput

DEFAULT_VIEWPORT = 3000.0
DEFAULT_FOCAL = 1.0
ANGLE_NAMES = ("azimuth", "elevation", "theta")
POSE_NAMES = ("azimuth", "elevation", "theta", "distance", "px", "py")
PIXEL_CENTRE = 0.5  # where a pixel's centre lies in continuous image coordinates
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # PASCAL3D+ camera frame (y up, looks down -z) to OpenCV's


class InvalidPoseError(BadInput):
    """A pose that cannot be rendered or saved (NaN, infinite, distance <= 0, ...)."""


@dataclasses.dataclass(frozen=True)
class Pose:
    """One object's 6D pose in the PASCAL3D+ convention.

    azimuth, elevation, theta: radians. distance: CAD units. px, py: object centre in pixels.
    viewport: pixels per unit focal length (M). focal: focal length (f), 1 in ImageNet3D.
    """

    azimuth: float
    elevation: float
    theta: float
    distance: float
    px: float
    py: float
    viewport: float = DEFAULT_VIEWPORT
    focal: float = DEFAULT_FOCAL

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidPoseError(f"pose {field.name} must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise InvalidPoseError(f"pose {field.name} must be finite, got {value}")
            object.__setattr__(self, field.name, value)
        if self.distance <= 0:
            raise InvalidPoseError(f"pose distance must be > 0, got {self.distance}")
        if self.viewport <= 0 or self.focal <= 0:
            raise InvalidPoseError("pose viewport and focal must be > 0")

    @classmethod
    def from_degrees(cls, azimuth: float, elevation: float, theta: float, distance: float,
                     px: float, py: float, viewport: float = DEFAULT_VIEWPORT,
                     focal: float = DEFAULT_FOCAL) -> "Pose":
        """Build a pose from angles in degrees (the annotator's units)."""
        for name, value in (("azimuth", azimuth), ("elevation", elevation), ("theta", theta)):
            try:
                float(value)
            except (TypeError, ValueError):
                raise InvalidPoseError(f"pose {name} must be a number, got {value!r}") from None
        return cls(math.radians(float(azimuth)), math.radians(float(elevation)),
                   math.radians(float(theta)), distance, px, py, viewport, focal)

    @classmethod
    def from_mapping(cls, values: Mapping[str, float], degrees: bool,
                     viewport: float | None = None) -> "Pose":
        """Build a pose from a dict with the six POSE_NAMES (plus optional viewport, focal)."""
        missing = [n for n in POSE_NAMES if n not in values]
        if missing:
            raise InvalidPoseError(f"pose is missing {', '.join(missing)}")
        kwargs = {n: _scalar(values[n], n) for n in POSE_NAMES}
        kwargs["viewport"] = _scalar(values.get("viewport", viewport or DEFAULT_VIEWPORT), "viewport")
        kwargs["focal"] = _scalar(values.get("focal", DEFAULT_FOCAL), "focal")
        return cls.from_degrees(**kwargs) if degrees else cls(**kwargs)

    def as_degrees(self) -> dict[str, float]:
        """The six pose values as the annotator sees them (angles in degrees)."""
        out = self.as_radians()
        for name in ANGLE_NAMES:
            out[name] = math.degrees(out[name])
        return out

    def as_radians(self) -> dict[str, float]:
        """The six pose values as dataset files store them (angles in radians)."""
        return {name: getattr(self, name) for name in POSE_NAMES}

    def replace(self, **changes: float) -> "Pose":
        return dataclasses.replace(self, **changes)


def _scalar(value, name: str) -> float:
    arr = np.asarray(value, dtype=object).reshape(-1)
    if arr.size != 1:
        raise InvalidPoseError(f"pose {name} must be a single number, got {value!r}")
    try:
        return float(arr[0])
    except (TypeError, ValueError):
        raise InvalidPoseError(f"pose {name} must be a number, got {value!r}") from None


def _cos_sin(angle) -> tuple:
    """(cos, sin) of a number (floats) or of an array of angles (arrays)."""
    if isinstance(angle, (float, int)) or np.ndim(angle) == 0:
        a = float(angle)
        return math.cos(a), math.sin(a)
    a = np.asarray(angle, dtype=np.float64)
    return np.cos(a), np.sin(a)


def _plane_rotations(c: np.ndarray, s: np.ndarray, i: int, j: int) -> np.ndarray:
    """(..., 3, 3): for each (cos, sin), rows/columns i, j hold [[c, -s], [s, c]], the third
    axis stays (the array form of rot_x / rot_z: the solvers evaluate many poses at once)."""
    out = np.zeros(np.shape(c) + (3, 3))
    k = 3 - i - j
    out[..., k, k] = 1.0
    out[..., i, i] = out[..., j, j] = c
    out[..., i, j], out[..., j, i] = -s, s
    return out


def rot_x(angle) -> np.ndarray:
    """3x3 right-handed rotation about x by ``angle`` radians ((..., 3, 3) for an array)."""
    c, s = _cos_sin(angle)
    if isinstance(c, float):
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return _plane_rotations(c, s, 1, 2)


def rot_z(angle) -> np.ndarray:
    """3x3 right-handed rotation about z by ``angle`` radians ((..., 3, 3) for an array)."""
    c, s = _cos_sin(angle)
    if isinstance(c, float):
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return _plane_rotations(c, s, 0, 1)


def in_plane_rotation(theta) -> np.ndarray:
    """Rip(theta): the 3x3 in-plane rotation of the OpenCV camera (docs/camera.md), that is
    rot_z(-theta); (..., 3, 3) for an array."""
    return rot_z(-theta)


def camera_centre(azimuth, elevation, distance) -> np.ndarray:
    """Camera centre C (3,) in world units for angles in radians ((..., 3) for arrays)."""
    ca, sa = _cos_sin(azimuth)
    ce, se = _cos_sin(elevation)
    if isinstance(ca, float) and isinstance(ce, float) and np.ndim(distance) == 0:
        return np.array([distance * ce * sa, -distance * ce * ca, distance * se])
    return np.stack(np.broadcast_arrays(distance * ce * sa, -distance * ce * ca,
                                        distance * se), axis=-1)


def viewing_rotation(azimuth, elevation) -> np.ndarray:
    """R = Rx(-(pi/2 - e)) @ Rz(-a): world to the PASCAL3D+ camera frame (3x3; (..., 3, 3) for
    arrays of angles), radians in."""
    return rot_x(elevation - math.pi / 2.0) @ rot_z(-azimuth)


def object_rotation(pose: Pose) -> np.ndarray:
    """Rip(theta) @ Rx(e') @ Rz(a'): the rotation used for pose errors (3x3)."""
    return in_plane_rotation(pose.theta) @ viewing_rotation(pose.azimuth, pose.elevation)


def image_to_pixel(*coords: float) -> tuple[float, ...]:
    """Continuous image coordinates (pixel (col, row) spans [col, col + 1)) to the formula's pixel
    coordinates (integers are pixel centres): each coordinate minus half a pixel."""
    return tuple(float(c) - PIXEL_CENTRE for c in coords)


def pixel_to_image(*coords: float) -> tuple[float, ...]:
    """The inverse of ``image_to_pixel``."""
    return tuple(float(c) + PIXEL_CENTRE for c in coords)


def scale_pose(pose: Pose, factor: float) -> Pose:
    """The pose that draws the same picture on an image ``factor`` times larger (or smaller).

    The camera is linear in the viewport and the centre, but pixel centres sit half a pixel in
    from the image's edge, so px scales in continuous image coordinates.
    """
    px, py = pixel_to_image(pose.px, pose.py)
    return pose.replace(px=px * factor - PIXEL_CENTRE, py=py * factor - PIXEL_CENTRE,
                        viewport=pose.viewport * factor)


def wrap_angle(angle: float | np.ndarray, half_turn: float = math.pi) -> float | np.ndarray:
    """An angle wrapped to (-half_turn, half_turn]: radians by default, degrees with 180 (an
    array of angles: each)."""
    if not isinstance(angle, (float, int)) and np.ndim(angle) > 0:
        wrapped = np.fmod(np.asarray(angle, dtype=np.float64) + half_turn, 2.0 * half_turn)
        return np.where(wrapped <= 0, wrapped + 2.0 * half_turn, wrapped) - half_turn
    wrapped = math.fmod(angle + half_turn, 2.0 * half_turn)
    wrapped = wrapped + 2.0 * half_turn if wrapped <= 0 else wrapped
    return wrapped - half_turn


def intrinsics(pose: Pose, offset: float = 0.0) -> np.ndarray:
    """OpenCV K (3x3) in pixels. ``offset`` shifts the principal point (PIXEL_CENTRE for rays
    through pixel centres in continuous image coordinates, as Open3D casts them)."""
    mf = pose.viewport * pose.focal
    return np.array([[mf, 0.0, pose.px + offset], [0.0, mf, pose.py + offset], [0.0, 0.0, 1.0]])


def opencv_extrinsics(azimuth, elevation, theta, distance) -> tuple[np.ndarray, np.ndarray]:
    """The OpenCV camera's R (3x3) and t (3,) for pose values (radians, CAD units); for arrays
    of values (M,), R (M, 3, 3) and t (M, 3): many poses in one call."""
    r_cv = in_plane_rotation(theta) @ _FLIP_YZ @ viewing_rotation(azimuth, elevation)
    return r_cv, -(r_cv @ camera_centre(azimuth, elevation, distance)[..., None])[..., 0]


def opencv_camera(pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The equivalent OpenCV camera (K 3x3, R 3x3, t (3,)): pixel ~ K @ (R @ X + t)."""
    r_cv, t_cv = opencv_extrinsics(pose.azimuth, pose.elevation, pose.theta, pose.distance)
    return intrinsics(pose), r_cv, t_cv


def project_points(points: np.ndarray, pose: Pose) -> np.ndarray:
    """Project world points (N, 3) to pixel coordinates (N, 2) float64.

    Points behind the camera get NaN coordinates.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    k, r, t = opencv_camera(pose)
    cam = points @ r.T + t
    z = cam[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam @ k.T)[:, :2] / z
    uv[z[:, 0] <= 0] = np.nan
    return uv
