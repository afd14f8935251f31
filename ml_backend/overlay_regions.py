"""The mesh overlay as Label Studio regions: a silhouette brush and a visible-edges brush, with
fixed ids so that each new overlay replaces the previous one in place, read-only.

Styles (the annotator cycles them with the ``o`` command; the default keeps the photo visible):

- ``edges``: the visible edges only (silhouette outline and creases); the object under the
  mesh stays as it is in the photo, which is what fine alignment needs.
- ``tint``: the edges over a faint fill (alpha TINT_ALPHA of the region's own opacity).
- ``solid``: the edges over an opaque fill (shows the silhouette's shape at a glance).
- ``off``: nothing drawn (both regions empty, so they still replace the previous overlay).
"""
from __future__ import annotations

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.labeling import EDGES_LABEL, EDGES_REGION_ID, MESH_LABEL, MESH_REGION_ID, mask_region
from pose6d.renderer import Render, render

OVERLAY_STYLES = ("edges", "tint", "solid", "off")
DEFAULT_STYLE = OVERLAY_STYLES[0]
# Label Studio draws a brush region at 0.6 opacity; a fill value of 64 / 255 makes that ~0.15:
# the object keeps about 85% of its contrast under the tint.
TINT_ALPHA = 64


def thicken(mask: np.ndarray, width: int) -> np.ndarray:
    """Grow a (H, W) bool mask to lines ``width`` px wide (right/down), without SciPy."""
    out = mask.copy()
    for dy in range(width):
        for dx in range(width):
            if dx or dy:
                out[dy:, dx:] |= mask[:mask.shape[0] - dy, :mask.shape[1] - dx]
    return out


def overlay_regions(mesh: CadMesh, pose: Pose, width: int, height: int, edge_width: int = 2,
                    style: str = DEFAULT_STYLE) -> tuple[list[dict], Render]:
    """Render ``mesh`` at ``pose`` and return ([mesh region, edges region], the Render).

    ValueError for an unknown ``style`` (one of OVERLAY_STYLES).
    """
    if style not in OVERLAY_STYLES:
        raise ValueError(f"unknown overlay style {style!r} (one of {', '.join(OVERLAY_STYLES)})")
    rendered = render(mesh, pose, width, height)
    edges = rendered.full_edges
    if edge_width > 1:
        edges = thicken(edges, edge_width)
    fill = rendered.full_mask if style in ("tint", "solid") else np.zeros((height, width), bool)
    if style == "off":
        edges = np.zeros_like(edges)
    # Read-only: nobody moves or erases the overlay by accident; a region returned with the same
    # id still replaces it (Label Studio 1.23.2, acceptSuggestion).
    return [mask_region(MESH_REGION_ID, MESH_LABEL, fill, readonly=True,
                        alpha=TINT_ALPHA if style == "tint" else 255),
            mask_region(EDGES_REGION_ID, EDGES_LABEL, edges, readonly=True)], rendered
