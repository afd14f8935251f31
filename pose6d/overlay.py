"""Overlays a person looks at: the shaded mesh blended over a photo, and CAD gallery thumbnails."""
from __future__ import annotations

import math

import numpy as np

from pose6d.camera import DEFAULT_VIEWPORT, Pose
from pose6d.cad_library import CadMesh
from pose6d.renderer import Render, render

MESH_COLOR = (40, 200, 255)  # light blue: visible on most photos
EDGE_COLOR = (255, 230, 0)
ALPHA = 0.55


def compose_overlay(image: np.ndarray, rendered: Render, color=MESH_COLOR, edge_color=EDGE_COLOR,
                    alpha: float = ALPHA) -> np.ndarray:
    """Blend the shaded mesh over ``image`` (H, W, 3) uint8 and draw its visible edges.

    Returns a new (H, W, 3) uint8 image; only the render window is touched.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    x0, y0, x1, y1 = rendered.box
    if x1 <= x0 or y1 <= y0:
        return out
    win = out[y0:y1, x0:x1]  # a view: writes go straight into ``out``
    m = rendered.mask
    shaded = (0.35 + 0.65 * rendered.shade[m])[:, None] * np.asarray(color, dtype=np.float32)
    win[m] = ((1.0 - alpha) * win[m] + alpha * shaded).astype(np.uint8)
    win[rendered.edges] = edge_color
    return out


def render_overlay(image: np.ndarray, mesh: CadMesh, pose: Pose, nthreads: int = 0,
                   **style) -> tuple[np.ndarray, Render]:
    """Render ``mesh`` at ``pose`` over ``image``; returns (overlay (H, W, 3) uint8, Render)."""
    h, w = image.shape[:2]
    rendered = render(mesh, pose, w, h, nthreads=nthreads)
    return compose_overlay(image, rendered, **style), rendered


def thumbnail_pose(mesh: CadMesh, size: int, azimuth_deg: float = 35.0,
                   elevation_deg: float = 20.0, viewport: float = DEFAULT_VIEWPORT) -> Pose:
    """A pose that frames the whole mesh in a size x size thumbnail."""
    radius = max(mesh.radius, 1e-6)
    distance = radius * viewport / (0.45 * size)
    distance = max(distance, 1.5 * radius)
    return Pose(math.radians(azimuth_deg), math.radians(elevation_deg), 0.0, distance,
                size / 2.0, size / 2.0, viewport)


def render_thumbnail(mesh: CadMesh, size: int = 160, color=(90, 110, 140)) -> np.ndarray:
    """A size x size RGB thumbnail of the mesh on white, shaded, with its edges drawn."""
    background = np.full((size, size, 3), 255, dtype=np.uint8)
    rendered = render(mesh, thumbnail_pose(mesh, size), size, size)
    return compose_overlay(background, rendered, color=color, edge_color=(20, 20, 30), alpha=1.0)
