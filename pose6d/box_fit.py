"""Fitting a pose's distance and centre to a box drawn around the object (rotation kept).

The projected mesh's bounding box is made to match the drawn box. A side of the drawn box that
lies on the image's border (the object is cut there) says nothing about where the object ends,
so it does not constrain the fit: the scale comes from the axes whose two sides are both inside
the image, and each remaining inside side pins its own edge.
"""
from __future__ import annotations

import math

import numpy as np

from pose6d.camera import PIXEL_CENTRE, Pose, project_points
from pose6d.errors import BadInput

BORDER_PX = 3.0  # a box side this close to the image's edge is taken to lie on it


def free_sides(box: tuple[float, float, float, float], width: int | None, height: int | None,
               border: float = BORDER_PX) -> tuple[bool, bool, bool, bool]:
    """(left, top, right, bottom): True where the box side lies on the image's border.

    box: (x1, y1, x2, y2) in the camera's pixel coordinates (integers: pixel centres), so the
    image's edges are at -0.5 and width - 0.5. Without a size, no side is on a border.
    """
    x1, y1, x2, y2 = box
    lo = -PIXEL_CENTRE + border
    return (x1 <= lo, y1 <= lo,
            width is not None and x2 >= width - PIXEL_CENTRE - border,
            height is not None and y2 >= height - PIXEL_CENTRE - border)


def fit_pose_to_box(vertices: np.ndarray, pose: Pose, box: tuple[float, float, float, float],
                    image_size: tuple[int, int] | None = None, iterations: int = 6) -> Pose:
    """Distance and centre that make the projected ``vertices`` (N, 3) span ``box`` (x1, y1, x2,
    y2, pixel coordinates), keeping the rotation; box sides on the border of an image of
    ``image_size`` (W, H) are left free (module docstring). Projected size follows 1 / distance;
    a few fixed-point steps converge. BadInput for a box too small to fit to.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise BadInput("the drawn box is too small to fit the object to")
    width, height = image_size if image_size is not None else (None, None)
    free = free_sides((x1, y1, x2, y2), width, height)
    target_lo, target_hi = np.array([x1, y1]), np.array([x2, y2])
    both = [not free[axis] and not free[axis + 2] for axis in (0, 1)]
    for _ in range(iterations):
        uv = project_points(vertices, pose)
        if np.isnan(uv).any():  # part of the mesh behind the camera: move back first
            pose = pose.replace(distance=pose.distance * 2.0)
            continue
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        if all(both):  # the box's diagonal against the mesh's: the aspect is the mesh's own
            scale = math.hypot(*(target_hi - target_lo)) / math.hypot(*(hi - lo))
        elif any(both):
            axis = both.index(True)
            scale = (target_hi[axis] - target_lo[axis]) / max(hi[axis] - lo[axis], 1e-9)
        else:
            scale = 1.0  # no axis spans the whole object: its size is unknown, keep it
        centre = np.array([pose.px, pose.py])
        lo, hi = centre + (lo - centre) * scale, centre + (hi - centre) * scale
        shift = np.zeros(2)
        for axis in (0, 1):
            lo_free, hi_free = free[axis], free[axis + 2]
            if not lo_free and not hi_free:
                shift[axis] = (target_lo[axis] + target_hi[axis] - lo[axis] - hi[axis]) / 2.0
            elif not lo_free:
                shift[axis] = target_lo[axis] - lo[axis]
            elif not hi_free:
                shift[axis] = target_hi[axis] - hi[axis]
        pose = pose.replace(distance=pose.distance / scale, px=pose.px + shift[0],
                            py=pose.py + shift[1])
    return pose
