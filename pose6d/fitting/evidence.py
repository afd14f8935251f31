"""What a photo says about where an object's outline can be, computed once per photo and object
(the auto-fit's image side; ``pose6d.fitting.fit`` scores rendered poses against it).

- Oriented edges: Canny on the colour gradient (the strongest of the R, G, B gradients at each
  pixel), with the gradient direction modulo pi. Per direction bin a distance transform, so a
  rendered outline pixel looks up the distance to the nearest photo edge running its way
  (directional chamfer matching).
- Foreground: where a box is known, GrabCut seeded by the box (outside = background) gives a
  foreground mask; silhouettes are compared with it.

Everything is computed on a ``Frame``: a window of the photo around the object, shrunk by an
integer factor k so that the object is a given number of pixels across (coarse-to-fine levels).
Frame pixel c averages photo pixels x0 + k c .. x0 + k c + k - 1, so full-image pixel
coordinates (no +0.5 offset, see ``pose6d.camera``) map exactly to frame coordinates
``u_frame = (u - x0 + 0.5) / k - 0.5``; the camera is linear in viewport and px, py, so a pose
is rendered into a frame by scaling them (``pose6d.fitting.fit.frame_pose``).
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from pose6d.errors import BadInput

N_BINS = 8  # edge direction bins over [0, pi): 22.5 deg each
BLUR_SIGMA = 1.0  # frame pixels, before the gradient
EDGE_FLOOR = (20.0, 50.0)  # minimum Canny thresholds (3x3 Sobel units; a 12-level step ~ 50)
EDGE_PERCENTILE = 85.0  # the high Canny threshold adapts to the frame's gradient magnitudes
GRABCUT_SIDE = 160  # GrabCut runs on the box's window shrunk to at most this many pixels
GRABCUT_ITERS = 4
GRABCUT_SEED = 0
MIN_BOX_PX = 8.0


class EvidenceError(BadInput):
    """A photo or box that cannot be used (wrong shape or dtype, empty, not finite)."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """A window at (x0, y0) of the full photo, shrunk by ``factor``, ``width`` x ``height``."""

    x0: int
    y0: int
    factor: int
    width: int
    height: int

    @property
    def scale(self) -> float:
        """Frame pixels per photo pixel (1 / factor)."""
        return 1.0 / self.factor

    def to_frame(self, u: np.ndarray | float, v: np.ndarray | float):
        """Full-image pixel coordinates -> frame pixel coordinates (same shapes)."""
        return ((u - self.x0 + 0.5) * self.scale - 0.5, (v - self.y0 + 0.5) * self.scale - 0.5)

    def to_image(self, x: np.ndarray | float, y: np.ndarray | float):
        """Frame pixel coordinates -> full-image pixel coordinates (inverse of to_frame)."""
        return ((x + 0.5) / self.scale - 0.5 + self.x0, (y + 0.5) / self.scale - 0.5 + self.y0)


@dataclasses.dataclass
class EvidenceLevel:
    """The photo seen through one frame.

    edges: (h, w) bool Canny edges. orientation: (h, w) float32 gradient direction in [0, pi).
    dist: (N_BINS, h, w) float32: distance in frame pixels to the nearest edge whose direction is
    in the bin or its two neighbours (so within about +-34 deg). foreground: (h, w) float32 in
    [0, 1] or None (no box); fg_total: its sum.
    """

    frame: Frame
    edges: np.ndarray
    orientation: np.ndarray
    dist: np.ndarray
    foreground: np.ndarray | None
    fg_total: float


def as_photo(photo: np.ndarray) -> np.ndarray:
    """Validate a photo: (H, W, 3) or (H, W) uint8 (or float in [0, 255]); returns (H, W, 3) uint8.

    Raises EvidenceError for anything else (empty, wrong shape, not finite)."""
    arr = np.asarray(photo)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 8 or arr.shape[1] < 8:
        raise EvidenceError(f"photo must be an (H, W, 3) image of at least 8x8, got shape "
                            f"{arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise EvidenceError("photo must hold finite numbers")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def as_box(bbox, width: int, height: int) -> np.ndarray | None:
    """A box (x1, y1, x2, y2) float64 clipped to the photo, or None when it is missing.

    Raises EvidenceError for a box that is not four finite numbers or is smaller than
    MIN_BOX_PX once clipped (a degenerate box is an error, not "no box")."""
    if bbox is None:
        return None
    try:
        box = np.asarray(bbox, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise EvidenceError(f"box must be four numbers (x1, y1, x2, y2), got {bbox!r}") from None
    if not np.isfinite(box).all():
        raise EvidenceError(f"box must be finite, got {box.tolist()}")
    box = np.clip(box, 0.0, [width, height, width, height])
    if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
        raise EvidenceError(f"box {box.tolist()} is empty or smaller than {MIN_BOX_PX} px "
                            f"inside the {width}x{height} photo")
    return box


def oriented_edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canny edges (h, w) bool and gradient direction (h, w) float32 in [0, pi) of an RGB
    uint8 image, using at each pixel the colour channel with the strongest gradient."""
    blur = cv2.GaussianBlur(image, (0, 0), BLUR_SIGMA)
    dx = cv2.Sobel(blur, cv2.CV_16S, 1, 0, ksize=3)
    dy = cv2.Sobel(blur, cv2.CV_16S, 0, 1, ksize=3)
    mag2 = dx.astype(np.int32) ** 2 + dy.astype(np.int32) ** 2
    best = np.argmax(mag2, axis=2)[..., None]
    gx = np.take_along_axis(dx, best, axis=2)[..., 0]
    gy = np.take_along_axis(dy, best, axis=2)[..., 0]
    mag = np.sqrt(np.take_along_axis(mag2, best, axis=2)[..., 0].astype(np.float32))
    high = max(EDGE_FLOOR[1], float(np.percentile(mag, EDGE_PERCENTILE)))
    low = max(EDGE_FLOOR[0], 0.4 * high)
    edges = cv2.Canny(np.ascontiguousarray(gx), np.ascontiguousarray(gy), low, high,
                      L2gradient=True) > 0
    orientation = np.mod(np.arctan2(gy.astype(np.float32), gx.astype(np.float32)), np.pi)
    return edges, orientation.astype(np.float32)


def direction_bins(orientation: np.ndarray) -> np.ndarray:
    """Direction bin index (same shape, int) of angles in radians (taken modulo pi)."""
    return (np.floor(np.mod(orientation, np.pi) / (np.pi / N_BINS)).astype(np.int64)) % N_BINS


def oriented_distance(edges: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """(N_BINS, h, w) float32: per direction bin b, the distance (pixels) to the nearest edge
    pixel whose direction bin is b - 1, b or b + 1 (circular). Huge where there is none."""
    h, w = edges.shape
    bins = direction_bins(orientation)
    per_bin = np.empty((N_BINS, h, w), np.float32)
    for b in range(N_BINS):
        free = np.where(edges & (bins == b), 0, 255).astype(np.uint8)
        per_bin[b] = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out = np.minimum(per_bin, np.roll(per_bin, 1, axis=0))
    return np.minimum(out, np.roll(per_bin, -1, axis=0))


def grabcut_foreground(photo: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, tuple]:
    """GrabCut seeded by ``box`` (outside = background). Returns the foreground probability of
    the box's window (h, w) float32 in [0, 1] and that window (x0, y0, x1, y1) in photo pixels.

    Runs on the window (box plus 10 % margin) shrunk to at most GRABCUT_SIDE pixels; the result
    is resized back and slightly blurred (a soft boundary, no hard decisions at the pixel level).
    Where GrabCut fails (a box with no background around it, a flat image) the box itself is
    used as the foreground."""
    height, width = photo.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = 0.1 * (x2 - x1) + 4, 0.1 * (y2 - y1) + 4
    wx0, wy0 = int(max(0, math.floor(x1 - mx))), int(max(0, math.floor(y1 - my)))
    wx1, wy1 = int(min(width, math.ceil(x2 + mx))), int(min(height, math.ceil(y2 + my)))
    crop = photo[wy0:wy1, wx0:wx1]
    s = min(1.0, GRABCUT_SIDE / max(crop.shape[:2]))
    small = cv2.resize(crop, (max(8, round(crop.shape[1] * s)), max(8, round(crop.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]
    rect_x0, rect_y0 = int(round((x1 - wx0) * sx)), int(round((y1 - wy0) * sy))
    rect_x1 = min(small.shape[1], int(round((x2 - wx0) * sx)))
    rect_y1 = min(small.shape[0], int(round((y2 - wy0) * sy)))
    box_only = np.zeros(crop.shape[:2], np.float32)
    box_only[int(y1) - wy0:int(math.ceil(y2)) - wy0, int(x1) - wx0:int(math.ceil(x2)) - wx0] = 1
    mask = np.zeros(small.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    rect = (rect_x0, rect_y0, rect_x1 - rect_x0, rect_y1 - rect_y0)
    try:
        # GrabCut seeds its colour models with k-means on OpenCV's random generator, whose state
        # carries over between calls: seeded, the same photo always gives the same foreground.
        cv2.setRNGSeed(GRABCUT_SEED)
        cv2.grabCut(small, mask, rect, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return box_only, (wx0, wy0, wx1, wy1)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    if fg.sum() < 0.05 * max(1, rect[2] * rect[3]):  # GrabCut gave up: trust the box
        return box_only, (wx0, wy0, wx1, wy1)
    fg = cv2.resize(fg, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    fg = cv2.GaussianBlur(fg, (0, 0), 1.0)
    return np.clip(fg, 0.0, 1.0), (wx0, wy0, wx1, wy1)


class ImageEvidence:
    """A photo, an optional box and the evidence levels computed from them (cached per frame).

    photo: (H, W, 3) uint8 RGB. bbox: (x1, y1, x2, y2) pixels of the object, x2/y2 exclusive, or
    None. use_foreground: run GrabCut when there is a box.
    """

    def __init__(self, photo: np.ndarray, bbox=None, use_foreground: bool = True):
        self.photo = as_photo(photo)
        self.height, self.width = self.photo.shape[:2]
        self.bbox = as_box(bbox, self.width, self.height)
        self.use_foreground = use_foreground and self.bbox is not None
        self._fg: tuple[np.ndarray, tuple] | None = None
        self._levels: dict[Frame, EvidenceLevel] = {}
        self.blank = bool(self.photo.std() < 1.0)

    def foreground_window(self) -> tuple[np.ndarray, tuple] | None:
        """GrabCut foreground probability and its window (see grabcut_foreground), or None."""
        if not self.use_foreground:
            return None
        if self._fg is None:
            self._fg = grabcut_foreground(self.photo, self.bbox)
        return self._fg

    def frame(self, region: tuple[float, float, float, float], factor: int) -> Frame:
        """The frame over ``region`` (x0, y0, x1, y1 photo pixels, clipped to the photo) shrunk by
        the integer ``factor`` (>= 1): each frame pixel is the mean of factor x factor photo
        pixels, so the mapping is exact (the region is trimmed to a multiple of factor)."""
        factor = max(1, int(factor))
        x0 = int(max(0, math.floor(region[0])))
        y0 = int(max(0, math.floor(region[1])))
        x1 = int(min(self.width, math.ceil(region[2])))
        y1 = int(min(self.height, math.ceil(region[3])))
        if x1 - x0 < 2 * factor or y1 - y0 < 2 * factor:
            x0, y0, x1, y1 = 0, 0, self.width, self.height
        w, h = max(1, (x1 - x0) // factor), max(1, (y1 - y0) // factor)
        return Frame(x0, y0, factor, w, h)

    def level(self, frame: Frame) -> EvidenceLevel:
        """The evidence seen through ``frame`` (computed once, then cached)."""
        if frame in self._levels:
            return self._levels[frame]
        x1 = frame.x0 + frame.width * frame.factor
        y1 = frame.y0 + frame.height * frame.factor
        crop = self.photo[frame.y0:y1, frame.x0:x1]
        image = crop if frame.factor == 1 else cv2.resize(
            crop, (frame.width, frame.height), interpolation=cv2.INTER_AREA)
        edges, orientation = oriented_edges(image)
        dist = oriented_distance(edges, orientation)
        foreground, total = None, 0.0
        fgw = self.foreground_window()
        if fgw is not None:
            full = np.zeros((self.height, self.width), np.float32)
            (fx0, fy0, fx1, fy1) = fgw[1]
            full[fy0:fy1, fx0:fx1] = fgw[0]
            foreground = cv2.resize(full[frame.y0:y1, frame.x0:x1], (frame.width, frame.height),
                                    interpolation=cv2.INTER_AREA)
            total = float(foreground.sum())
        level = EvidenceLevel(frame, edges, orientation, dist, foreground, total)
        self._levels[frame] = level
        return level
