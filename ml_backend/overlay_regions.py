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

import math

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.labeling import (EDGES_LABEL, EDGES_REGION_ID, MESH_LABEL, MESH_REGION_ID,
                             NEIGHBOUR_NUMBERS_REGION_ID, NEIGHBOURS_REGION_ID, PINS_REGION_ID,
                             mask_region)
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


NEIGHBOUR_ALPHA = 40  # the photo's other objects: a faint fill (Label Studio paints at 0.6)
PIN_DOT_PX, PIN_RING_PX = 4.0, 6.0


def pins_mask(pins: list, width: int, height: int) -> np.ndarray:
    """(H, W) bool: each pin's model point (a dot, its number up and right of it: the one
    ``pins`` and ``unpin`` use), photo point (a ring) and the line between.
    pins: [(number, (u, v) model point at the pose shown, (u, v) photo point or None)],
    pixels."""
    ys, xs = np.mgrid[0:height, 0:width]
    out = np.zeros((height, width), dtype=bool)
    scale = max(2, digit_scale(width, height) // 2)
    for number, model, photo in pins:
        out |= np.hypot(xs - model[0], ys - model[1]) <= PIN_DOT_PX
        digits = len(str(int(number)))
        out |= numbers_mask([(number, (model[0] + PIN_DOT_PX + 2 + 2 * digits * scale,
                                       model[1] - PIN_DOT_PX - 2 - 2.5 * scale))],
                            width, height, scale)
        if photo is None:
            continue
        ring = np.hypot(xs - photo[0], ys - photo[1])
        out |= (ring <= PIN_RING_PX) & (ring >= PIN_RING_PX - 1.5)
        inside = clip_segment(model, photo, width, height)
        if inside is None:
            continue
        (x0, y0), (x1, y1) = inside
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        f = np.linspace(0.0, 1.0, steps + 1)
        x, y = np.rint(x0 + f * (x1 - x0)).astype(int), np.rint(y0 + f * (y1 - y0)).astype(int)
        keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        out[y[keep], x[keep]] = True
    return thicken(out, 2)


def clip_segment(p0, p1, width: int, height: int):
    """The part of the segment p0-p1 (pixels) inside the photo [-0.5, W-0.5] x [-0.5, H-0.5]
    (Liang-Barsky), or None: a model point far off the photo (a pose with the camera almost at
    it) draws only what is on screen, in bounded time."""
    centre = ((width - 1) / 2, (height - 1) / 2)
    if math.dist(p0, centre) > math.dist(p1, centre):  # measured from the nearer end: exact
        found = clip_segment(p1, p0, width, height)     # even with the other 1e17 px away
        return None if found is None else (found[1], found[0])
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    lo, hi = 0.0, 1.0
    for p, q in ((-dx, x0 + 0.5), (dx, width - 0.5 - x0), (-dy, y0 + 0.5),
                 (dy, height - 0.5 - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        r = q / p
        if p < 0:
            lo = max(lo, r)
        else:
            hi = min(hi, r)
        if lo > hi:
            return None
    return (x0 + lo * dx, y0 + lo * dy), (x0 + hi * dx, y0 + hi * dy)


def pins_region(pins: list, width: int, height: int) -> dict:
    """The pins as one read-only brush region with a fixed id (replaced in place each time)."""
    return mask_region(PINS_REGION_ID, MESH_LABEL, pins_mask(pins, width, height), readonly=True)


def neighbours_region(neighbours: list, width: int, height: int) -> dict:
    """The photo's other objects, faintly: neighbours is [(CadMesh, Pose)]."""
    fill = np.zeros((height, width), dtype=bool)
    for mesh, pose in neighbours:
        fill |= render(mesh, pose, width, height).full_mask
    return mask_region(NEIGHBOURS_REGION_ID, EDGES_LABEL, fill, readonly=True,
                       alpha=NEIGHBOUR_ALPHA)


# A 3x5 pixel font for the pins' and the neighbours' numbers (no font files, no PIL here).
DIGITS = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "001", "001", "001"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
}


def digit_scale(width: int, height: int) -> int:
    """Pixels per font pixel: a digit 1/16 of the photo's shorter side high (>= 3 px)."""
    return max(3, round(min(width, height) / 80))


def numbers_mask(numbers: list[tuple[int, tuple[float, float]]], width: int,
                 height: int, scale: int | None = None) -> np.ndarray:
    """(H, W) bool: each number written (DIGITS, ``scale`` px per font pixel, default
    digit_scale) centred on its pixel (u, v), clipped to the photo. numbers: [(number >= 0,
    (u, v))]."""
    out = np.zeros((height, width), dtype=bool)
    s = scale or digit_scale(width, height)
    for number, (u, v) in numbers:
        text = str(int(number))
        glyphs = np.hstack([np.pad(np.array([[c == "1" for c in row] for row in DIGITS[d]]),
                                   ((0, 0), (0, 1))) for d in text])[:, :-1]
        big = np.kron(glyphs, np.ones((s, s), dtype=bool))
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        # centred on (u, v), integers being pixel centres
        x0, y0 = int(round(u - (big.shape[1] - 1) / 2)), int(round(v - (big.shape[0] - 1) / 2))
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + big.shape[1], width), min(y0 + big.shape[0], height)
        if xa < xb and ya < yb:
            out[ya:yb, xa:xb] |= big[ya - y0:yb - y0, xa - x0:xb - x0]
    return out


def neighbour_numbers_region(numbers: list[tuple[int, tuple[float, float]]], width: int,
                             height: int) -> dict:
    """The other objects' numbers (``copy N``), each at its centre, in the edges' colour."""
    return mask_region(NEIGHBOUR_NUMBERS_REGION_ID, EDGES_LABEL,
                       numbers_mask(numbers, width, height), readonly=True)
