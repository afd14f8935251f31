"""An independent transcription of the camera formula of docs/camera.md, step by step, to check pose6d.camera against.

Kept deliberately literal (and slow): it is the test's oracle, not product code.
"""
from __future__ import annotations

import numpy as np


def _rx(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _rz(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def project_reference(x, azimuth, elevation, theta, distance, px, py, viewport, focal=1.0):
    """Pixels (N, 2) of world points x (N, 3); angles in radians."""
    a, e, d = azimuth, elevation, distance
    c = np.array([d * np.cos(e) * np.sin(a), -d * np.cos(e) * np.cos(a), d * np.sin(e)])
    r = _rx(-(np.pi / 2 - e)) @ _rz(-a)
    p = np.diag([viewport * focal, viewport * focal, -1]) @ np.hstack([r, (-r @ c)[:, None]])
    xh = np.hstack([x, np.ones((len(x), 1))])
    proj = (p @ xh.T).T
    u, v = proj[:, 0] / proj[:, 2], proj[:, 1] / proj[:, 2]
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    u, v = rot @ np.vstack([u, v])
    return np.stack([u + px, -v + py], axis=1)


def _covered(uv: np.ndarray, faces: np.ndarray, width: int, height: int):
    """Per triangle i whose box meets the canvas: (i, (rows, cols) window, barycentric l1, l2,
    l3 at the window's pixel centres, inside): a centre inside or on the triangle is inside."""
    for i, tri in enumerate(uv[faces]):
        x0, y0 = np.floor(tri.min(axis=0)).astype(int)
        x1, y1 = np.ceil(tri.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if x1 < x0 or y1 < y0:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        (ax, ay), (bx, by), (cx, cy) = tri
        det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        if abs(det) < 1e-12:
            continue
        l1 = ((by - cy) * (xs - cx) + (cx - bx) * (ys - cy)) / det
        l2 = ((cy - ay) * (xs - cx) + (ax - cx) * (ys - cy)) / det
        l3 = 1 - l1 - l2
        eps = -1e-9
        inside = (l1 >= eps) & (l2 >= eps) & (l3 >= eps)
        yield i, (slice(y0, y1 + 1), slice(x0, x1 + 1)), l1, l2, l3, inside


def rasterize_reference(uv: np.ndarray, faces: np.ndarray, width: int, height: int) -> np.ndarray:
    """Union of the projected triangles sampled at pixel centres (integer coordinates): (H, W) bool.

    A pixel is inside when its centre lies inside or on a triangle (barycentric test).
    """
    mask = np.zeros((height, width), dtype=bool)
    for _, window, _, _, _, inside in _covered(uv, faces, width, height):
        mask[window] |= inside
    return mask


def reference_pixels(points: np.ndarray, pose) -> np.ndarray:
    """``project_reference`` of a pose6d Pose's fields (read as plain numbers)."""
    return project_reference(np.asarray(points, dtype=np.float64).reshape(-1, 3), pose.azimuth,
                             pose.elevation, pose.theta, pose.distance, pose.px, pose.py,
                             pose.viewport, pose.focal)


def reference_depth(points: np.ndarray, pose) -> np.ndarray:
    """Depth (N,) of world points in front of the camera: x3 of step 3 of the formula."""
    a, e, d = pose.azimuth, pose.elevation, pose.distance
    c = np.array([d * np.cos(e) * np.sin(a), -d * np.cos(e) * np.cos(a), d * np.sin(e)])
    r = _rx(-(np.pi / 2 - e)) @ _rz(-a)
    return -((np.asarray(points, dtype=np.float64).reshape(-1, 3) - c) @ r.T)[:, 2]


def reference_silhouette(vertices: np.ndarray, faces: np.ndarray, pose, width: int,
                         height: int) -> np.ndarray:
    """The mesh's silhouette at ``pose`` from the reference formula and rasteriser: (H, W) bool."""
    return rasterize_reference(reference_pixels(vertices, pose), faces, width, height)


def reference_depth_image(vertices: np.ndarray, faces: np.ndarray, pose, width: int,
                          height: int, margin: int = 0) -> np.ndarray:
    """Per-pixel z-depth (H + 2 margin, W + 2 margin) of the mesh at ``pose`` (inf: no hit).

    The same barycentric test at pixel centres as ``rasterize_reference``; the depth inside a
    triangle interpolates 1/z linearly in the image (perspective-correct), the nearest triangle
    wins. ``margin`` pixels of canvas on each side (row 0 is photo row -margin).
    """
    uv = reference_pixels(vertices, pose) + margin
    z = reference_depth(vertices, pose)[faces]
    out = np.full((height + 2 * margin, width + 2 * margin), np.inf)
    for i, window, l1, l2, l3, inside in _covered(uv, faces, *out.shape[::-1]):
        depth = 1.0 / (l1 / z[i, 0] + l2 / z[i, 1] + l3 / z[i, 2])
        view = out[window]
        view[inside] = np.minimum(view[inside], depth[inside])
    return out
