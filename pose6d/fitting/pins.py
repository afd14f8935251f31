"""Pose from pins: model points the annotator dragged onto the photo (issue 21).

A pin is a pair of pixels: a point of the overlay (the mesh rendered at the pose shown) and where
that point is in the photo. The model point is the surface point seen at the first pixel
(ray cast, ``renderer.surface_points``; a click up to SNAP_PX off the silhouette snaps to the
nearest pixel that hits). The pose is then solved from all pins:

- 1 pin: the centre (px, py) moves by the pin's offset (every pixel moves with it exactly);
- 2 pins: also the in-plane rotation theta and the distance (a, e kept);
- 3+ pins: all six values by robust least squares (Cauchy, ROBUST_PX) on the reprojection error,
  the PASCAL3D+ values as parameters, with the pose shown as a weak prior (PRIOR_SIGMA). Starts:
  the pose shown and its azimuth turned every AZIMUTH_STARTS_DEG, each first aligned in the
  image (theta, distance, centre), and OpenCV's SQPnP where OpenCV is installed; every start
  takes a few Levenberg-Marquardt steps, the best FINALISTS run to the end.

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
from pose6d.camera import (Pose, intrinsics, opencv_extrinsics, project_points, viewing_rotation,
                           wrap_angle)
from pose6d.errors import BadInput
from pose6d.labeling import NUMBER_SPECS, PHOTO_SIZE, pixel_range
from pose6d.renderer import surface_points

SNAP_PX = 4  # a click this far off the silhouette still finds the model
# Cauchy scale of a pin's reprojection error. With another instance of the category a pin or
# two often land 20-50 px from where the library model puts them (a deeper screen, a longer
# arm) while the rest agree within a few pixels; a loss that gives such pins little say
# (benchmarks/bench_pins.py, seeds 1-3 pooled, 240 objects: the median error with Huber at 8 px
# 8.2 -> 7.1 deg with 6 pins, 11.5 -> 9.8 deg with 4) beats one that still weighs them linearly.
ROBUST_PX = 3.0
# Weak prior towards the pose shown: one pixel of reprojection error weighs as much as this
# far from it (radians; CAD units for log-distance; pixels for the centre). None on the
# azimuth (the pose shown is often turned far off); the elevation and theta shown are usually
# near, and another instance's pins alone leave them loose (benchmarks/bench_pins.py: 2 deg
# here took the 6-pin median 9.6 -> 7.5 deg; exact pins then land within about 1 px).
PRIOR_SIGMA = np.array([math.radians(1e4), math.radians(2.0), math.radians(2.0), 0.3, 50.0, 50.0])
# Two pins (and each start's image alignment): theta, distance and centre only, barely held.
ALIGN_SIGMA = np.array([0.0, 0.0, math.radians(90.0), 1.0, 500.0, 500.0])
AZIMUTH_STARTS_DEG = 45.0
MAX_ITERATIONS = 40
ALIGN_ITERATIONS = 12  # each azimuth start aligned in the image first
SCREEN_ITERATIONS = 6  # ... then every start a few steps, the FINALISTS to the end
FINALISTS = 3

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
    points = model_points(mesh_of(vertices, faces), pose, model_px)
    return solve_points(points, photo_px, pose, ranges)


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
                 prior: Pose | None = None) -> Pose:
    """The pose putting model ``points`` (N, 3) on photo pixels ``targets`` (N, 2), from the
    pose shown (module docstring: 1, 2 or 3+ pins). ``prior``: the pose the weak prior holds
    to with 3+ pins (default ``pose``; the backend passes the pose shown before the first pin,
    as one or two pins may have turned theta far). BadInput when ``pose`` is outside ``ranges``
    (default: the labeling config's); the result stays inside them."""
    ranges = ranges or default_ranges()
    check_pose(pose, ranges)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0 or len(points) != len(targets) or not np.isfinite(points).all() \
            or not np.isfinite(targets).all():
        raise PinError("pins need as many finite model points as photo points")
    lo, hi = _bounds(ranges)
    p0 = np.clip(to_params(pose), lo, hi)
    if len(points) == 1:
        shift = targets[0] - project_points(points, pose)[0]
        best = p0 + np.r_[0, 0, 0, 0, shift]
    elif len(points) == 2:
        best = _align(p0, points, targets, lo, hi, pose)
    else:
        anchor = p0 if prior is None else np.clip(to_params(prior), lo, hi)
        best = _solve_all(p0, anchor, points, targets, pose, lo, hi)
    best = np.clip(best, lo, hi)
    out = from_params(best, pose)
    d0, d1 = ranges["distance"]  # exp(log(d)) may round past a limit
    out = out.replace(distance=min(max(out.distance, d0), d1))
    return out if all(math.isfinite(v) for v in out.as_radians().values()) else pose


# --- parameters: (azimuth, elevation, theta, log distance, px, py) ---


def to_params(pose: Pose) -> np.ndarray:
    return np.array([pose.azimuth, pose.elevation, pose.theta, math.log(pose.distance),
                     pose.px, pose.py])


def from_params(p: np.ndarray, like: Pose) -> Pose:
    return Pose(wrap_angle(p[0]), p[1], wrap_angle(p[2]), math.exp(p[3]), p[4], p[5],
                like.viewport, like.focal)


def _bounds(ranges: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    (e0, e1), (d0, d1) = ranges["elevation"], ranges["distance"]
    (x0, x1), (y0, y1) = ranges["px"], ranges["py"]
    lo = np.array([-np.inf, math.radians(e0), -np.inf, math.log(d0), x0, y0])
    hi = np.array([np.inf, math.radians(e1), np.inf, math.log(d1), x1, y1])
    return lo, hi


def _project(p: np.ndarray, points: np.ndarray, like: Pose) -> np.ndarray:
    """Pixels (N, 2) of ``points`` at parameters ``p`` (camera.project_points without building
    a Pose: this runs thousands of times per solve); NaN behind the camera."""
    r, t = opencv_extrinsics(p[0], p[1], p[2], math.exp(p[3]))
    cam = points @ r.T + t
    z = cam[:, 2]
    mf = like.viewport * like.focal
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = mf * cam[:, :2] / z[:, None] + p[4:6]
    uv[z <= 0] = np.nan
    return uv


def _residuals(p, points, targets, like, p0, sigma) -> tuple[np.ndarray, np.ndarray]:
    """(reprojection residuals (2N,) in pixels, prior residuals of the free parameters: those
    with a ``sigma`` > 0)."""
    uv = _project(p, points, like)
    diff = p - p0
    diff[[0, 2]] = [wrap_angle(diff[0]), wrap_angle(diff[2])]
    free = sigma > 0
    return (uv - targets).reshape(-1), diff[free] / sigma[free]


def _cost(p, points, targets, like, p0, sigma) -> float:
    """Cauchy cost of the reprojection (per pin, c^2 log(1 + |r|^2 / c^2): |r|^2 for small
    residuals) plus the squared prior; inf behind the camera."""
    r, prior = _residuals(p, points, targets, like, p0, sigma)
    if not np.isfinite(r).all():
        return math.inf
    sq = (r[0::2] ** 2 + r[1::2] ** 2) / ROBUST_PX ** 2
    return float(ROBUST_PX ** 2 * np.log1p(sq).sum() + (prior ** 2).sum())


def _refine(p_start, points, targets, like, p0, sigma, lo, hi,
            iterations: int = MAX_ITERATIONS) -> tuple[np.ndarray, float]:
    """Levenberg-Marquardt with Cauchy weights (IRLS) on the parameters with a prior ``sigma``
    > 0 (the others stay), held inside [lo, hi]: (parameters, cost)."""
    p = np.clip(p_start.astype(np.float64), lo, hi)
    cost, damping = _cost(p, points, targets, like, p0, sigma), 1e-3
    steps = np.array([1e-6, 1e-6, 1e-6, 1e-6, 1e-4, 1e-4])
    idx = np.nonzero(sigma > 0)[0]
    for _ in range(iterations):
        if not math.isfinite(cost):
            break
        r, prior = _residuals(p, points, targets, like, p0, sigma)
        w = np.sqrt(np.repeat(1.0 / (1.0 + (r[0::2] ** 2 + r[1::2] ** 2) / ROBUST_PX ** 2), 2))
        jac = np.empty((len(r), len(idx)))
        for j, k in enumerate(idx):
            q = p.copy()
            q[k] += steps[k]
            jac[:, j] = (_project(q, points, like).reshape(-1) - r - targets.reshape(-1)) / steps[k]
        a = np.vstack([jac * w[:, None], np.diag(1.0 / sigma[idx])])
        b = np.concatenate([r * w, prior])
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            break
        ata, atb = a.T @ a, a.T @ b
        improved = False
        while damping < 1e8:
            delta = np.linalg.solve(ata + damping * np.diag(np.diag(ata) + 1e-9), -atb)
            q = p.copy()
            q[idx] += delta
            q = np.clip(q, lo, hi)
            new_cost = _cost(q, points, targets, like, p0, sigma)
            if new_cost < cost:
                improved = cost - new_cost > 1e-9 * max(1.0, cost)
                p, cost, damping = q, new_cost, max(damping / 10.0, 1e-7)
                break
            damping *= 10.0
        if not improved:
            break
    return p, cost


def _similarity_start(p: np.ndarray, points, targets, like, lo, hi) -> np.ndarray:
    """``p`` with theta, distance and centre moved so that the projected points match the
    targets by an image similarity (least squares over all pins; a and e kept)."""
    uv = _project(p, points, like)
    if not np.isfinite(uv).all():
        return p
    pc, qc = uv.mean(axis=0), targets.mean(axis=0)
    a, b = uv - pc, targets - qc
    za, zb = a[:, 0] + 1j * a[:, 1], b[:, 0] + 1j * b[:, 1]
    denom = float((np.abs(za) ** 2).sum())
    if denom < 1e-9:
        return p
    m = (np.conj(za) * zb).sum() / denom  # complex scale-rotation (image coordinates)
    scale, turn = abs(m), np.angle(m)
    if scale < 1e-6:
        return p
    centre = np.array([p[4], p[5]])
    rel = (centre[0] - pc[0]) + 1j * (centre[1] - pc[1])
    new_centre = qc[0] + 1j * qc[1] + m * rel
    # A turn by +phi in the image (y down) is theta - phi: theta turns (u, v) with v up.
    out = p.copy()
    out[2] = p[2] - turn
    out[3] = p[3] - math.log(scale)
    out[4], out[5] = new_centre.real, new_centre.imag
    return np.clip(out, lo, hi)


def _align(p0, points, targets, lo, hi, like: Pose, p_start=None) -> np.ndarray:
    """Two pins: theta, distance and centre (a, e kept), from the similarity start."""
    sigma = ALIGN_SIGMA
    start = _similarity_start(p0 if p_start is None else p_start, points, targets, like, lo, hi)
    return _refine(start, points, targets, like, p0, sigma, lo, hi, ALIGN_ITERATIONS)[0]


def _pnp_start(points, targets, pose: Pose, lo, hi) -> np.ndarray | None:
    """OpenCV SQPnP's pose as PASCAL3D+ parameters (camera turned to look at the object's
    origin, which then projects to (px, py)); None without OpenCV or a usable answer."""
    try:
        import cv2
    except ImportError:
        return None
    k = intrinsics(pose)
    try:
        ok, rvec, tvec = cv2.solvePnP(points.astype(np.float64), targets.astype(np.float64), k,
                                      None, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return None
    if not ok:
        return None
    r_cv, _ = cv2.Rodrigues(rvec)
    t_cv = tvec.reshape(3)
    centre = -r_cv.T @ t_cv
    d = float(np.linalg.norm(centre))
    if not (math.isfinite(d) and d > 1e-6 and t_cv[2] > 0):
        return None
    origin_px = (k @ t_cv)[:2] / t_cv[2]
    e = math.asin(max(-1.0, min(1.0, centre[2] / d)))
    a = math.atan2(centre[0], -centre[1])
    m = r_cv @ (np.diag([1.0, -1.0, -1.0]) @ viewing_rotation(a, e)).T
    theta = math.atan2(m[0, 1], m[0, 0])
    p = np.array([a, e, theta, math.log(d), origin_px[0], origin_px[1]])
    return np.clip(p, lo, hi) if np.isfinite(p).all() else None


def _solve_all(p0, anchor, points, targets, pose: Pose, lo, hi) -> np.ndarray:
    """3+ pins: all six values from several starts (the prior's pose turned all round, the
    pose shown, PnP), the prior held to ``anchor``; the lowest cost wins."""
    sigma = PRIOR_SIGMA
    starts = [] if np.array_equal(anchor, p0) else [_align(p0, points, targets, lo, hi, pose)]
    for turn in np.arange(0.0, 360.0, AZIMUTH_STARTS_DEG):
        p = anchor.copy()
        p[0] += math.radians(turn)
        starts.append(_align(anchor, points, targets, lo, hi, like=pose, p_start=p))
    pnp = _pnp_start(points, targets, pose, lo, hi)
    if pnp is not None:
        starts.append(pnp)
    screened = [_refine(s, points, targets, pose, anchor, sigma, lo, hi, SCREEN_ITERATIONS)
                for s in starts]
    screened.sort(key=lambda pc: pc[1])
    best, best_cost = p0, _cost(p0, points, targets, pose, anchor, sigma)
    for start, _ in screened[:FINALISTS]:
        p, cost = _refine(start, points, targets, pose, anchor, sigma, lo, hi)
        if cost < best_cost:
            best, best_cost = p, cost
    return best
