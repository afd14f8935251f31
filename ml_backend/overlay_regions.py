"""The mesh overlay as Label Studio regions: a silhouette brush and a visible-edges brush, with
fixed ids so that each new overlay replaces the previous one in place, read-only."""
from __future__ import annotations

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.labeling import EDGES_LABEL, EDGES_REGION_ID, MESH_LABEL, MESH_REGION_ID, mask_region
from pose6d.renderer import Render, render


def thicken(mask: np.ndarray, width: int) -> np.ndarray:
    """Grow a (H, W) bool mask to lines ``width`` px wide (right/down), without SciPy."""
    out = mask.copy()
    for dy in range(width):
        for dx in range(width):
            if dx or dy:
                out[dy:, dx:] |= mask[:mask.shape[0] - dy, :mask.shape[1] - dx]
    return out


def overlay_regions(mesh: CadMesh, pose: Pose, width: int, height: int,
                    edge_width: int = 2) -> tuple[list[dict], Render]:
    """Render ``mesh`` at ``pose`` and return ([mesh region, edges region], the Render)."""
    rendered = render(mesh, pose, width, height)
    edges = rendered.full_edges
    if edge_width > 1:
        edges = thicken(edges, edge_width)
    # Read-only: nobody moves or erases the overlay by accident; a region returned with the same
    # id still replaces it (Label Studio 1.23.2, acceptSuggestion).
    return [mask_region(MESH_REGION_ID, MESH_LABEL, rendered.full_mask, readonly=True),
            mask_region(EDGES_REGION_ID, EDGES_LABEL, edges, readonly=True)], rendered
