"""Ray-cast rendering of a CAD mesh at a pose with Open3D's RaycastingScene (CPU, thread-safe).

Only the window that the projected mesh can cover is cast, so small objects are cheap.
Pixel (col, row) is sampled at formula coordinates (col, row): Open3D casts through pixel
centres (x + 0.5), so the principal point handed to it is shifted by PIXEL_CENTRE (camera.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pose6d.camera import PIXEL_CENTRE, Pose, intrinsics, opencv_camera, project_points
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


def render(mesh: CadMesh, pose: Pose, width: int, height: int, nthreads: int = 0) -> Render:
    """Ray-cast ``mesh`` at ``pose`` into a width x height image (see Render).

    nthreads: Embree threads for the cast (0 = all cores).
    """
    box, rays, hits = cast(mesh, pose, width, height, nthreads)
    if hits is None:
        empty = np.zeros((0, 0), dtype=bool)
        return Render(width, height, (0, 0, 0, 0), empty, empty.astype(np.float32),
                      empty.astype(np.float32), empty)
    depth = hits["t_hit"].numpy()
    mask = np.isfinite(depth)
    normals = hits["primitive_normals"].numpy()
    # Two-sided Lambert with the light at the camera: CAD normals are not consistently oriented.
    dirs = rays.numpy()[:, :, 3:][mask]
    shade = np.zeros(mask.shape, dtype=np.float32)
    shade[mask] = np.abs((normals[mask] * dirs).sum(axis=1)) / np.linalg.norm(dirs, axis=1)
    edges = feature_edges(mask, depth, normals, hits["primitive_ids"].numpy(),
                          DEPTH_JUMP * mesh.radius)
    return Render(width, height, box, mask, depth.astype(np.float32), shade, edges)


def cast(mesh: CadMesh, pose: Pose, width: int, height: int, nthreads: int = 0):
    """Cast one ray per pixel of the window ``projected_box`` gives: (box, rays, hits).

    rays: Open3D tensor (h, w, 6), origin and direction in the mesh's (world) frame, the
    direction scaled to unit camera z, so t_hit is the z-depth. hits: Open3D's cast_rays dict,
    or None (with rays None) when the window is empty.
    """
    import open3d as o3d

    x0, y0, x1, y1 = projected_box(mesh, pose, width, height)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return (0, 0, 0, 0), None, None
    k = intrinsics(pose, offset=PIXEL_CENTRE)
    k[0, 2] -= x0
    k[1, 2] -= y0
    _, r, t = opencv_camera(pose)
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = r, t
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        o3d.core.Tensor(k), o3d.core.Tensor(extrinsic), w, h)
    return (x0, y0, x1, y1), rays, mesh.scene.cast_rays(rays, nthreads=nthreads)


@dataclasses.dataclass
class Surface:
    """The mesh's surface seen through each pixel of ``box`` = (x0, y0, x1, y1) (cropped).

    mask: (h, w) bool, object hit. depth: (h, w) float32 z-depth in CAD units (inf: no hit).
    rays: (h, w, 6) float32 each pixel's ray (origin, direction scaled to unit z-depth) in the
    mesh's frame, or None when cast for masks only; ``points`` derives the hit points from them.
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray
    depth: np.ndarray
    rays: np.ndarray | None = None

    def points(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """(h', w', 3) float32: the hit point of each pixel of the window's crop [rows, cols]
        in the mesh's own frame (CAD units; 0 where no hit): origin + depth * direction, a
        point on the ray through the pixel's centre, so projected with the pose it lands on
        that pixel (up to float rounding)."""
        if self.rays is None:
            raise ValueError("this surface was cast without points (render_surface points=False)")
        mask, depth, ray = self.mask[rows, cols], self.depth[rows, cols], self.rays[rows, cols]
        out = np.zeros(mask.shape + (3,), dtype=np.float32)
        hit = ray[mask]
        out[mask] = hit[:, :3] + depth[mask][:, None] * hit[:, 3:]
        return out


def render_surface(mesh: CadMesh, pose: Pose, width: int, height: int, nthreads: int = 0,
                   points: bool = True) -> Surface:
    """Ray-cast ``mesh`` at ``pose``: per pixel the hit and its z-depth, and with ``points``
    the rays that give each pixel's model point (Surface.points)."""
    box, rays, hits = cast(mesh, pose, width, height, nthreads)
    if hits is None:
        z = np.zeros((0, 0), dtype=bool)
        return Surface(box, z, z.astype(np.float32), np.zeros((0, 0, 6), np.float32))
    depth = hits["t_hit"].numpy().astype(np.float32, copy=False)
    return Surface(box, np.isfinite(depth), depth, rays.numpy() if points else None)


def feature_edges(mask: np.ndarray, depth: np.ndarray, normals: np.ndarray, prim_ids: np.ndarray,
                  depth_jump: float) -> np.ndarray:
    """Visible edges (h, w) bool from per-pixel hits: silhouette, creases and depth steps.

    An edge is drawn between two neighbouring pixels when one misses the mesh, or they hit
    different triangles whose normals differ by more than the crease angle or whose depths
    differ by more than ``depth_jump``. The nearer (or the only hit) pixel is marked.
    """
    edges = np.zeros_like(mask)
    flat_depth, flat_normals = depth.reshape(-1), normals.reshape(-1, 3)
    for axis in (0, 1):
        a = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        b = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        ma, mb = mask[a], mask[b]
        edges[a] |= ma & ~mb  # silhouette: the hit side is marked
        edges[b] |= mb & ~ma
        # Creases and depth steps: only where two different triangles meet (few pixels).
        ys, xs = np.nonzero(ma & mb & (prim_ids[a] != prim_ids[b]))
        if ys.size == 0:
            continue
        ia = ys * mask.shape[1] + xs
        ib = ia + (mask.shape[1] if axis == 0 else 1)
        crease = np.abs((flat_normals[ia] * flat_normals[ib]).sum(axis=1)) < CREASE_COS
        step = np.abs(flat_depth[ia] - flat_depth[ib]) > depth_jump
        edge = crease | step
        a_nearer = flat_depth[ia] <= flat_depth[ib]
        edges.reshape(-1)[ia[edge & a_nearer]] = True
        edges.reshape(-1)[ib[edge & ~a_nearer]] = True
    return edges


def surface_points(mesh: CadMesh, pose: Pose, pixels: np.ndarray, nthreads: int = 0) -> np.ndarray:
    """The first surface point (N, 3), world units, seen through each pixel (N, 2) at ``pose``.

    Pixels are formula coordinates (integers are pixel centres, like ``render``'s samples);
    rows whose ray misses the mesh are NaN.
    """
    import open3d as o3d

    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    k, r, t = opencv_camera(pose)
    cam = np.column_stack([pixels, np.ones(len(pixels))]) @ np.linalg.inv(k).T
    dirs = cam @ r  # camera -> world: R^T d, as rows
    origin = -r.T @ t
    rays = np.hstack([np.broadcast_to(origin, dirs.shape), dirs]).astype(np.float32)
    hits = mesh.scene.cast_rays(o3d.core.Tensor(rays), nthreads=nthreads)
    t_hit = hits["t_hit"].numpy().astype(np.float64)
    points = origin + t_hit[:, None] * dirs
    points[~np.isfinite(t_hit)] = np.nan
    return points


def closest_surface(mesh: CadMesh, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The surface point of ``mesh`` nearest to each of ``points`` (N, 3), world units, and the
    unit normal (N, 3) of the face it lies on (zero for a degenerate face)."""
    import open3d as o3d

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    found = mesh.scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
    normals = found["primitive_normals"].numpy().astype(np.float64)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    unit = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    return found["points"].numpy().astype(np.float64), unit
