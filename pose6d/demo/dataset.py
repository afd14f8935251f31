"""A deterministic synthetic dataset in the ImageNet3D annotation-tool layout (the project's demo).

``make_demo_dataset(out, objects, seed)`` writes under ``out``::

    CAD/<category>/<NN>.off                        procedural models (car skips 03 on purpose)
    images/<category>/demo_<category>_<NNNN>.JPEG  photo-like renders on varied backgrounds
    annotations/<category>/<name>_<k>.npz          initial pose: ground truth + model-like errors
    ground_truth/<category>/<name>_<k>.npz         true pose, cad_index, object_status, dense
    demo_manifest.json                             parameters and the error injected per object

Image i draws from its own RNG seeded by (seed, i), so runs are byte-identical and asking for
more objects leaves the earlier images unchanged (except possibly the last one).
bbox = (x1, y1, x2, y2) float pixels of the visible GT mask, x2/y2 exclusive:
``mask[y1:y2, x1:x2]`` holds all of it (the mask of ``render(mesh, gt_pose, width, height)``).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pose6d.cad_library import CadLibrary, CadMesh, write_off
from pose6d.errors import Pose6DError
from pose6d.camera import Pose, project_points, wrap_angle
from pose6d.dataset import GROUND_TRUTH, INITIAL, ObjectRecord, write_record
from pose6d.inout import atomic_write_bytes, write_image
from pose6d.pose_error import pose_rotation_error
from pose6d.demo.procedural_cad import MODELS, build_model
from pose6d.labels import dense_code, quality_code
from pose6d.demo.photo import background, composite_object
from pose6d.renderer import render

GENERATOR = "pose6d.demo.dataset"
VERSION = 1
MANIFEST = "demo_manifest.json"
CATEGORIES = tuple(sorted(MODELS))
# (width, height, viewport): the ImageNet3D tool's default viewport, and PASCAL3D+'s 500x375 / 3000.
IMAGE_SIZES = ((640, 480, 2000.0), (500, 375, 3000.0))
P_SMALL_IMAGE = 0.25
ELEVATION_DEG = {"car": (0.0, 25.0), "chair": (5.0, 35.0), "dining_table": (10.0, 40.0),
                 "mug": (5.0, 50.0)}
THETA_SD_DEG = 3.0
DISTANCE_RANGE = (2.0, 30.0)  # the annotator's distance slider is 1..30
HEIGHT_PX = (80.0, 350.0)
MARGIN_PX = 6
P_DENSE, P_PARTIAL = 0.10, 0.12  # on top of a fixed schedule so small datasets have both
NOISE = {  # the "pretrained model": Gaussian errors plus gross azimuth flips and wrong CAD picks
    "azimuth_sd_deg": 4.0, "elevation_sd_deg": 3.0, "theta_sd_deg": 2.0,
    "distance_log_sd": 0.04, "centre_sd_px": 4.0,
    "p_flip180": 0.10, "p_flip90": 0.05, "flip_jitter_sd_deg": 10.0, "p_wrong_cad": 0.20,
}
PALETTES = {  # RGB: paint, wood, fabric, glaze
    "car": [(180, 30, 30), (30, 60, 150), (170, 172, 178), (35, 35, 40), (225, 225, 220),
            (40, 110, 60), (220, 180, 40)],
    "chair": [(120, 80, 45), (70, 45, 30), (30, 30, 30), (120, 120, 125), (150, 40, 40)],
    "dining_table": [(170, 125, 75), (95, 60, 40), (220, 215, 205), (40, 38, 36)],
    "mug": [(235, 235, 230), (190, 40, 40), (40, 90, 170), (230, 190, 50), (40, 40, 40)]}


class DemoDatasetError(Pose6DError):
    """The output folder cannot be used (not a folder, or not empty and not a demo dataset)."""


# --- CAD ---------------------------------------------------------------------------------------

def write_demo_cad(cad_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Write every procedural model as ``cad_root/<category>/<NN>.off``; returns the catalogue."""
    catalogue: dict[str, list[dict[str, Any]]] = {}
    for category in CATEGORIES:
        for index, (subtype, _) in sorted(MODELS[category].items()):
            v, f = build_model(category, index)
            write_off(cad_root / category / f"{index:02d}.off", v, f)
            catalogue.setdefault(category, []).append(
                {"cad_index": index, "subtype": subtype, "file": f"CAD/{category}/{index:02d}.off",
                 "vertices": int(len(v)), "triangles": int(len(f))})
    return catalogue


# --- Poses -------------------------------------------------------------------------------------

def relative_box(mesh: CadMesh, pose: Pose) -> np.ndarray:
    """Projected vertex extent (x0, y0, x1, y1) relative to the object centre (px, py), pixels."""
    uv = project_points(mesh.vertices, pose.replace(px=0.0, py=0.0))
    return np.concatenate([uv.min(axis=0), uv.max(axis=0)])


def sample_view(rng: np.random.Generator, category: str) -> tuple[float, float, float]:
    """(azimuth, elevation, theta) radians: any azimuth, category elevations, small roll."""
    lo, hi = ELEVATION_DEG[category]
    theta = float(np.clip(rng.normal(0.0, THETA_SD_DEG), -10.0, 10.0))
    return (math.radians(rng.uniform(-180.0, 180.0)), math.radians(rng.uniform(lo, hi)),
            math.radians(theta))


def sized_pose(mesh: CadMesh, view: tuple[float, float, float], viewport: float,
               target_height: float, max_width: float) -> tuple[Pose, np.ndarray]:
    """Pose (centre at 0, 0) whose projection is ``target_height`` px tall and at most
    ``max_width`` px wide, distance kept in DISTANCE_RANGE; also its relative_box."""
    probe = Pose(*view, 10.0, 0.0, 0.0, viewport)
    x0, y0, x1, y1 = relative_box(mesh, probe)
    scale = min(target_height / (y1 - y0), max_width / (x1 - x0))
    pose = probe.replace(distance=float(np.clip(10.0 / scale, *DISTANCE_RANGE)))
    return pose, relative_box(mesh, pose)


def place_inside(rng: np.random.Generator, lo: float, hi: float, size: int) -> float:
    """A centre coordinate keeping the extent [c + lo, c + hi] inside [MARGIN, size - MARGIN]."""
    a, b = MARGIN_PX - lo, size - MARGIN_PX - hi
    return float(rng.uniform(a, b)) if b > a else (size - lo - hi) / 2.0


def place(rng: np.random.Generator, rel: np.ndarray, width: int, height: int,
          cut: bool = False) -> tuple[float, float]:
    """Centre (px, py) keeping the object inside the image, or (``cut``) pushing 20-45 % of its
    extent across one random border."""
    side, frac = int(rng.integers(4)), float(rng.uniform(0.2, 0.45))
    c = [place_inside(rng, rel[0], rel[2], width), place_inside(rng, rel[1], rel[3], height)]
    if cut:
        axis, far = divmod(side, 2)  # left, right, top, bottom
        lo, hi, size = rel[axis], rel[axis + 2], (width, height)[axis]
        c[axis] = size - hi + frac * (hi - lo) if far else -lo - frac * (hi - lo)
    return c[0], c[1]


def perturb(rng: np.random.Generator, gt: Pose, cad_index: int,
            indices: list[int]) -> tuple[Pose, int, str]:
    """A pretrained model's guess: small Gaussian errors, sometimes an azimuth flip near 180 or
    90 degrees, sometimes another CAD model. Returns (pose, cad_index, error kind).
    The same number of draws happens on every path, so later draws do not depend on branches."""
    n = NOISE
    u, side, wrong_u, other = rng.random(), rng.choice([-1.0, 1.0]), rng.random(), rng.random()
    d_az, d_el, d_th, jitter, d_dist, d_px, d_py = rng.normal(size=7)
    az = math.radians(n["azimuth_sd_deg"] * d_az)
    kind = "small"
    if u < n["p_flip180"]:
        kind, az = "flip180", math.pi + math.radians(n["flip_jitter_sd_deg"] * jitter)
    elif u < n["p_flip180"] + n["p_flip90"]:
        kind, az = "flip90", side * math.pi / 2 + math.radians(n["flip_jitter_sd_deg"] * jitter)
    pose = gt.replace(
        azimuth=wrap_angle(gt.azimuth + az),
        elevation=float(np.clip(gt.elevation + math.radians(n["elevation_sd_deg"] * d_el),
                                -math.radians(89), math.radians(89))),
        theta=wrap_angle(gt.theta + math.radians(n["theta_sd_deg"] * d_th)),
        distance=gt.distance * math.exp(n["distance_log_sd"] * d_dist),
        px=gt.px + n["centre_sd_px"] * d_px, py=gt.py + n["centre_sd_px"] * d_py)
    others = [i for i in indices if i != cad_index]
    if others and wrong_u < n["p_wrong_cad"]:
        cad_index = others[int(other * len(others))]
    return pose, cad_index, kind


def mask_bbox(mask: np.ndarray) -> np.ndarray | None:
    """(x1, y1, x2, y2) float64 of a full-image bool mask, x2/y2 exclusive; None when empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def full_area(mesh: CadMesh, pose: Pose) -> int:
    """Mask pixel count of the whole object, including parts outside any image."""
    x0, y0, x1, y1 = relative_box(mesh, pose)
    ox, oy = math.floor(x0) - 2, math.floor(y0) - 2  # integer shift keeps the sample grid
    w, h = int(math.ceil(x1)) - ox + 3, int(math.ceil(y1)) - oy + 3
    return int(render(mesh, pose.replace(px=-ox, py=-oy), w, h).mask.sum())


# --- Pixels ------------------------------------------------------------------------------------

def pick_colour(rng: np.random.Generator, category: str, behind: np.ndarray) -> np.ndarray:
    """A palette colour (3,) float that stands out from the mean colour ``behind`` the object."""
    pal = np.asarray(PALETTES[category], dtype=np.float64)
    far = np.flatnonzero(np.linalg.norm(0.8 * pal - behind, axis=1) >= 90.0)
    choice = far[rng.integers(len(far))] if far.size else int(np.argmax(
        np.linalg.norm(pal - behind, axis=1)))
    return pal[choice] * rng.uniform(0.9, 1.1, 3)


# --- One image ---------------------------------------------------------------------------------

def plan_objects(rng: np.random.Generator, library: CadLibrary, category: str, width: int,
                 height: int, viewport: float, count: int, cut: bool) -> list[tuple[int, Pose]]:
    """Ground-truth (cad_index, pose) for ``count`` (1 or 2) objects of one image.

    Two objects stand side by side with a small gap (a dense scene) and never overlap; a single
    object may be pushed across the border (``cut``)."""
    indices = library.indices(category)
    objs = []
    for _ in range(count):
        cad = int(rng.choice(indices))
        mesh = library.mesh(category, cad)
        hi = min(HEIGHT_PX[1], (0.85 if count == 1 else 0.6) * height)
        target = rng.uniform(HEIGHT_PX[0], hi)
        pose, rel = sized_pose(mesh, sample_view(rng, category), viewport, target,
                               (0.85 if count == 1 else 0.42) * width)
        objs.append((cad, pose, rel))
    if count == 1:
        cad, pose, rel = objs[0]
        px, py = place(rng, rel, width, height, cut)
        return [(cad, pose.replace(px=px, py=py))]
    gap = rng.uniform(4.0, 30.0)
    widths = [rel[2] - rel[0] for _, _, rel in objs]
    x = place_inside(rng, 0.0, sum(widths) + gap, width)
    out = []
    for (cad, pose, rel), w in zip(objs, widths):
        py = place_inside(rng, rel[1], rel[3], height)
        out.append((cad, pose.replace(px=x - rel[0], py=py)))
        x += w + gap
    return out


def make_image(rng: np.random.Generator, index: int, library: CadLibrary,
               remaining: int) -> tuple[str, str, np.ndarray, list[dict[str, Any]]]:
    """Build image ``index``: returns (category, name, (H, W, 3) uint8 image, per-object dicts
    with gt/initial records and a summary)."""
    category = CATEGORIES[index % len(CATEGORIES)]
    name = f"demo_{category}_{index + 1:04d}"
    width, height, viewport = IMAGE_SIZES[int(rng.random() < P_SMALL_IMAGE)]
    dense = remaining >= 2 and (index % 6 == 3 or rng.random() < P_DENSE)
    cut = not dense and (index % 5 == 1 or rng.random() < P_PARTIAL)
    planned = plan_objects(rng, library, category, width, height, viewport, 2 if dense else 1, cut)
    image = background(rng, width, height)
    for cad, pose in sorted(planned, key=lambda o: -o[1].distance):  # far to near
        mesh = library.mesh(category, cad)
        x0, y0, x1, y1 = (relative_box(mesh, pose) + [pose.px, pose.py] * 2).astype(int)
        behind = image[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)].reshape(-1, 3)
        behind = behind.mean(axis=0) if behind.size else image.mean(axis=(0, 1))
        composite_object(image, mesh, pose, pick_colour(rng, category, behind))
    masks = [render(library.mesh(category, cad), pose, width, height).full_mask
             for cad, pose in planned]
    image = np.clip(image + rng.normal(0.0, 2.5, image.shape), 0, 255).astype(np.uint8)
    objects = []
    for k, (cad, pose) in enumerate(planned):
        nearer = [m for (c, p), m in zip(planned, masks) if p.distance < pose.distance]
        visible = masks[k] & ~np.any(nearer, axis=0) if nearer else masks[k]
        fraction = float(visible.sum()) / max(full_area(library.mesh(category, cad), pose), 1)
        # "good" means more than 90% visible (pose6d.labels); cut objects are partially visible.
        status = quality_code("good" if fraction >= 0.9 else "partially visible")
        extra = {"bbox": mask_bbox(visible), "width": width, "height": height, "class": category}
        gt = ObjectRecord(pose, cad, dict(extra, object_status=status,
                                           dense=dense_code("yes" if dense else "no")))
        init_pose, init_cad, kind = perturb(rng, pose, cad, library.indices(category))
        objects.append({"k": k, "gt": gt, "initial": ObjectRecord(init_pose, init_cad, extra),
                        "summary": _summary(category, name, k, gt, init_pose, init_cad, kind,
                                            fraction)})
    return category, name, image, objects


def _summary(category: str, name: str, k: int, gt: ObjectRecord, init: Pose, init_cad: int,
             kind: str, fraction: float) -> dict[str, Any]:
    p, d = gt.pose, init
    return {
        "key": f"{category}/{name}_{k}", "cad_index": gt.cad_index, "initial_cad_index": init_cad,
        "subtype": MODELS[category][gt.cad_index][0], "error_kind": kind,
        "azimuth_error_deg": round(math.degrees(wrap_angle(d.azimuth - p.azimuth)), 3),
        "elevation_error_deg": round(math.degrees(d.elevation - p.elevation), 3),
        "theta_error_deg": round(math.degrees(wrap_angle(d.theta - p.theta)), 3),
        "rotation_error_deg": round(math.degrees(pose_rotation_error(p, d)), 3),
        "distance_rel_error": round(d.distance / p.distance - 1.0, 4),
        "centre_error_px": round(math.hypot(d.px - p.px, d.py - p.py), 2),
        "visible_fraction": round(fraction, 4), "object_status": gt.extra["object_status"],
        "dense": gt.extra["dense"],
    }


# --- The whole dataset -------------------------------------------------------------------------

def check_output_dir(out: Path, force: bool = False) -> dict[str, Any] | None:
    """Refuse a non-empty ``out`` that is not a demo dataset (unless ``force``).

    Returns the previous demo manifest when ``out`` holds one (its stale files are replaced)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DemoDatasetError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return None
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("generator") == GENERATOR:
            return manifest
    except (OSError, ValueError, AttributeError):
        pass
    if force:
        return None
    raise DemoDatasetError(f"{out} is not empty and is not a demo dataset (no valid "
                           f"{MANIFEST}); use force=True (--force) to write into it anyway")


def make_demo_dataset(out: Path, objects: int = 40, seed: int = 0, progress: bool = True,
                      force: bool = False) -> dict[str, Any]:
    """Write the demo dataset (see the module docstring) and return its manifest.

    objects: number of annotated objects (>= 1); seed: any non-negative int; progress: tqdm bar
    on stderr; force: write into a non-empty folder that is not a demo dataset.
    """
    from tqdm import tqdm

    if int(objects) < 1 or int(seed) < 0:
        raise ValueError("objects must be >= 1 and seed >= 0")
    out = Path(out)
    previous = check_output_dir(out, force)
    catalogue = write_demo_cad(out / "CAD")
    library = CadLibrary(out / "CAD")
    summaries: list[dict[str, Any]] = []
    written: set[str] = set()
    index = 0
    with tqdm(total=objects, desc="demo dataset", unit="obj", file=sys.stderr,
              disable=not progress) as bar:
        while len(summaries) < objects:
            rng = np.random.default_rng([int(seed), index])
            category, name, image, objs = make_image(rng, index, library, objects - len(summaries))
            image_rel = f"images/{category}/{name}.JPEG"
            write_image(out / image_rel, image, quality=90)
            written.add(image_rel)
            for obj in objs:
                for kind, record in ((INITIAL, obj["initial"]), (GROUND_TRUTH, obj["gt"])):
                    rel = f"{kind}/{category}/{name}_{obj['k']}.npz"
                    write_record(out / rel, record)
                    written.add(rel)
                summaries.append(dict(obj["summary"], image=image_rel))
            bar.update(len(objs))
            index += 1
    if previous:
        _remove_stale(out, previous, written)
    manifest = {
        "generator": GENERATOR, "version": VERSION, "seed": int(seed), "objects": len(summaries),
        "images": index, "categories": catalogue, "noise_model": NOISE,
        "image_sizes": IMAGE_SIZES, "elevation_range_deg": ELEVATION_DEG,
        "distance_range": DISTANCE_RANGE, "height_range_px": HEIGHT_PX,
        "bbox": "x1, y1, x2, y2 of the visible GT mask, x2/y2 exclusive",
        "objects_summary": summaries}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(out / MANIFEST, text.encode("utf-8"))
    return manifest


def _remove_stale(out: Path, previous: dict[str, Any], written: set[str]) -> None:
    """Delete files a previous demo run made that this run did not rewrite (never user labels)."""
    for obj in previous.get("objects_summary", []):
        category, stem = str(obj.get("key", "/")).split("/", 1)
        stale = [str(obj.get("image", ""))] + [f"{kind}/{category}/{stem}.npz"
                                               for kind in (INITIAL, GROUND_TRUTH)]
        for rel in stale:
            if rel and rel not in written and ".." not in rel:
                (out / rel).unlink(missing_ok=True)
