"""A harder evaluation set for auto-fit (issue 11): the photographed model is never in the CAD
library the fit gets.

Each case renders one CAD model A of a category into a cluttered photo and hands the fit
another model B of the same category (category-level CAD, as in ImageNet3D):
- real ImageNet3D meshes from ../shared/imagenet3d_cad (categories with at least two models;
  never copied anywhere), and
- the project's procedural models (pose6d.demo.procedural_cad), so the set exists without ../shared.

Photos: demo_photo's backdrop plus sharp-edged clutter (lines, boxes, polygons), the object
painted by demo_photo.composite_object, an occluder in front of it in OCCLUDER_P of the cases,
sensor noise and a JPEG round trip at quality 35-80. The box is the visible object's (what a
detector gives). Initial poses imitate a pretrained model: Gaussian angle errors (median
rotation error about 7-8 deg), a 180-deg azimuth flip in FLIP_P of the cases, centre errors with
a median about 15 px and distance errors about 10 %.

    cases = make_hard_set(48, seed=0)       # list[HardCase]
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
from pathlib import Path

import numpy as np

from pose6d.cad_library import CadLibrary, CadMesh
from pose6d.camera import Pose
from pose6d.demo.dataset import mask_bbox, place, sized_pose, wrap_angle
from pose6d.demo.photo import background, composite_object, muted_colour, smooth_noise
from pose6d.demo.procedural_cad import MODELS, build_model
from pose6d.renderer import render

REPO = Path(__file__).resolve().parents[1]
SHARED_CAD = Path(os.environ.get("POSE6D_SHARED_CAD", REPO.parent / "shared" / "imagenet3d_cad"))
WIDTH, HEIGHT, VIEWPORT = 640, 480, 2000.0
HEIGHT_PX = (100.0, 320.0)
ELEVATION_DEG = (0.0, 35.0)
P_CUT = 0.1  # object pushed partly across the border
OCCLUDER_P = 0.35
FLIP_P = 0.15
ERRORS = {"azimuth_sd_deg": 5.5, "elevation_sd_deg": 4.0, "theta_sd_deg": 2.5,
          "centre_sd_frac": 0.05, "distance_log_sd": 0.10, "flip_jitter_sd_deg": 5.0}


@dataclasses.dataclass
class HardCase:
    """One object. photo (H, W, 3) uint8; gt_pose is model A's; the fit gets fit_mesh (B)."""

    key: str
    category: str
    source: str  # "real" or "procedural"
    photo: np.ndarray
    bbox: np.ndarray
    gt_pose: Pose
    initial_pose: Pose
    render_mesh: CadMesh
    fit_mesh: CadMesh
    library: dict[int, CadMesh]  # every model the tool has for the category (A excluded)
    error_kind: str  # "small" or "flip180"
    visible_fraction: float


def real_library(root: Path = SHARED_CAD) -> dict[str, dict[int, CadMesh]]:
    """Real meshes by category (only categories with two or more); {} when ../shared is absent."""
    if not Path(root).is_dir():
        return {}
    lib = CadLibrary(root)
    out = {c: {i: lib.mesh(c, i) for i in lib.indices(c)} for c in lib.categories()}
    return {c: m for c, m in out.items() if len(m) >= 2}


def procedural_library() -> dict[str, dict[int, CadMesh]]:
    """The project's procedural models as CadMesh objects (made in memory)."""
    out: dict[str, dict[int, CadMesh]] = {}
    for category, models in MODELS.items():
        for index in models:
            v, f = build_model(category, index)
            out.setdefault(category, {})[index] = CadMesh(category, index,
                                                          Path(f"<procedural>/{category}/{index}"),
                                                          v, f.astype(np.int32))
    return out


def clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Draw ``count`` sharp-edged shapes (lines, boxes, polygons) into image (H, W, 3) float32."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    for _ in range(count):
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        kind = rng.integers(3)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        size = rng.uniform(15, 0.35 * w)
        if kind == 0:
            a = rng.uniform(0, np.pi)
            draw.line([x, y, x + size * math.cos(a), y + size * math.sin(a)], fill=255,
                      width=int(rng.integers(1, 6)))
        elif kind == 1:
            draw.rectangle([x, y, x + size, y + size * rng.uniform(0.3, 1.5)], fill=255)
        else:
            pts = [(x + size * rng.uniform(-0.6, 0.6), y + size * rng.uniform(-0.6, 0.6))
                   for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=255)
        m = np.asarray(layer, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.5, 1.0)
        image *= 1 - m
        image += muted_colour(rng) * m


def occluder(rng: np.random.Generator, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Paint a textured shape covering part of ``box`` (x1, y1, x2, y2) in front of the object;
    returns its (H, W) bool mask."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    side = int(rng.integers(4))  # enters from the left, right, top or bottom
    frac = rng.uniform(0.2, 0.45)
    if side == 0:
        rect = [x1 - 0.2 * bw, y1 + rng.uniform(0, 0.5) * bh, x1 + frac * bw, y2 + 0.2 * bh]
    elif side == 1:
        rect = [x2 - frac * bw, y1 - 0.2 * bh, x2 + 0.2 * bw, y2 - rng.uniform(0, 0.5) * bh]
    elif side == 2:
        rect = [x1 + rng.uniform(0, 0.5) * bw, y1 - 0.2 * bh, x2 + 0.2 * bw, y1 + frac * bh]
    else:
        rect = [x1 - 0.2 * bw, y2 - frac * bh, x2 - rng.uniform(0, 0.5) * bw, y2 + 0.2 * bh]
    layer = Image.new("L", (w, h), 0)
    (ImageDraw.Draw(layer).ellipse if rng.random() < 0.4 else ImageDraw.Draw(layer).rectangle)(
        rect, fill=255)
    mask = np.asarray(layer) > 127
    tex = smooth_noise(rng, w, h, 12)[..., None]
    paint = muted_colour(rng) * (0.75 + 0.5 * tex)
    image[mask] = paint[mask]
    return mask


def object_colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """A colour (3,) that differs from the mean colour ``behind`` the object by >= 60 (RGB)."""
    import colorsys

    for _ in range(50):
        rgb = np.asarray(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8),
                                             rng.uniform(0.2, 0.95))) * 255.0
        if np.linalg.norm(rgb - behind) >= 60.0:
            return rgb
    return 255.0 - behind


def initial_pose(rng: np.random.Generator, gt: Pose, size: float) -> tuple[Pose, str]:
    """A model-like guess: Gaussian errors, a 180-deg flip with probability FLIP_P."""
    e = ERRORS
    flip = rng.random() < FLIP_P
    d_az, d_el, d_th, jit, d_d, d_x, d_y = rng.normal(size=7)
    az = math.radians(e["azimuth_sd_deg"] * d_az)
    if flip:
        az = math.pi + math.radians(e["flip_jitter_sd_deg"] * jit)
    sd = e["centre_sd_frac"] * size
    pose = gt.replace(azimuth=wrap_angle(gt.azimuth + az),
                      elevation=gt.elevation + math.radians(e["elevation_sd_deg"] * d_el),
                      theta=gt.theta + math.radians(e["theta_sd_deg"] * d_th),
                      distance=gt.distance * math.exp(e["distance_log_sd"] * d_d),
                      px=gt.px + sd * d_x, py=gt.py + sd * d_y)
    return pose, "flip180" if flip else "small"


def make_case(rng: np.random.Generator, key: str, category: str, source: str,
              models: dict[int, CadMesh], render_index: int | None = None,
              fit_index: int | None = None) -> HardCase:
    """One case: model A photographed, model B (another of the category) given to the fit
    (random unless render_index / fit_index say which)."""
    indices = sorted(models)
    a = int(rng.choice(indices))
    a = a if render_index is None else int(render_index)
    library = {i: m for i, m in models.items() if i != a}
    b = int(rng.choice(sorted(library)))
    b = b if fit_index is None else int(fit_index)
    mesh = models[a]
    lo, hi = ELEVATION_DEG
    view = (math.radians(rng.uniform(-180, 180)), math.radians(rng.uniform(lo, hi)),
            math.radians(float(np.clip(rng.normal(0, 3), -8, 8))))
    pose, rel = sized_pose(mesh, view, VIEWPORT, rng.uniform(*HEIGHT_PX), 0.8 * WIDTH)
    px, py = place(rng, rel, WIDTH, HEIGHT, cut=rng.random() < P_CUT)
    gt = pose.replace(px=px, py=py)
    image = background(rng, WIDTH, HEIGHT)
    clutter(rng, image, int(rng.integers(8, 25)))
    x0, y0, x1, y1 = (rel + [px, py] * 2).astype(int)
    behind = image[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)].reshape(-1, 3)
    behind = behind.mean(axis=0) if behind.size else image.mean(axis=(0, 1))
    composite_object(image, mesh, gt, object_colour(rng, behind))
    full = render(mesh, gt, WIDTH, HEIGHT).full_mask
    visible = full
    if rng.random() < OCCLUDER_P:
        visible = full & ~occluder(rng, image, mask_bbox(full))
    image = np.clip(image + rng.normal(0.0, 4.0, image.shape), 0, 255).astype(np.uint8)
    image = jpeg_round_trip(image, int(rng.integers(35, 81)))
    box = mask_bbox(visible)
    size = float(max(rel[2] - rel[0], rel[3] - rel[1]))
    init, kind = initial_pose(rng, gt, size)
    return HardCase(key, category, source, image, box, gt, init, mesh, library[b], library, kind,
                    float(visible.sum()) / max(1, int(full.sum())))


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after saving as JPEG at ``quality`` and reading it back."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def make_hard_set(count: int = 48, seed: int = 0, use_real: bool = True) -> list[HardCase]:
    """``count`` cases, alternating real categories (when ../shared exists and use_real) with
    procedural ones (one in three), each drawn from its own RNG seeded by (seed, i)."""
    real = real_library() if use_real else {}
    proc = procedural_library()
    plan = []
    for i in range(count):
        if real and i % 3 != 2:
            names = sorted(real)
            plan.append(("real", names[(i - i // 3) % len(names)]))
        else:
            names = sorted(proc)
            plan.append(("procedural", names[i % len(names)]))
    cases = []
    for i, (source, category) in enumerate(plan):
        rng = np.random.default_rng([int(seed), i])
        models = (real if source == "real" else proc)[category]
        cases.append(make_case(rng, f"{source}/{category}_{i:03d}", category, source, models))
    return cases


def make_timing_set(count: int = 12, seed: int = 1) -> list[HardCase]:
    """Cases whose fit mesh is a ~10k-triangle model (the interactive timing class): the
    procedural tall mug (9.7k triangles; photographed: another mug) and, when ../shared exists,
    the real car 03 (13.8k; photographed: car 04), alternating. 640x480 photos."""
    proc = procedural_library()["mug"]
    real = real_library().get("car", {})
    cases = []
    for i in range(count):
        rng = np.random.default_rng([int(seed), 1000 + i])
        if real and 3 in real and 4 in real and i % 2:
            models, shot, source, cat = real, 4, "real", "car"
        else:
            models, shot, source, cat = proc, 1 + i % 4 // 2, "procedural", "mug"
        cases.append(make_case(rng, f"timing/{cat}_{i:03d}", cat, source, models,
                               render_index=shot, fit_index=3))
    return cases
