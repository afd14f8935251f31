"""Silhouettes for the auto-fit: a CAD mesh's silhouette ray-cast into a frame of the photo
(only the window its convex hull can cover; optionally with the mesh stretched along its axes),
and the mesh's symmetries that make a pose's azimuth or a 180-deg flip undecidable from outlines.

Pixel (col, row) is sampled at formula coordinates as in ``pose6d.renderer`` (which this
matches pixel for pixel for unstretched meshes) but rays are built here in numpy, without the
normals, depths and edges a fit does not need.
"""
from __future__ import annotations

import math

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose, opencv_camera
from pose6d.fitting.evidence import Frame


def frame_pose(pose: Pose, frame: Frame) -> Pose:
    """The pose whose projection in frame pixels is ``frame.to_frame`` of ``pose``'s."""
    k = frame.factor
    return pose.replace(viewport=pose.viewport / k, px=(pose.px - frame.x0 + 0.5) / k - 0.5,
                        py=(pose.py - frame.y0 + 0.5) / k - 0.5)


def hull_points(mesh: CadMesh, scale: np.ndarray | None = None) -> np.ndarray:
    """Vertices (K, 3) of the mesh's convex hull (its projection bounds the silhouette), or the
    8 bounding-box corners when the hull cannot be built. Cached on the mesh."""
    cache = mesh.__dict__.setdefault("_fit_cache", {})
    if "hull" not in cache:
        try:
            import open3d as o3d

            legacy = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices),
                                               o3d.utility.Vector3iVector(mesh.faces))
            _, idx = legacy.compute_convex_hull()
            cache["hull"] = mesh.vertices[np.unique(np.asarray(idx))]
        except Exception:  # degenerate (flat) meshes: qhull refuses them
            lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
            cache["hull"] = np.array([[x, y, z] for x in (lo[0], hi[0])
                                      for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return cache["hull"] if scale is None else cache["hull"] * scale


def projected_extent(mesh: CadMesh, pose: Pose,
                     scale: np.ndarray | None = None) -> tuple[np.ndarray, float] | None:
    """Box (x0, y0, x1, y1) of the projected mesh (its hull's vertices; not clipped) and its
    larger side, pixels; None when a vertex is behind the camera. scale: see render_silhouette."""
    k, r, t = opencv_camera(pose)
    cam = hull_points(mesh, scale) @ r.T + t
    if (cam[:, 2] <= 1e-6).any():
        return None
    uv = (cam @ k.T)[:, :2] / cam[:, 2:3]
    box = np.concatenate([uv.min(axis=0), uv.max(axis=0)])
    return box, float(max(box[2] - box[0], box[3] - box[1]))


def render_silhouette(mesh: CadMesh, pose: Pose, width: int, height: int, nthreads: int = 1,
                      scale: np.ndarray | None = None
                      ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Silhouette of ``mesh`` at ``pose`` in a width x height image, cast only on the window the
    mesh's hull can cover. Returns (x0, y0, x1, y1) and the window's (h, w) bool mask
    (pixel (col, row) sampled at formula coordinates, as pose6d.renderer does).

    scale: (3,) factors stretching the mesh along its x, y, z axes (None = as is). Rays are
    shrunk instead of the mesh (hitting diag(s) X  <=>  the ray scaled by 1 / s hitting X)."""
    import open3d as o3d

    ext = projected_extent(mesh, pose, scale)
    if ext is None:
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        b = ext[0]
        x0, y0 = max(0, int(math.floor(b[0])) - 2), max(0, int(math.floor(b[1])) - 2)
        x1, y1 = min(width, int(math.ceil(b[2])) + 3), min(height, int(math.ceil(b[3])) + 3)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    mask = mesh.scene.test_occlusions(o3d.core.Tensor.from_numpy(
        pinhole_rays(pose, (x0, y0, x1, y1), scale)), nthreads=nthreads).numpy()
    return (x0, y0, x1, y1), mask


def pinhole_rays(pose: Pose, window: tuple[int, int, int, int],
                 scale: np.ndarray | None = None) -> np.ndarray:
    """Rays (h, w, 6) float32 (origin, direction) in mesh coordinates through the pixels of
    ``window`` (x0, y0, x1, y1): pixel (col, row) at formula coordinates, so the ray passes
    through ((col - px) / Mf, (row - py) / Mf, 1) in the camera frame. With ``scale`` the rays
    are mapped by diag(1 / scale), which is the same as stretching the mesh by ``scale``."""
    x0, y0, x1, y1 = window
    _, r, t = opencv_camera(pose)
    m = r.T.copy()  # camera -> world directions
    origin = -r.T @ t
    if scale is not None:
        inv = 1.0 / np.asarray(scale, dtype=np.float64)
        m *= inv[:, None]
        origin = origin * inv
    f = pose.viewport * pose.focal
    dx = ((np.arange(x0, x1) - pose.px) / f).astype(np.float32)
    dy = ((np.arange(y0, y1) - pose.py) / f).astype(np.float32)
    m = m.astype(np.float32)
    rays = np.empty((y1 - y0, x1 - x0, 6), np.float32)
    rays[..., :3] = origin.astype(np.float32)
    rays[..., 3:] = dx[None, :, None] * m[:, 0] + dy[:, None, None] * m[:, 1] + m[:, 2]
    return rays


def silhouette_iou(mesh: CadMesh, a: Pose, b: Pose, frame: Frame) -> float:
    """IoU of the silhouettes of two poses rendered into ``frame``."""
    masks = []
    for pose in (a, b):
        (x0, y0, x1, y1), m = render_silhouette(mesh, frame_pose(pose, frame), frame.width,
                                                frame.height)
        full = np.zeros((frame.height, frame.width), bool)
        full[y0:y1, x0:x1] = m
        masks.append(full)
    union = (masks[0] | masks[1]).sum()
    return float((masks[0] & masks[1]).sum() / union) if union else 1.0


# --- Symmetry --------------------------------------------------------------------------------

SYMMETRY_TOL = 0.02  # of the mesh radius: vertices this close to the turned surface coincide


def mesh_symmetry(mesh: CadMesh) -> str:
    """"rotational" when turning the mesh about z by any angle leaves it in place (bottles,
    punching bags: azimuth means nothing), "half_turn" when a 180-deg turn does (a rectangular
    table: a flip cannot be told), else "none". Checked on up to 2000 vertices: their distance
    to the mesh surface after the turn (99th percentile) must be below SYMMETRY_TOL * radius.
    Cached on the mesh."""
    import open3d as o3d

    cache = mesh.__dict__.setdefault("_fit_cache", {})
    if "symmetry" in cache:
        return cache["symmetry"]
    v = mesh.vertices
    if len(v) > 2000:
        v = v[np.random.default_rng(0).choice(len(v), 2000, replace=False)]
    tol = SYMMETRY_TOL * mesh.radius

    def coincides(deg: float) -> bool:
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        turned = v @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
        d = mesh.scene.compute_distance(o3d.core.Tensor(turned.astype(np.float32))).numpy()
        return float(np.percentile(d, 99)) < tol

    if coincides(180.0):
        kind = "rotational" if coincides(37.0) and coincides(90.0) else "half_turn"
    else:
        kind = "rotational" if coincides(37.0) and coincides(111.0) else "none"
    cache["symmetry"] = kind
    return kind
