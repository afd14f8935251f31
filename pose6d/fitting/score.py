"""The auto-fit's score: how well a rendered pose explains the photo (``pose6d.fitting.fit`` searches it).

The score (``score_pose``) of a pose is a number in [0, 1] a person can read:

    score = W_OUTLINE * outline + (1 - W_OUTLINE) * silhouette      (with a box)
    score = outline                                                  (no box)

- outline: the mean, over the pixels of the rendered silhouette's outline, of
  1 - min(d, tau) / tau, where d is the distance to the nearest photo edge running the same way
  (within about +-34 deg) and tau is OUTLINE_TOL of the object's size. 1: the whole outline lies
  on photo edges; 0.5: on average half tau away; 0: nowhere near an edge. Pixels where the
  outline is cut by the photo's border do not count. Interior edges of the CAD model are not
  used: a category-level mesh's creases are not the photographed object's (docs/fitting.md).
- silhouette: the IoU of the rendered silhouette with GrabCut's foreground inside the box.

``interior_agreement`` scores the edges inside the silhouette the same way (creases and depth
steps: a mug's handle in front of its body). It is not part of the score: only the photographed
model's own interior edges can be trusted, so the fit uses it only when the outline fits
(pose6d.fitting.interior: refining the rotation, choosing between alike outlines).
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.fitting.evidence import EvidenceLevel, direction_bins
from pose6d.renderer import render
from pose6d.fitting.silhouette import frame_pose, render_silhouette

OUTLINE_TOL = 0.03  # tau as a fraction of the object's size (its projected extent)
COARSE_TOL = 0.06  # a wider basin at the coarse level
W_OUTLINE = 0.5
INTERIOR_INSET = 2  # frame pixels: interior edges this far inside the outline


@dataclasses.dataclass
class Score:
    """One pose's score (see the module docstring); ``n_outline`` outline pixels were used."""

    total: float
    outline: float
    silhouette: float
    n_outline: int


def outline_pixels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, cols and normal directions (radians, modulo pi) of a window mask's outline pixels.

    Pixels on the window's edge never count (the window is clipped only at the frame border,
    where the outline is the border's, not the object's)."""
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=1)
    rows, cols = np.nonzero(m & (1 - inner))
    f = cv2.GaussianBlur(m.astype(np.float32), (5, 5), 1.0)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)[rows, cols]
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)[rows, cols]
    return rows, cols, np.mod(np.arctan2(gy, gx), np.pi)


def score_pose(level: EvidenceLevel, mesh: CadMesh, pose: Pose, size_px: float,
               tol: float = OUTLINE_TOL, nthreads: int = 1,
               scale: np.ndarray | None = None) -> Score:
    """Score (module docstring) of ``pose`` (full-photo pixels) seen through ``level``'s frame.

    size_px: the object's size in photo pixels (sets tau = tol * size). scale: the mesh
    stretched along its axes (render_silhouette)."""
    frame = level.frame
    (x0, y0, x1, y1), mask = render_silhouette(mesh, frame_pose(pose, frame), frame.width,
                                               frame.height, nthreads, scale)
    if mask.size == 0 or not mask.any():
        return Score(0.0, 0.0, 0.0 if level.foreground is not None else math.nan, 0)
    rows, cols, normal = outline_pixels(mask)
    tau = max(1.0, tol * size_px / frame.factor)
    if rows.size:
        d = level.dist[direction_bins(normal), rows + y0, cols + x0]
        outline = float(np.mean(1.0 - np.minimum(d, tau) / tau))
    else:
        outline = 0.0
    if level.foreground is None:
        return Score(outline, outline, math.nan, int(rows.size))
    inter = float(level.foreground[y0:y1, x0:x1][mask].sum())
    union = float(mask.sum()) + level.fg_total - inter
    silhouette = inter / union if union > 0 else 0.0
    return Score(W_OUTLINE * outline + (1 - W_OUTLINE) * silhouette, outline, silhouette,
                 int(rows.size))


def interior_agreement(level: EvidenceLevel, mesh: CadMesh, pose: Pose, size_px: float,
                       tol: float = OUTLINE_TOL, nthreads: int = 1) -> float:
    """How well ``mesh``'s visible edges inside its silhouette (creases and depth steps, at least
    INTERIOR_INSET frame pixels in from the outline) lie on photo edges, in [0, 1] like
    ``outline`` (any direction counts: the rendered edges carry none). 0 when the pose shows no
    interior edge. pose in full-photo pixels, seen through ``level``'s frame."""
    frame = level.frame
    r = render(mesh, frame_pose(pose, frame), frame.width, frame.height, nthreads)
    if r.mask.size == 0 or not r.mask.any():
        return 0.0
    size = 2 * INTERIOR_INSET + 1
    inner = cv2.erode(r.mask.astype(np.uint8), np.ones((size, size), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    rows, cols = np.nonzero(r.edges & (inner > 0))
    if rows.size == 0:
        return 0.0
    x0, y0 = r.box[:2]
    tau = max(1.0, tol * size_px / frame.factor)
    d = level.dist.min(axis=0)[rows + y0, cols + x0]
    return float(np.mean(1.0 - np.minimum(d, tau) / tau))
