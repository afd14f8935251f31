"""Pose from pins: model points the annotator dragged onto the photo (issue 21).

A pin is a pair of pixels: a point of the overlay (the mesh rendered at the pose shown) and where
that point is in the photo. The model point is the surface point seen at the first pixel
(ray cast, ``renderer.surface_points``; a click up to SNAP_PX off the silhouette snaps to the
nearest pixel that hits). The pose is then solved from all pins:

- 1 pin: the centre (px, py) moves by the pin's offset (every pixel moves with it exactly);
- 2 pins: also the in-plane rotation theta and the distance (a, e kept);
- 3+ pins: all six values by robust least squares on the reprojection error, the PASCAL3D+
  values as parameters, with the pose shown as a weak prior, from starts all round in azimuth
  (pose6d.fitting.pin_solve). When the model as it is cannot meet every pin (another instance
  of the category), each model point may lie off the photographed object's point along its
  surface normal (SLIDE_FRACTION: the part of a pin's error along that normal's image
  direction weighs less) and the model may stretch along its CAD axes (pin_solve.
  STRETCH_SIGMA); the pose returned is the unstretched model's.

Values stay inside the labeling config's ranges (elevation, distance, centre): a pose outside
them is refused (BadInput), a solution is held at their limits. Angles are radians, pixels are
the camera's formula coordinates (integers are pixel centres).
"""
from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.errors import BadInput
from pose6d.fitting.pin_solve import bounds, from_params, solve_params, to_params
from pose6d.labeling import NUMBER_SPECS, PHOTO_SIZE, pixel_range
from pose6d.renderer import closest_surface, surface_points

SNAP_PX = 4  # a click this far off the silhouette still finds the model
# How far (of the mesh radius, one standard deviation) a model point may lie off the
# photographed object's point along its surface normal: the nearest point of another instance
# is off mostly that way (a deeper screen, a thicker seat). A pin's error along the normal's
# image direction is weighed as pin_solve.ROBUST_PX / hypot(ROBUST_PX, that slide in pixels).
# benchmarks/bench_pins.py, real meshes, 160 objects per seed pair: chosen among 0.02-0.045 on
# seeds 0-3 (seeds 2-3: 7.22 -> 6.91 deg with 6 pins, 10.37 -> 9.54 with 4); the generated
# meshes, never used to choose it: 8.14 -> 7.87 and 9.13 -> 8.01.
SLIDE_FRACTION = 0.03

Pin = tuple[tuple[float, float], tuple[float, float]]


class PinError(BadInput):
    """A pin that cannot be used (off the mesh, off the photo, malformed)."""


def solve_pins(vertices: np.ndarray, faces: np.ndarray, pose: Pose, pins: Sequence[Pin],
               width: int, height: int) -> Pose:
    """The pose that puts each pin's model point on its photo point.

    vertices (V, 3) CAD units, faces (F, 3); pose: the pose shown; pins: ((u_model, v_model),
    (u_photo, v_photo)) pixel pairs, the model pixel read at ``pose``; width, height: the photo.
    PinError (BadInput) for a pin off the photo or off the mesh; BadInput for a pose outside the
    labeling config's default ranges (px / py: those of a config made for photos of this size,
    when larger). Never NaN.
    """
    ranges = default_ranges(width, height)
    check_pose(pose, ranges)
    model_px, photo_px = split_pins(pins, width, height)
    mesh = mesh_of(vertices, faces)
    points = model_points(mesh, pose, model_px)
    return solve_points(points, photo_px, pose, ranges, slides=normal_slides(mesh, points),
                        radius=mesh.radius)


def default_ranges(width: int = 0, height: int = 0) -> dict[str, tuple[float, float]]:
    """The labeling config's default Number ranges (UI units: degrees, CAD units, pixels); px /
    py widened as the config makes them for photos ``width`` x ``height`` larger than its
    default PHOTO_SIZE (labeling_config.numbers_for)."""
    out = {name: (spec.min, spec.max) for name, spec in NUMBER_SPECS.items()}
    out["px"] = pixel_range(max(int(width), PHOTO_SIZE[0]))
    out["py"] = pixel_range(max(int(height), PHOTO_SIZE[1]))
    return out


def split_pins(pins: Sequence[Pin], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(model pixels (N, 2), photo pixels (N, 2)); PinError for a malformed pin or one whose
    pixels lie off the photo (beyond half a pixel of its border)."""
    try:
        arr = np.asarray(pins, dtype=np.float64).reshape(-1, 2, 2)
    except (TypeError, ValueError):
        raise PinError("pins must be ((u_model, v_model), (u_photo, v_photo)) pairs") from None
    if len(arr) == 0 or len(arr) != len(pins):
        raise PinError("pins must be a non-empty list of ((u, v), (u, v)) pairs")
    if not np.isfinite(arr).all():
        raise PinError("pin coordinates must be finite numbers")
    lo, hi = -0.5, np.array([width - 0.5, height - 0.5])
    off = ((arr < lo) | (arr > hi)).any(axis=(1, 2))
    if off.any():
        raise PinError(f"pin {int(np.argmax(off)) + 1} lies off the {width}x{height} photo")
    return arr[:, 0], arr[:, 1]


@functools.lru_cache(maxsize=8)
def _cached_mesh(digest: str, vertices: bytes, faces: bytes, nv: int, nf: int) -> CadMesh:
    v = np.frombuffer(vertices, dtype=np.float64).reshape(nv, 3)
    f = np.frombuffer(faces, dtype=np.int64).reshape(nf, 3)
    return CadMesh("pins", 0, Path(digest), v, f.astype(np.int32))


def mesh_of(vertices: np.ndarray, faces: np.ndarray) -> CadMesh:
    """A ray-castable mesh of arrays (cached by content: one scene per mesh, not per call)."""
    try:
        v = np.ascontiguousarray(vertices, dtype=np.float64).reshape(-1, 3)
        f_in = np.asarray(faces)
        f = np.ascontiguousarray(f_in, dtype=np.int64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise PinError("the mesh must be vertices (V, 3) and faces (F, 3)") from None
    if len(v) == 0 or len(f) == 0:
        raise PinError("the mesh is empty")
    if not np.isfinite(v).all():
        raise PinError("the mesh has vertices that are not finite numbers")
    # Open3D would silently ray-cast a face with a bad index (or a truncated float one)
    if not np.array_equal(f, f_in.reshape(-1, 3)) or f.min() < 0 or f.max() >= len(v):
        raise PinError(f"the mesh's faces must be whole vertex indices 0..{len(v) - 1}")
    vb, fb = v.tobytes(), f.tobytes()
    digest = hashlib.blake2b(vb + fb, digest_size=16).hexdigest()
    return _cached_mesh(digest, vb, fb, len(v), len(f))


def model_points(mesh: CadMesh, pose: Pose, pixels: np.ndarray) -> np.ndarray:
    """The surface points (N, 3) seen at ``pixels`` (N, 2) at ``pose``; a pixel that misses
    snaps to the nearest hit within SNAP_PX. PinError naming the pin when none is near."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    points = surface_points(mesh, pose, pixels)
    offs = np.array([(dx, dy) for dy in range(-SNAP_PX, SNAP_PX + 1)
                     for dx in range(-SNAP_PX, SNAP_PX + 1) if dx * dx + dy * dy <= SNAP_PX ** 2],
                    dtype=np.float64)
    offs = offs[np.argsort(np.hypot(offs[:, 0], offs[:, 1]), kind="stable")]
    for i in np.nonzero(np.isnan(points[:, 0]))[0]:
        near = surface_points(mesh, pose, pixels[i] + offs)
        hit = np.nonzero(np.isfinite(near[:, 0]))[0]
        if hit.size == 0:
            raise PinError(f"pin {i + 1} is not on the model: click a point of the overlay "
                           f"(within {SNAP_PX} px of it)")
        points[i] = near[hit[0]]
    return points


def normal_slides(mesh: CadMesh, points: np.ndarray) -> np.ndarray:
    """(N, 3) CAD units: the unit surface normal at each of ``points`` (N, 3; the nearest
    face's) times SLIDE_FRACTION of the mesh radius (solve_points' ``slides``)."""
    return closest_surface(mesh, points)[1] * SLIDE_FRACTION * mesh.radius


def check_pose(pose: Pose, ranges: dict[str, tuple[float, float]]) -> None:
    """BadInput when a value of ``pose`` (UI units) is outside ``ranges`` (azimuth and theta
    wrap: no limits)."""
    deg = pose.as_degrees()
    for name in ("elevation", "distance", "px", "py"):
        lo, hi = ranges[name]
        if not lo - 1e-9 <= deg[name] <= hi + 1e-9:
            raise BadInput(f"pose {name} {deg[name]:g} is outside its range {lo:g}..{hi:g}")


def solve_points(points: np.ndarray, targets: np.ndarray, pose: Pose,
                 ranges: dict[str, tuple[float, float]] | None = None,
                 prior: Pose | None = None, slides: np.ndarray | None = None,
                 radius: float | None = None) -> Pose:
    """The pose putting model ``points`` (N, 3) on photo pixels ``targets`` (N, 2), from the
    pose shown (module docstring: 1, 2 or 3+ pins). ``prior``: the pose the weak prior holds
    to with 3+ pins (default ``pose``; the backend passes the pose shown before the first pin,
    as one or two pins may have turned theta far). ``slides`` (N, 3) CAD units: how far each
    point may lie off along a direction (normal_slides), None: nowhere. ``radius``: the model's
    (CAD units), for its size in the photo at ``pose`` (a large one is solved at a reference
    size: pin_solve.REFERENCE_RADIUS_PX); None: as that size. BadInput when ``pose`` is outside
    ``ranges`` (default: the labeling config's); the result stays inside them."""
    ranges = ranges or default_ranges()
    check_pose(pose, ranges)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0 or len(points) != len(targets) or not np.isfinite(points).all() \
            or not np.isfinite(targets).all():
        raise PinError("pins need as many finite model points as photo points")
    if slides is not None:
        slides = np.asarray(slides, dtype=np.float64).reshape(-1, 3)
        if len(slides) != len(points) or not np.isfinite(slides).all():
            raise PinError("slides must be one finite (x, y, z) per model point")
    lo, hi = bounds(ranges)
    p0 = np.clip(to_params(pose), lo, hi)
    anchor = p0 if prior is None else np.clip(to_params(prior), lo, hi)
    # its radius in the photo; solve_params takes one that is not a size (NaN, <= 0) as None
    radius_px = None if radius is None else radius * pose.viewport * pose.focal / pose.distance
    best = solve_params(p0, anchor, points, targets, pose, lo, hi, slides, radius_px)
    best = np.clip(best, lo, hi)
    out = from_params(best, pose)
    d0, d1 = ranges["distance"]  # exp(log(d)) may round past a limit
    out = out.replace(distance=min(max(out.distance, d0), d1))
    return out if all(math.isfinite(v) for v in out.as_radians().values()) else pose
