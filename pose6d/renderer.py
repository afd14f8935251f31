"""Ray-cast rendering of a CAD mesh at a pose with Open3D's RaycastingScene (CPU, thread-safe).

Only the window that the projected mesh can cover is cast, so small objects are cheap.
Pixel (col, row) is sampled at formula coordinates (col, row): Open3D casts through pixel
centres (x + 0.5), so the principal point handed to it is shifted by +0.5 (see camera.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pose6d.camera import Pose, intrinsics, opencv_camera, project_points
from pose6d.cad_library import CadMesh

CREASE_COS = float(np.cos(np.radians(35.0)))  # normals further apart than this draw an edge
DEPTH_JUMP = 0.04  # depth step (in mesh radii) that counts as an occlusion edge


@dataclasses.dataclass
class Render:
    """What one ray cast gives, cropped to ``box`` = (x0, y0, x1, y1) of a width x height image.

    mask: (h, w) bool, object hit. depth: (h, w) float32 z-depth (inf where no hit).
    shade: (h, w) float32 Lambert shading in [0, 1]. edges: (h, w) bool, visible feature edges
    (silhouette, creases, occlusion boundaries), one pixel wide on the nearer side.
    """

    width: int
    height: int
    box: tuple[int, int, int, int]
    mask: np.ndarray
    depth: np.ndarray
    shade: np.ndarray
    edges: np.ndarray

    def full(self, window: np.ndarray, fill=0) -> np.ndarray:
        """Paste a cropped (h, w[, c]) array into a full-size array filled with ``fill``."""
        out = np.full((self.height, self.width) + window.shape[2:], fill, dtype=window.dtype)
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = window
        return out

    @property
    def full_mask(self) -> np.ndarray:
        return self.full(self.mask, False)

    @property
    def full_edges(self) -> np.ndarray:
        return self.full(self.edges, False)


def projected_box(mesh: CadMesh, pose: Pose, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel window (x0, y0, x1, y1), clipped to the image, that can contain the projected mesh.

    The whole image when a vertex lies behind the camera (its projection is unbounded).
    """
    uv = project_points(mesh.vertices, pose)
    if np.isnan(uv).any():
        return 0, 0, width, height
    x0 = int(np.floor(uv[:, 0].min())) - 1
    y0 = int(np.floor(uv[:, 1].min())) - 1
    x1 = int(np.ceil(uv[:, 0].max())) + 2
    y1 = int(np.ceil(uv[:, 1].max())) + 2
    return max(0, x0), max(0, y0), min(width, max(0, x1)), min(height, max(0, y1))


def render(mesh: CadMesh, pose: Pose, width: int, height: int) -> Render:
    """Ray-cast ``mesh`` at ``pose`` into a width x height image (see Render)."""
    import open3d as o3d

    x0, y0, x1, y1 = projected_box(mesh, pose, width, height)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        empty = np.zeros((0, 0), dtype=bool)
        return Render(width, height, (0, 0, 0, 0), empty, empty.astype(np.float32),
                      empty.astype(np.float32), empty)
    k = intrinsics(pose, offset=0.5)
    k[0, 2] -= x0
    k[1, 2] -= y0
    _, r, t = opencv_camera(pose)
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = r, t
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        o3d.core.Tensor(k), o3d.core.Tensor(extrinsic), w, h)
    hits = mesh.scene.cast_rays(rays)
    depth = hits["t_hit"].numpy()
    mask = np.isfinite(depth)
    normals = hits["primitive_normals"].numpy()
    dirs = rays.numpy()[:, :, 3:]
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    # Two-sided Lambert with the light at the camera: CAD normals are not consistently oriented.
    shade = np.where(mask, np.abs((normals * dirs).sum(axis=2)), 0.0).astype(np.float32)
    edges = feature_edges(mask, depth, normals, hits["primitive_ids"].numpy(),
                          DEPTH_JUMP * mesh.radius)
    return Render(width, height, (x0, y0, x1, y1), mask, depth.astype(np.float32), shade, edges)


def feature_edges(mask: np.ndarray, depth: np.ndarray, normals: np.ndarray, prim_ids: np.ndarray,
                  depth_jump: float) -> np.ndarray:
    """Visible edges (h, w) bool from per-pixel hits: silhouette, creases and depth steps.

    An edge is drawn between two neighbouring pixels when one misses the mesh, or they hit
    different triangles whose normals differ by more than the crease angle or whose depths
    differ by more than ``depth_jump``. The nearer (or the only hit) pixel is marked.
    """
    edges = np.zeros_like(mask)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        ma, mb = mask[a], mask[b]
        both = ma & mb & (prim_ids[a] != prim_ids[b])
        crease = np.abs((normals[a] * normals[b]).sum(axis=-1)) < CREASE_COS
        with np.errstate(invalid="ignore"):
            step = np.abs(depth[a] - depth[b]) > depth_jump
            a_nearer = depth[a] <= depth[b]
        edge = both & (crease | step)
        edges[a] |= (ma & ~mb) | (edge & a_nearer)
        edges[b] |= (mb & ~ma) | (edge & ~a_nearer)
    return edges
