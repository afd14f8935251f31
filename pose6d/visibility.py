"""Masks of the objects of one photo: whole silhouettes, visible parts (a z-buffer over all of
the photo's objects), 2D boxes and the counts the BOP toolkit's calc_gt_info.py reports.

Each object is ray-cast once (pose6d.renderer.render_surface) on a canvas one image size larger
on every side, as the BOP toolkit renders for truncated objects: the silhouette outside the
photo still counts in px_count_all and bbox_obj, while masks are cut to the photo.

Depths compare across objects: in the PASCAL3D+ camera every object of a photo has its own
principal point (its centre px, py) but the same image plane, and the z-depth of a pixel is the
distance along the optical axis in CAD units. A pixel of an object is visible when no other
object of the photo is nearer there (ties keep both).
"""
from __future__ import annotations

import dataclasses
from typing import Hashable, Sequence

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.renderer import Surface, render_surface

NO_BOX = [-1, -1, -1, -1]  # the BOP toolkit's box when nothing of the object is visible


@dataclasses.dataclass
class ObjectView:
    """One object of a photo (width x height).

    surface: the ray cast; surface.box = (x0, y0, x1, y1) in photo pixels, may reach outside the
    photo by up to one photo size (the truncated part) when cast with whole=True; px_count_all,
    visib_fract and gt_info's bbox_obj count the whole silhouette only then.
    amodal: (H, W) bool, the silhouette cut to the photo. visible: (H, W) bool, amodal minus
    the pixels where another object is nearer.
    """

    surface: Surface
    amodal: np.ndarray
    visible: np.ndarray

    @property
    def px_count_all(self) -> int:
        """Pixels of the whole silhouette, the part outside the photo included."""
        return int(self.surface.mask.sum())

    @property
    def px_count_visib(self) -> int:
        return int(self.visible.sum())

    @property
    def visib_fract(self) -> float:
        """px_count_visib / px_count_all (0 for an empty silhouette)."""
        return self.px_count_visib / self.px_count_all if self.px_count_all else 0.0


def object_surface(mesh: CadMesh, pose: Pose, width: int, height: int, nthreads: int = 0,
                   whole: bool = True, points: bool = True) -> Surface:
    """Ray-cast ``mesh`` at ``pose`` for a width x height photo; box in photo pixels.

    whole: the margin of one photo size on each side too (the box may then reach beyond the
    photo; px_count_all and bbox_obj count that part), else the photo only (cheaper: COCO and
    correspondences need no more). points: per-pixel model points (render_surface)."""
    if not whole:
        return render_surface(mesh, pose, width, height, nthreads, points)
    big = render_surface(mesh, pose.replace(px=pose.px + width, py=pose.py + height),
                         3 * width, 3 * height, nthreads, points)
    x0, y0, x1, y1 = big.box
    return dataclasses.replace(big, box=(x0 - width, y0 - height, x1 - width, y1 - height))


def paste(surface: Surface, values: np.ndarray, width: int, height: int, fill) -> np.ndarray:
    """The part of a cropped (h, w[, c]) array of ``surface`` inside the photo, pasted into a
    full (height, width[, c]) array filled with ``fill``."""
    out = np.full((height, width) + values.shape[2:], fill, dtype=values.dtype)
    x0, y0, x1, y1 = surface.box
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = values[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out


def photo_views(surfaces: Sequence[Surface], width: int, height: int,
                owners: Sequence[Hashable] | None = None,
                occludes: Sequence[bool] | None = None) -> list[ObjectView]:
    """Amodal and visible masks of the objects of one photo (module docstring).

    owners: per surface, the object it shows (surfaces of the same owner never hide each other:
    two annotations of one object); default all distinct. occludes: per surface, whether it can
    hide others (default all).
    """
    owners = list(range(len(surfaces))) if owners is None else list(owners)
    occludes = [True] * len(surfaces) if occludes is None else list(occludes)
    depths = [paste(s, np.where(s.mask, s.depth, np.inf).astype(np.float32), width, height,
                    np.inf) for s in surfaces]
    nearest_of: dict[Hashable, np.ndarray] = {}  # each owner's nearest depth, occluders only
    for owner, depth, occ in zip(owners, depths, occludes):
        if occ:
            prev = nearest_of.get(owner)
            nearest_of[owner] = depth if prev is None else np.minimum(prev, depth)
    views = []
    for owner, s, depth in zip(owners, surfaces, depths):
        amodal = np.isfinite(depth)
        others = [d for o, d in nearest_of.items() if o != owner]
        visible = amodal & (depth <= np.minimum.reduce(others)) if others else amodal
        views.append(ObjectView(s, amodal, visible))
    return views


def bop_bbox(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> list[int]:
    """(x, y, w, h) of a mask as the BOP toolkit's calc_2d_bbox gives it: the top-left pixel
    and w = x_max - x_min, h = y_max - y_min (no +1); NO_BOX for an empty mask. ``origin``:
    the photo pixel of mask[0, 0]."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return list(NO_BOX)
    x, y = int(xs.min()) + origin[0], int(ys.min()) + origin[1]
    return [x, y, int(xs.max() - xs.min()), int(ys.max() - ys.min())]


def coco_bbox(mask: np.ndarray) -> list[float]:
    """(x, y, w, h) of a mask as COCO (pycocotools toBbox) gives it: pixels span [x, x + 1), so
    w = x_max + 1 - x_min; [0, 0, 0, 0] for an empty mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
            float(ys.max() + 1 - ys.min())]


def gt_info(view: ObjectView) -> dict[str, object]:
    """The scene_gt_info.json entry of one object (BOP toolkit's calc_gt_info.py fields, without
    px_count_valid: there is no depth image). Boxes are NO_BOX when nothing is visible, as the
    toolkit writes them."""
    visib = view.px_count_visib
    x0, y0 = view.surface.box[:2]
    return {"bbox_obj": bop_bbox(view.surface.mask, (x0, y0)) if visib else list(NO_BOX),
            "bbox_visib": bop_bbox(view.visible),
            "px_count_all": view.px_count_all, "px_count_visib": visib,
            "visib_fract": float(view.visib_fract)}


def box_corners(vertices: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of the vertices' axis-aligned 3D box in the model frame; corner
    4 * i + 2 * j + k takes x from (min, max)[i], y from [j], z from [k]."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    lo, hi = v.min(axis=0), v.max(axis=0)
    return np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]]
                     for i in (0, 1) for j in (0, 1) for k in (0, 1)])
