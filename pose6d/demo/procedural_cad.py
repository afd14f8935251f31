"""Procedural CAD models for the demo dataset: mesh primitives and four categories of models.

A mesh is a pair ``(vertices (N, 3) float64, faces (M, 3) int64)`` in CAD units, z up, with the
object's front towards -y (PASCAL3D+: azimuth 0 looks at the front). Finished models are centred
on their bounding box and about unit size (largest extent 1-2 units). Everything is a pure
function of its arguments, so the models are identical on every run.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]
_EPS = 1e-9


# --- Mesh plumbing -------------------------------------------------------------------------

def merge(meshes: Sequence[Mesh]) -> Mesh:
    """Concatenate meshes into one (faces re-indexed); parts may intersect, ray casting copes."""
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(np.asarray(v, dtype=np.float64).reshape(-1, 3))
        faces.append(np.asarray(f, dtype=np.int64).reshape(-1, 3) + offset)
        offset += len(verts[-1])
    return np.concatenate(verts), np.concatenate(faces)


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 right-handed rotation about the world ``axis`` ('x', 'y' or 'z')."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def transform(mesh: Mesh, rot: np.ndarray | None = None, translation: Sequence[float] = (0, 0, 0),
              scale: float | Sequence[float] = 1.0) -> Mesh:
    """Scale (uniform or per axis), then rotate (3x3), then translate the vertices."""
    v = np.asarray(mesh[0], dtype=np.float64) * np.asarray(scale, dtype=np.float64)
    if rot is not None:
        v = v @ np.asarray(rot).T
    return v + np.asarray(translation, dtype=np.float64), mesh[1]


def centre(mesh: Mesh) -> Mesh:
    """Translate so that the bounding box is centred on the origin (the camera's target)."""
    v = mesh[0]
    return v - (v.min(axis=0) + v.max(axis=0)) / 2.0, mesh[1]


def _band(start0: int, start1: int, n: int) -> np.ndarray:
    """Faces (2n, 3) joining two closed rings of n vertices starting at start0 and start1."""
    k = np.arange(n)
    a, b = start0 + k, start0 + (k + 1) % n
    c, d = start1 + (k + 1) % n, start1 + k
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _fan(apex: int, start: int, n: int, flip: bool = False) -> np.ndarray:
    """Faces (n, 3) joining an apex vertex to a closed ring of n vertices."""
    k = np.arange(n)
    a, b = start + k, start + (k + 1) % n
    tri = np.stack([np.full(n, apex), b, a] if flip else [np.full(n, apex), a, b], 1)
    return tri


def _band_short_diagonal(rings: np.ndarray, i: int) -> np.ndarray:
    """Faces joining rings i and i + 1 of (S, K, 3), each quad split along its shorter diagonal
    (twisted quads of a loft otherwise shade as a saw-tooth)."""
    k = rings.shape[1]
    j = np.arange(k)
    a, b = i * k + j, i * k + (j + 1) % k
    c, d = (i + 1) * k + (j + 1) % k, (i + 1) * k + j
    pts = rings.reshape(-1, 3)
    ac = np.linalg.norm(pts[a] - pts[c], axis=1) <= np.linalg.norm(pts[b] - pts[d], axis=1)
    t1 = np.where(ac[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    t2 = np.where(ac[:, None], np.stack([a, c, d], 1), np.stack([b, c, d], 1))
    return np.concatenate([t1, t2])


def rings_mesh(rings: np.ndarray, cap_start: bool = True, cap_end: bool = True) -> Mesh:
    """Skin consecutive closed rings (S, K, 3) with quads; optionally fan-cap both ends."""
    rings = np.asarray(rings, dtype=np.float64)
    s, k = rings.shape[:2]
    verts = [rings.reshape(-1, 3)]
    faces = [_band_short_diagonal(rings, i) for i in range(s - 1)]
    n = s * k
    if cap_start:
        verts.append(rings[0].mean(axis=0, keepdims=True))
        faces.append(_fan(n, 0, k, flip=True))
        n += 1
    if cap_end:
        verts.append(rings[-1].mean(axis=0, keepdims=True))
        faces.append(_fan(n, (s - 1) * k, k))
    return np.concatenate(verts), np.concatenate(faces)


# --- Primitives ----------------------------------------------------------------------------

def box(size: Sequence[float], center: Sequence[float] = (0, 0, 0)) -> Mesh:
    """Axis-aligned box: vertices (8, 3), faces (12, 3); size = (sx, sy, sz) full extents."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    v = corners * np.asarray(size, dtype=np.float64) / 2.0 + np.asarray(center, dtype=np.float64)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def lathe(profile: Sequence[Sequence[float]], segments: int = 32) -> Mesh:
    """Revolve a profile of (r, z) points (K, 2) about the z axis.

    Points with r == 0 become single pole vertices; an open end with r > 0 is closed with a flat
    cap. Returns about 2 * segments * (K - 1) triangles.
    """
    prof = np.asarray(profile, dtype=np.float64)
    ang = 2.0 * np.pi * np.arange(segments) / segments
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    starts: list[tuple[int, bool]] = []  # (first vertex index, is_pole) per profile point
    n = 0
    for r, z in prof:
        if r <= _EPS:
            verts.append(np.array([[0.0, 0.0, z]]))
            starts.append((n, True))
            n += 1
        else:
            verts.append(np.stack([r * np.cos(ang), r * np.sin(ang), np.full(segments, z)], 1))
            starts.append((n, False))
            n += segments
    for (s0, p0), (s1, p1) in zip(starts[:-1], starts[1:]):
        if not p0 and not p1:
            faces.append(_band(s0, s1, segments))
        elif p0 and not p1:
            faces.append(_fan(s0, s1, segments))
        elif p1 and not p0:
            faces.append(_fan(s1, s0, segments, flip=True))
    for (start, pole), z, flip in ((starts[0], prof[0, 1], True), (starts[-1], prof[-1, 1], False)):
        if not pole:
            verts.append(np.array([[0.0, 0.0, z]]))
            faces.append(_fan(n, start, segments, flip=flip))
            n += 1
    return np.concatenate(verts), np.concatenate(faces)


def cylinder(radius: float, height: float, segments: int = 24, top_radius: float | None = None,
             center: Sequence[float] = (0, 0, 0)) -> Mesh:
    """Capped cylinder (or frustum when ``top_radius`` differs) along z, centred at ``center``."""
    top = radius if top_radius is None else top_radius
    v, f = lathe([(0, -height / 2), (radius, -height / 2), (top, height / 2), (0, height / 2)],
                 segments)
    return v + np.asarray(center, dtype=np.float64), f


def sweep_tube(path: np.ndarray, radius: float | np.ndarray, segments: int = 12,
               caps: bool = True) -> Mesh:
    """A tube of circular section swept along a polyline ``path`` (K, 3).

    radius: scalar or (K,) per path point. Frames are parallel-transported so the tube does
    not twist. Returns 2 * segments * (K - 1) triangles plus the caps.
    """
    p = np.asarray(path, dtype=np.float64)
    rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(p),))
    tang = np.gradient(p, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    helper = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tang[0], helper)
    normal /= np.linalg.norm(normal)
    ang = 2.0 * np.pi * np.arange(segments) / segments
    rings = []
    for point, t, r in zip(p, tang, rad):
        normal = normal - normal.dot(t) * t
        normal /= np.linalg.norm(normal)
        binormal = np.cross(t, normal)
        rings.append(point + r * (np.cos(ang)[:, None] * normal + np.sin(ang)[:, None] * binormal))
    return rings_mesh(np.stack(rings), caps, caps)


def bent_path(start: Sequence[float], end: Sequence[float], bulge: Sequence[float],
              samples: int = 24) -> np.ndarray:
    """A smooth arc (samples, 3) from ``start`` to ``end`` pushed out by ``bulge`` at the middle."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    a, b = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    return a + t * (b - a) + np.sin(np.pi * t) * np.asarray(bulge, dtype=np.float64)


def loft_y(sections: np.ndarray, ys: np.ndarray) -> Mesh:
    """Skin cross-sections (S, K, 2) given in the x-z plane at positions ``ys`` (S,) along y."""
    sec = np.asarray(sections, dtype=np.float64)
    y = np.broadcast_to(np.asarray(ys, dtype=np.float64)[:, None], sec.shape[:2])
    return rings_mesh(np.stack([sec[..., 0], y, sec[..., 1]], axis=-1))


def smooth_stations(keys: np.ndarray, samples: int, passes: int = 2) -> np.ndarray:
    """Resample key stations (S, P) (column 0 = position) to ``samples`` rows and round corners.

    Linear interpolation then a few [1, 2, 1] smoothing passes (ends pinned): sharp kinks in the
    key profile (windscreen, tailgate) become short rounded transitions.
    """
    keys = np.asarray(keys, dtype=np.float64)
    pos = np.linspace(keys[0, 0], keys[-1, 0], samples)
    out = np.stack([pos] + [np.interp(pos, keys[:, 0], keys[:, j])
                            for j in range(1, keys.shape[1])], axis=1)
    for _ in range(passes):
        out[1:-1, 1:] = (out[:-2, 1:] + 2.0 * out[1:-1, 1:] + out[2:, 1:]) / 4.0
    return out


# --- Categories ------------------------------------------------------------------------------

def car_section(half_width: float, z_bottom: float, z_belt: float, z_top: float,
                top_half_width: float) -> np.ndarray:
    """One car cross-section (10, 2) in x-z: rounded sill, straight flank, cabin or bonnet top."""
    c = min(0.05, 0.3 * (z_belt - z_bottom))
    c2 = min(0.05, 0.45 * max(z_top - z_belt, 0.0))
    hw, tw = half_width, top_half_width
    right = [(hw - c, z_bottom), (hw, z_bottom + c), (hw, z_belt), (tw, z_top - c2),
             (tw - c2, z_top)]
    left = [(-x, z) for x, z in reversed(right)]
    return np.array(right + left)


def car_body(keys: Sequence[Sequence[float]], samples: int = 64, passes: int = 3) -> Mesh:
    """Loft a car body from key stations (y, half_width, z_bottom, z_belt, z_top, top_half_w)."""
    st = smooth_stations(np.asarray(keys), samples, passes)
    return loft_y(np.stack([car_section(*row[1:]) for row in st]), st[:, 0])


def wheel(radius: float, width: float, center: Sequence[float], segments: int = 20) -> Mesh:
    """A tyre with rounded shoulders, axis along x."""
    r, h = radius, width / 2.0
    prof = [(0, -h), (0.75 * r, -h), (0.95 * r, -0.8 * h), (r, 0), (0.95 * r, 0.8 * h),
            (0.75 * r, h), (0, h)]
    return transform(lathe(prof, segments), rotation("y", 90), center)


def _car(keys, axles, wheel_r, track, extras=(), passes=3) -> Mesh:
    parts = [car_body(keys, passes=passes)] + list(extras)
    parts += [wheel(wheel_r, 0.14, (sx * track, y, wheel_r)) for y in axles for sx in (-1, 1)]
    # Wing mirrors just behind the windscreen base: a cue for the front (-y).
    parts += [box((0.07, 0.04, 0.05), (sx * (track + 0.08), axles[0] + 0.28, keys[2][3] + 0.04))
              for sx in (-1, 1)]
    return merge(parts)


def car_sedan() -> Mesh:
    """Sedan: long bonnet, cabin set back from the centre, short boot."""
    keys = [[-1.00, 0.38, 0.20, 0.40, 0.44, 0.32], [-0.94, 0.42, 0.16, 0.50, 0.54, 0.38],
            [-0.40, 0.43, 0.16, 0.56, 0.62, 0.38], [-0.12, 0.43, 0.16, 0.58, 0.98, 0.33],
            [0.42, 0.43, 0.16, 0.58, 0.98, 0.33], [0.74, 0.43, 0.16, 0.58, 0.68, 0.38],
            [0.96, 0.42, 0.18, 0.58, 0.66, 0.38], [1.00, 0.38, 0.24, 0.54, 0.60, 0.32]]
    return _car(keys, (-0.64, 0.62), 0.17, 0.38)


def car_pickup() -> Mesh:
    """Pickup: tall cab in the front half, open load bed with walls and tailgate behind."""
    keys = [[-1.00, 0.40, 0.30, 0.56, 0.60, 0.34], [-0.94, 0.44, 0.26, 0.68, 0.72, 0.40],
            [-0.45, 0.45, 0.26, 0.74, 0.80, 0.40], [-0.25, 0.45, 0.26, 0.74, 1.22, 0.36],
            [0.16, 0.45, 0.26, 0.74, 1.22, 0.36], [0.20, 0.45, 0.26, 0.74, 0.76, 0.43],
            [1.00, 0.45, 0.28, 0.74, 0.76, 0.43]]
    bed = [box((0.05, 0.78, 0.20), (sx * 0.425, 0.60, 0.84)) for sx in (-1, 1)]
    bed.append(box((0.90, 0.05, 0.20), (0.0, 0.985, 0.84)))
    return _car(keys, (-0.62, 0.60), 0.24, 0.40, bed, passes=2)


def car_van() -> Mesh:
    """Van: short sloping nose, tall boxy body, flat rear doors."""
    keys = [[-1.00, 0.42, 0.22, 0.46, 0.50, 0.36], [-0.92, 0.45, 0.18, 0.60, 0.66, 0.42],
            [-0.70, 0.46, 0.18, 0.66, 0.76, 0.42], [-0.42, 0.46, 0.18, 0.66, 1.36, 0.41],
            [0.97, 0.46, 0.18, 0.66, 1.36, 0.41], [1.00, 0.45, 0.20, 0.66, 1.34, 0.40]]
    return _car(keys, (-0.64, 0.66), 0.18, 0.41, passes=2)


def chair_four_leg() -> Mesh:
    """Dining chair: thin seat, four legs, rear posts rising into a slatted back (at +y)."""
    parts = [box((0.46, 0.44, 0.045), (0, 0, 0.45))]
    parts += [box((0.04, 0.04, 0.43), (sx * 0.2, -0.19, 0.215)) for sx in (-1, 1)]
    parts += [sweep_tube(np.array([[sx * 0.2, 0.19, 0.0], [sx * 0.2, 0.2, 0.45],
                                   [sx * 0.2, 0.27, 0.98]]), 0.022, 8) for sx in (-1, 1)]
    tilt = rotation("x", -7.5)
    for z in (0.68, 0.8, 0.93):
        y = 0.2 + (z - 0.45) * 0.07 / 0.53
        parts.append(transform(box((0.40, 0.022, 0.07 if z < 0.9 else 0.1)), tilt, (0, y, z)))
    parts += [box((0.022, 0.38, 0.03), (sx * 0.2, 0, 0.15)) for sx in (-1, 1)]
    parts.append(box((0.38, 0.022, 0.03), (0, 0.19, 0.22)))
    return merge(parts)


def chair_armchair() -> Mesh:
    """Upholstered armchair: deep seat block, padded arms, thick back, short legs."""
    parts = [box((0.56, 0.58, 0.22), (0, -0.01, 0.24)), box((0.52, 0.54, 0.08), (0, -0.03, 0.39))]
    for sx in (-1, 1):
        parts.append(box((0.13, 0.66, 0.32), (sx * 0.345, 0.0, 0.33)))
        parts.append(transform(cylinder(0.065, 0.66, 16), rotation("x", 90), (sx * 0.345, 0, 0.49)))
    back = merge([box((0.82, 0.16, 0.62), (0, 0, 0.31)),
                  transform(cylinder(0.08, 0.82, 16), rotation("y", 90), (0, 0.0, 0.62))])
    parts.append(transform(back, rotation("x", -10), (0, 0.29, 0.18)))
    parts += [cylinder(0.03, 0.13, 10, 0.022, (sx * 0.34, sy * 0.26, 0.065))
              for sx in (-1, 1) for sy in (-1, 1)]
    return merge(parts)


def chair_office() -> Mesh:
    """Office chair: five-star base on casters, gas post, round seat, backrest on a J-bar."""
    parts = [cylinder(0.05, 0.06, 16, center=(0, 0, 0.1)),
             cylinder(0.035, 0.2, 16, center=(0, 0, 0.2)),
             cylinder(0.025, 0.16, 12, center=(0, 0, 0.36))]
    for i in range(5):
        a = math.radians(90 + 72 * i)
        end = np.array([0.33 * math.cos(a), 0.33 * math.sin(a), 0.07])
        parts.append(sweep_tube(np.array([[0, 0, 0.1], end * [0.5, 0.5, 1.2], end]), 0.024, 8))
        parts.append(wheel(0.035, 0.03, end * [1, 1, 0] + [0, 0, 0.035], 12))
    seat = [(0, 0), (0.22, 0), (0.25, 0.03), (0.25, 0.06), (0.22, 0.085), (0, 0.09)]
    parts.append(transform(lathe(seat, 32), None, (0, 0, 0.43), (1.0, 0.95, 1.0)))
    parts.append(box((0.18, 0.18, 0.04), (0, 0, 0.42)))
    bar = np.array([[0, 0.12, 0.45], [0, 0.27, 0.46], [0, 0.31, 0.55], [0, 0.31, 0.68]])
    parts.append(sweep_tube(bar, 0.02, 8))
    pad = [(0, -0.03), (0.2, -0.03), (0.22, 0), (0.2, 0.03), (0, 0.03)]
    back = transform(lathe(pad, 32), rotation("x", 90), (0, 0, 0), (1.0, 1.15, 1.0))
    parts.append(transform(back, rotation("x", -8), (0, 0.33, 0.86)))
    for sx in (-1, 1):
        parts.append(sweep_tube(np.array([[sx * 0.2, 0.02, 0.47], [sx * 0.25, 0.02, 0.55],
                                          [sx * 0.25, 0.02, 0.64]]), 0.015, 8))
        parts.append(box((0.06, 0.24, 0.025), (sx * 0.25, 0.0, 0.65)))
    return merge(parts)


def _mug(profile_outer, inner_r, rim_z, handle_start, handle_end, bulge, handle_r,
         segments=80, rings=1, handle_segments=12, handle_samples=24) -> Mesh:
    """A hollow mug: outer wall profile (r, z), inner wall at inner_r, handle on the +x side."""
    out = np.asarray(profile_outer, dtype=np.float64)
    wall = [out[0]]
    for a, b in zip(out[:-1], out[1:]):  # subdivide so a fine mug shades smoothly
        wall += [a + (b - a) * t for t in np.linspace(0, 1, rings + 1)[1:]]
    zs = np.linspace(rim_z, 0.06, rings + 1)
    inner = [(inner_r, z) for z in zs]
    rim = [((out[-1, 0] + inner_r) / 2, rim_z + 0.01)]
    profile = [(0.0, 0.0)] + wall + rim + inner + [(0.0, 0.06)]
    body = lathe(profile, segments)
    path = bent_path(handle_start, handle_end, bulge, handle_samples)
    return merge([body, sweep_tube(path, handle_r, handle_segments)])


def mug_straight() -> Mesh:
    """Straight cylindrical mug with a D handle."""
    return _mug([(0.38, 0.0), (0.40, 0.02), (0.40, 0.90)], 0.36, 0.90,
                (0.38, 0, 0.74), (0.38, 0, 0.20), (0.25, 0, 0.0), 0.045)


def mug_tapered() -> Mesh:
    """Mug widening towards the rim, low-slung handle."""
    return _mug([(0.24, 0.0), (0.26, 0.02), (0.46, 0.72)], 0.42, 0.72,
                (0.41, 0, 0.58), (0.29, 0, 0.14), (0.2, 0, 0.03), 0.04)


def mug_tall() -> Mesh:
    """Tall latte mug, finely tessellated (about 10k triangles; for benchmarks)."""
    return _mug([(0.26, 0.0), (0.28, 0.02), (0.28, 1.2)], 0.255, 1.2,
                (0.26, 0, 1.02), (0.26, 0, 0.32), (0.22, 0, 0.04), 0.04,
                segments=112, rings=10, handle_segments=24, handle_samples=48)


def table_rectangular() -> Mesh:
    """Rectangular dining table: top, four square legs, aprons."""
    parts = [box((2.0, 1.0, 0.06), (0, 0, 0.75))]
    parts += [box((0.07, 0.07, 0.72), (sx * 0.88, sy * 0.4, 0.36))
              for sx in (-1, 1) for sy in (-1, 1)]
    parts += [box((1.7, 0.025, 0.1), (0, sy * 0.41, 0.67)) for sy in (-1, 1)]
    parts += [box((0.025, 0.75, 0.1), (sx * 0.89, 0, 0.67)) for sx in (-1, 1)]
    return merge(parts)


def table_round() -> Mesh:
    """Round pedestal table: disc top, turned column, cross-shaped foot."""
    top = lathe([(0, 0.73), (0.63, 0.73), (0.65, 0.755), (0.63, 0.78), (0, 0.78)], 64)
    column = lathe([(0.07, 0.08), (0.05, 0.3), (0.075, 0.45), (0.05, 0.6), (0.11, 0.73)], 24)
    feet = [transform(box((0.8, 0.08, 0.08), (0, 0, 0.04)), rotation("z", a)) for a in (0, 90)]
    return merge([top, column] + feet)


def table_trestle() -> Mesh:
    """Trestle table: long top on two I-shaped ends joined by a stretcher."""
    parts = [box((2.0, 0.9, 0.07), (0, 0, 0.745)), box((1.44, 0.06, 0.08), (0, 0, 0.3))]
    for sx in (-1, 1):
        parts += [box((0.08, 0.14, 0.58), (sx * 0.72, 0, 0.37)),
                  box((0.1, 0.8, 0.08), (sx * 0.72, 0, 0.04)),
                  box((0.08, 0.75, 0.06), (sx * 0.72, 0, 0.68))]
    return merge(parts)


# category -> cad_index -> (subtype, builder). Car skips index 03 on purpose (indices may gap).
MODELS: dict[str, dict[int, tuple[str, Callable[[], Mesh]]]] = {
    "car": {1: ("sedan", car_sedan), 2: ("pickup", car_pickup), 4: ("van", car_van)},
    "chair": {1: ("four_leg", chair_four_leg), 2: ("armchair", chair_armchair),
              3: ("office", chair_office)},
    "dining_table": {1: ("rectangular", table_rectangular), 2: ("round", table_round),
                     3: ("trestle", table_trestle)},
    "mug": {1: ("straight", mug_straight), 2: ("tapered", mug_tapered), 3: ("tall", mug_tall)},
}


def build_model(category: str, index: int) -> Mesh:
    """The finished model: vertices (N, 3) float64 centred on its bounding box, faces (M, 3)."""
    try:
        _, builder = MODELS[category][index]
    except KeyError:
        raise KeyError(f"no procedural model {category}/{index:02d}") from None
    v, f = centre(builder())
    return v, f.astype(np.int64)
