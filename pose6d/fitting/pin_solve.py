"""The least squares behind pins (pose6d.fitting.pins): PASCAL3D+ parameters that put model
points on photo pixels.

Parameters are (azimuth, elevation, theta, log distance, px, py): radians, log CAD units,
pixels. 1 pin moves the centre; 2 pins also set theta and distance (a, e kept); 3+ pins set
all six by Levenberg-Marquardt on a Cauchy loss (ROBUST_PX) with a weak prior (PRIOR_SIGMA),
from the prior's pose turned every AZIMUTH_STARTS_DEG in azimuth (each aligned in the image
first), the pose shown and OpenCV's SQPnP; every start takes SCREEN_ITERATIONS steps, the best
FINALISTS run to the end. The starts step together, each with its own damping: one projection
of an array of poses per step gives every start's residuals and Jacobian columns (a solve is a
few hundred numpy calls, not thousands). When the model as it is cannot meet every pin within
SNUG_PX (another instance of the category), the solve runs again with the model's shape a
little loose: points that may lie off along a direction (``slides``: another instance's surface
is off along the normal) weigh less that way, and the model may stretch along its own axes
(STRETCH_SIGMA).

Inside, the parameters carry three more values, the log scale of the model along its CAD x, y
and z axes (0: the model as it is); only the pose's six are returned.
"""
from __future__ import annotations

import math

import numpy as np

from pose6d.camera import Pose, intrinsics, opencv_extrinsics, viewing_rotation, wrap_angle

# Cauchy scale of a pin's reprojection error. With another instance of the category a pin or
# two often land 20-50 px from where the library model puts them (a deeper screen, a longer
# arm) while the rest agree within a few pixels; a loss that gives such pins little say
# (benchmarks/bench_pins.py, seeds 1-3 pooled, 240 objects: the median error with Huber at 8 px
# 8.2 -> 7.1 deg with 6 pins, 11.5 -> 9.8 deg with 4) beats one that still weighs them linearly.
ROBUST_PX = 3.0
# Pins that the model as it is meets this closely (px, each) are taken as exact: the solve
# with slides (which lets the prior hold a little more) runs only for pins it cannot meet.
# Exact pins on the photographed model itself, the prior 8 / 5 deg off: 1.06 deg with this
# rule, 1.98 deg with slides always (tests/test_pins.py).
SNUG_PX = 3.0
# Weak prior towards the pose shown: one pixel of reprojection error weighs as much as this
# far from it (radians; CAD units for log-distance; pixels for the centre). None on the
# azimuth (the pose shown is often turned far off); the elevation and theta shown are usually
# near, and another instance's pins alone leave them loose (benchmarks/bench_pins.py: 2 deg
# here took the 6-pin median 9.6 -> 7.5 deg; exact pins then land within about 1 px).
PRIOR_SIGMA = np.array([math.radians(1e4), math.radians(2.0), math.radians(2.0), 0.3, 50.0, 50.0])
# Another instance's proportions differ from the library model's (a longer car, a taller
# chair back): with pins it cannot meet, the model may stretch along each of its CAD axes, a
# log scale with this standard deviation, at most STRETCH_LIMIT (overall size stays with the
# distance). benchmarks/bench_pins.py, chosen on real meshes, seeds 0-1 (0.03 / 0.05 / 0.08;
# limit 1.1 / 1.15 / 1.3). Seeds 0-3 pooled, 320 objects, none -> this: 4 pins 8.92 -> 8.12
# deg, 6 pins 6.76 -> 6.77, within 30 deg 0.944 -> 0.953; the generated meshes, never used to
# choose it: 8.01 -> 7.79, 7.87 -> 6.77. 30 exact pins on real meshes: 4.41 -> 5.04 (the
# benchmark's clicks take the nearest point, which a stretch does not follow).
STRETCH_SIGMA = 0.05
STRETCH_LIMIT = math.log(1.1)
# Two pins (and each start's image alignment): theta, distance and centre only, barely held.
ALIGN_SIGMA = np.array([0.0, 0.0, math.radians(90.0), 1.0, 500.0, 500.0, 0.0, 0.0, 0.0])
HELD = np.zeros(3)  # the three stretch values of the model as it is
AZIMUTH_STARTS_DEG = 45.0
MAX_ITERATIONS = 40
ALIGN_ITERATIONS = 12  # each azimuth start aligned in the image first
SCREEN_ITERATIONS = 6  # ... then every start a few steps, the FINALISTS to the end
FINALISTS = 3
# The pixel values above (ROBUST_PX, SNUG_PX, the centre's prior) were chosen on objects of
# radius 110-190 px in the photo (benchmarks/bench_pins.py). How far another instance's pins
# land off grows with the object's size in the photo, and so does a click's error on a large
# photo shown to fit the screen: a larger object is solved in pixels shrunk to this size
# (photos 2x / 4x as large, the bench's "larger photos" row), a smaller one as it is.
REFERENCE_RADIUS_PX = 190.0


def solve_params(p0: np.ndarray, anchor: np.ndarray, points: np.ndarray, targets: np.ndarray,
                 like: Pose, lo: np.ndarray, hi: np.ndarray, slides: np.ndarray | None = None,
                 radius_px: float | None = None) -> np.ndarray:
    """Parameters (6,) putting ``points`` (N, 3) on ``targets`` (N, 2), from ``p0`` (the pose
    shown), the prior of 3+ points held to ``anchor``; ``like``: the camera (viewport, focal);
    inside [lo, hi] (bounds). ``slides`` (N, 3) CAD units or None: the model's shape may
    be loose (module docstring). ``radius_px``: the object's radius in the photo (pixels);
    above REFERENCE_RADIUS_PX the pixels are shrunk to it (None, NaN, inf: as they are)."""
    shrink = radius_px / REFERENCE_RADIUS_PX if radius_px is not None else 1.0
    if not shrink > 1.0 or not math.isfinite(shrink):
        return _solve_params(p0, anchor, points, targets, like, lo, hi, slides)
    # pixels / shrink: the camera's focal length and every pixel value (targets, centre)
    k = np.array([1.0, 1.0, 1.0, 1.0, 1.0 / shrink, 1.0 / shrink])
    small = like.replace(viewport=like.viewport / shrink, px=like.px / shrink,
                         py=like.py / shrink)
    return _solve_params(p0 * k, anchor * k, points, targets / shrink, small, lo * k, hi * k,
                         slides) / k


def _solve_params(p0, anchor, points, targets, like: Pose, lo, hi, slides) -> np.ndarray:
    """solve_params in the pixels given."""
    if len(points) == 1:
        shift = targets[0] - _project(p0, points, like)[0]
        return p0 + np.r_[0, 0, 0, 0, shift]
    p0, anchor = np.r_[p0, HELD], np.r_[anchor, HELD]
    rigid_lo, rigid_hi = np.r_[lo, HELD], np.r_[hi, HELD]
    if len(points) == 2:  # as many equations as unknowns: met exactly, slides or not
        return _align(p0, points, targets, rigid_lo, rigid_hi, like)[0, :6]
    best = _solve_all(p0, anchor, points, targets, like, rigid_lo, rigid_hi)
    if slides is not None:  # pins the model as it is cannot meet: another instance
        worst = np.linalg.norm(_project(best, points, like) - targets, axis=1).max()
        if not worst <= SNUG_PX:
            loose = np.full(3, STRETCH_LIMIT)
            best = _solve_all(p0, anchor, points, targets, like, np.r_[lo, -loose],
                              np.r_[hi, loose], slides)
    return best[:6]


# --- parameters: (azimuth, elevation, theta, log distance, px, py) ---


def to_params(pose: Pose) -> np.ndarray:
    """(6,): azimuth, elevation, theta (radians), log distance, px, py."""
    return np.array([pose.azimuth, pose.elevation, pose.theta, math.log(pose.distance),
                     pose.px, pose.py])


def from_params(p: np.ndarray, like: Pose) -> Pose:
    """The Pose of parameters ``p`` (6,), with ``like``'s camera; angles wrapped."""
    return Pose(wrap_angle(p[0]), p[1], wrap_angle(p[2]), math.exp(p[3]), p[4], p[5],
                like.viewport, like.focal)


def bounds(ranges: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) (6,) of the parameters for Number ranges in UI units (degrees, CAD units,
    pixels); azimuth and theta unbounded."""
    (e0, e1), (d0, d1) = ranges["elevation"], ranges["distance"]
    (x0, x1), (y0, y1) = ranges["px"], ranges["py"]
    lo = np.array([-np.inf, math.radians(e0), -np.inf, math.log(d0), x0, y0])
    hi = np.array([np.inf, math.radians(e1), np.inf, math.log(d1), x1, y1])
    return lo, hi


def _project(p: np.ndarray, points: np.ndarray, like: Pose) -> np.ndarray:
    """Pixels (N, 2) of ``points`` (N, 3) at parameters ``p`` (6,) or (9,) (_project_many)."""
    return _project_many(np.asarray(p)[None], points, like)[0]


def _project_many(ps: np.ndarray, points: np.ndarray, like: Pose) -> np.ndarray:
    """Pixels (M, N, 2) of ``points`` (N, 3) at each of parameters ``ps`` (M, 6) or (M, 9): the
    model stretched by the last three (camera.project_points for many poses at once, without
    building Poses: the solve evaluates thousands); NaN behind the camera."""
    r, t = opencv_extrinsics(ps[:, 0], ps[:, 1], ps[:, 2], np.exp(ps[:, 3]))
    pts = points[None] * np.exp(ps[:, None, 6:9]) if ps.shape[1] > 6 else points[None]
    cam = pts @ r.transpose(0, 2, 1) + t[:, None]
    z = cam[..., 2]
    mf = like.viewport * like.focal
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = mf * cam[..., :2] / z[..., None] + ps[:, None, 4:6]
    uv[z <= 0] = np.nan
    return uv


def _pixel_residuals(ps, points, targets, like, slides=None) -> np.ndarray:
    """Reprojection residuals (M, 2N) in pixels at parameters ``ps`` (M, 9); with ``slides``
    each pin's part along its slide's image direction g is scaled by ROBUST_PX /
    hypot(ROBUST_PX, |g|) (the error model with a point that may lie that far off along it)."""
    m = len(ps)
    if slides is None:
        return (_project_many(ps, points, like) - targets).reshape(m, -1)
    both = _project_many(ps, np.vstack([points, points + 1e-3 * slides]), like)
    uv = both[:, :len(points)]
    r = uv - targets
    g = (both[:, len(points):] - uv) / 1e-3  # pixels per slide
    length = np.linalg.norm(g, axis=2)
    unit = np.divide(g, length[..., None], out=np.zeros_like(g), where=length[..., None] > 0)
    along = (r * unit).sum(axis=2)
    scale = ROBUST_PX / np.hypot(ROBUST_PX, length)
    return (r + ((scale - 1.0) * along)[..., None] * unit).reshape(m, -1)


def _prior_residuals(ps, p0, sigma) -> np.ndarray:
    """(M, free): each of ``ps`` (M, 9) off ``p0`` ((9,) or (M, 9); angles wrapped) in units of
    ``sigma``, for the free parameters (``sigma`` > 0)."""
    diff = ps - p0
    diff[:, [0, 2]] = wrap_angle(diff[:, [0, 2]])
    free = sigma > 0
    return diff[:, free] / sigma[free]


def _cauchy(r: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(M,): Cauchy cost of reprojection residuals (M, 2N) (per pin, c^2 log(1 + |r|^2 / c^2):
    |r|^2 for small residuals) plus the squared prior residuals (M, free); inf where a point is
    behind the camera."""
    sq = (r[:, 0::2] ** 2 + r[:, 1::2] ** 2) / ROBUST_PX ** 2
    cost = ROBUST_PX ** 2 * np.log1p(sq).sum(axis=1) + (prior ** 2).sum(axis=1)
    return np.where(np.isfinite(r).all(axis=1), cost, np.inf)


def _cost(ps, points, targets, like, p0, sigma, slides=None) -> np.ndarray:
    """(M,): the cost (_cauchy) at each of parameters ``ps`` (M, 9)."""
    return _cauchy(_pixel_residuals(ps, points, targets, like, slides),
                   _prior_residuals(ps, p0, sigma))


def _refine(starts, points, targets, like, p0, sigma, lo, hi,
            iterations: int = MAX_ITERATIONS, slides=None) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt with Cauchy weights (IRLS) on the parameters with a prior ``sigma``
    > 0 (the others stay), held inside [lo, hi], from each of ``starts`` (M, 9) at once (each
    with its own damping, and stopped when a step no longer lowers its cost); ``p0`` the
    prior's centre, (9,) or one per start. (parameters (M, 9), costs (M,))."""
    ps = np.clip(np.array(starts, dtype=np.float64), lo, hi)
    p0 = np.broadcast_to(p0, ps.shape)
    cost = _cost(ps, points, targets, like, p0, sigma, slides)
    damping = np.full(len(ps), 1e-3)
    idx = np.nonzero(sigma > 0)[0]
    steps = np.array([1e-6, 1e-6, 1e-6, 1e-6, 1e-4, 1e-4, 1e-6, 1e-6, 1e-6])[idx]
    prior_rows = np.diag(1.0 / sigma[idx])
    running = np.isfinite(cost)
    for _ in range(iterations):
        act = np.nonzero(running)[0]
        if act.size == 0:
            break
        p = ps[act]
        prior = _prior_residuals(p, p0[act], sigma)
        # the residuals at p and, for the Jacobian, one step off it in each free parameter
        nudged = np.repeat(p[:, None], 1 + len(idx), axis=1)  # (k, 1 + free, 9)
        nudged[:, 1 + np.arange(len(idx)), idx] += steps
        r_all = _pixel_residuals(nudged.reshape(-1, p.shape[1]), points, targets, like,
                                 slides).reshape(len(act), 1 + len(idx), -1)
        r = r_all[:, 0]
        jac = ((r_all[:, 1:] - r[:, None]) / steps[None, :, None]).transpose(0, 2, 1)
        w = np.sqrt(np.repeat(1.0 / (1.0 + (r[:, 0::2] ** 2 + r[:, 1::2] ** 2)
                                     / ROBUST_PX ** 2), 2, axis=1))
        a = np.concatenate([jac * w[..., None],
                            np.broadcast_to(prior_rows, (len(act),) + prior_rows.shape)], axis=1)
        b = np.concatenate([r * w, prior], axis=1)
        ok = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=1)
        running[act[~ok]] = False
        act, a, b = act[ok], a[ok], b[ok]
        ata = a.transpose(0, 2, 1) @ a
        atb = (a.transpose(0, 2, 1) @ b[..., None])[..., 0]
        diag = np.einsum("kii->ki", ata) + 1e-9
        # each start tries steps of rising damping until one lowers its cost (or gives up)
        trying = np.ones(len(act), dtype=bool)
        while True:
            trying &= damping[act] < 1e8
            if not trying.any():
                break
            t = np.nonzero(trying)[0]
            k = act[t]
            lhs = ata[t] + damping[k, None, None] * (np.eye(len(idx)) * diag[t, None])
            delta = np.linalg.solve(lhs, -atb[t][..., None])[..., 0]
            q = ps[k].copy()
            q[:, idx] += delta
            q = np.clip(q, lo, hi)
            new_cost = _cost(q, points, targets, like, p0[k], sigma, slides)
            better = new_cost < cost[k]
            kb = k[better]
            keep_going = cost[kb] - new_cost[better] > 1e-9 * np.maximum(1.0, cost[kb])
            running[kb[~keep_going]] = False
            ps[kb], cost[kb] = q[better], new_cost[better]
            damping[kb] = np.maximum(damping[kb] / 10.0, 1e-7)
            damping[k[~better]] *= 10.0
            trying[t[better]] = False
        running[act[damping[act] >= 1e8]] = False
    return ps, cost


def _similarity_start(ps: np.ndarray, points, targets, like, lo, hi) -> np.ndarray:
    """Each of ``ps`` (M, 9) with theta, distance and centre moved so that the projected points
    match the targets by an image similarity (least squares over all pins; a and e kept)."""
    out = ps.copy()
    uv = _project_many(ps, points, like)
    pc, qc = uv.mean(axis=1), targets.mean(axis=0)
    a, b = uv - pc[:, None], targets - qc
    za, zb = a[..., 0] + 1j * a[..., 1], b[:, 0] + 1j * b[:, 1]
    denom = (np.abs(za) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = (np.conj(za) * zb).sum(axis=1) / denom  # complex scale-rotation
    scale, turn = np.abs(m), np.angle(m)
    good = np.isfinite(uv).all(axis=(1, 2)) & (denom >= 1e-9) & np.isfinite(m) & (scale >= 1e-6)
    rel = (ps[:, 4] - pc[:, 0]) + 1j * (ps[:, 5] - pc[:, 1])
    new_centre = qc[0] + 1j * qc[1] + m * rel
    # A turn by +phi in the image (y down) is theta - phi: theta turns (u, v) with v up.
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.column_stack([ps[:, 2] - turn, ps[:, 3] - np.log(scale),
                                 new_centre.real, new_centre.imag])
    out[good, 2:6] = moved[good]
    return np.where(good[:, None], np.clip(out, lo, hi), ps)


def _align(p0, points, targets, lo, hi, like: Pose, starts=None, slides=None) -> np.ndarray:
    """Theta, distance and centre (a, e kept), from the similarity start of each of ``starts``
    (M, 9; default: ``p0`` alone), the prior barely held to ``p0`` ((9,) or (M, 9)):
    parameters (M, 9). Two pins: met exactly."""
    starts = np.atleast_2d(p0 if starts is None else starts)
    begin = _similarity_start(starts, points, targets, like, lo, hi)
    return _refine(begin, points, targets, like, p0, ALIGN_SIGMA, lo, hi, ALIGN_ITERATIONS,
                   slides)[0]


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


def _solve_all(p0, anchor, points, targets, pose: Pose, lo, hi, slides=None) -> np.ndarray:
    """3+ pins: all six values (and the stretch, where [lo, hi] leave it room) from several
    starts (the prior's pose turned all round, the pose shown, PnP), the prior held to
    ``anchor``; the lowest cost wins. Parameters (9,)."""
    sigma = np.r_[PRIOR_SIGMA, np.where(hi[6:] > lo[6:], STRETCH_SIGMA, 0.0)]
    turned = np.repeat(anchor[None], int(round(360.0 / AZIMUTH_STARTS_DEG)), axis=0)
    turned[:, 0] += np.radians(np.arange(len(turned)) * AZIMUTH_STARTS_DEG)
    centres = np.repeat(anchor[None], len(turned), axis=0)
    if not np.array_equal(anchor, p0):  # the pose shown, its alignment held to itself
        turned, centres = np.vstack([p0, turned]), np.vstack([p0, centres])
    starts = _align(centres, points, targets, lo, hi, pose, turned, slides)
    pnp = _pnp_start(points, targets, pose, lo[:6], hi[:6])
    if pnp is not None:
        starts = np.vstack([starts, np.r_[pnp, HELD]])
    screened, costs = _refine(starts, points, targets, pose, anchor, sigma, lo, hi,
                              SCREEN_ITERATIONS, slides)
    finalists = screened[np.argsort(costs, kind="stable")[:FINALISTS]]
    found, found_costs = _refine(finalists, points, targets, pose, anchor, sigma, lo, hi,
                                 slides=slides)
    best_cost = _cost(p0[None], points, targets, pose, anchor, sigma, slides)[0]
    i = int(np.argmin(found_costs))
    return found[i] if found_costs[i] < best_cost else p0
