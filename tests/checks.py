"""Small helpers the tests share: mask overlap and polling for something to happen."""
from __future__ import annotations

import time

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty (they agree)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", page=None,
             interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy, and return that; AssertionError
    after ``timeout`` s. With a Playwright ``page``, wait through it (its events are dispatched
    only while a Playwright call runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if page is not None:
            page.wait_for_timeout(interval * 1000)
        else:
            time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def decode_brush(rle: list[int], width: int, height: int) -> np.ndarray:
    """A Label Studio brush RLE decoded by Label Studio's own SDK: (H, W) bool (alpha > 0)."""
    from label_studio_sdk.converter.brush import decode_rle

    values = np.asarray(decode_rle(rle), dtype=np.uint8)
    assert values.size == width * height * 4, (values.size, width, height)
    return values.reshape(height, width, 4)[..., 3] > 0


def edges_agree_with_silhouette(edges: np.ndarray, silhouette: np.ndarray) -> tuple[float, float]:
    """How well an edges overlay (H, W) bool draws a silhouette (H, W) bool (e.g. the reference
    rasteriser's): (share of the silhouette's outline pixels the edges cover, share of the edge
    pixels that lie on the silhouette or within 2 px of it)."""
    from scipy.ndimage import binary_dilation, binary_erosion

    outline = silhouette & ~binary_erosion(silhouette)
    near = binary_dilation(silhouette, iterations=2)
    covered = float((outline & edges).sum() / max(outline.sum(), 1))
    inside = float((edges & near).sum() / max(edges.sum(), 1))
    return covered, inside
