"""Export labels to the BOP format (https://github.com/thodan/bop_toolkit, docs/bop_datasets_format.md).

Layout written under ``out``::

    README.md              this description
    obj_id_map.json        [{"obj_id", "category", "cad_index", "model"}]: every CAD model of the
                           dataset, ids 1.. in (category, cad_index) order (stable across exports)
    scenes.json            [{"scene_id", "category"}]: ONE BOP SCENE PER CATEGORY
    models/obj_NNNNNN.ply  the CAD meshes in millimetres (binary PLY, float64 x y z, triangles)
    models/models_info.json {obj_id: {diameter, min_x, min_y, min_z, size_x, size_y, size_z}} (mm)
    <split>/<scene_id:06d>/scene_gt.json      {im_id: [{cam_R_m2c, cam_t_m2c, obj_id}]}
    <split>/<scene_id:06d>/scene_camera.json  {im_id: {cam_K, depth_scale}}
    <split>/<scene_id:06d>/image_map.json     {im_id: {object_key, image, width, height,
                                              annotator, ls_annotation_id, object_status, dense}}
    <split>/<scene_id:06d>/rgb/NNNNNN.<ext>   the photo (symlink, copy, or absent: --bop-images)
    <split>/<scene_id:06d>/mask/NNNNNN_000000.png       the object's silhouette in the photo
    <split>/<scene_id:06d>/mask_visib/NNNNNN_000000.png its visible part (see below)
    <split>/<scene_id:06d>/scene_gt_info.json {im_id: [{bbox_obj, bbox_visib, px_count_all,
                                              px_count_visib, visib_fract}]}
    <split>/<scene_id:06d>/scene_gt_coco.json the visible masks as COCO annotations (see below)
    left_out.json          objects not in scene_gt (skipped, or "bad quality - no object")

Units: 1 CAD unit = ``mm_per_unit`` millimetres (default 1000: ImageNet3D meshes are about one
unit across, taken as one metre). cam_t_m2c and the models are scaled alike, so the projection
does not depend on this choice. cam_R_m2c is row-major, model to OpenCV camera.

ONE BOP IMAGE PER OBJECT: BOP has one cam_K per image, but the PASCAL3D+ camera puts the
principal point at each object's own centre (px, py), and no shared K reproduces two objects
exactly. So each object (each annotation with --all-annotations) is its own im_id with its own
cam_K; image_map.json says which photo and object it is, and rgb/ links the same photo again.
R, t, K come from pose6d.camera.opencv_camera: K (R X + t) projects exactly as our camera.

MASKS (--no-bop-masks leaves them, scene_gt_info.json and scene_gt_coco.json out): as the BOP
toolkit's calc_gt_masks.py / calc_gt_info.py / calc_gt_coco.py write them. Masks are 8-bit PNGs
of the photo's size, 255 on the object, 0 elsewhere, named IMID_GTID.png (GTID 000000: one
object per BOP image). mask: the rendered silhouette cut to the photo; mask_visib: its pixels
where no other labelled object of the same photo is nearer (a z-buffer over the photo's usable
labels; there is no depth image).
scene_gt_info: px_count_all counts the silhouette's pixels outside the photo too (rendered on
a canvas one photo size larger on each side, as the toolkit does); bbox_obj (of that whole
silhouette, so it may start at negative x, y) and bbox_visib (of mask_visib) are (x, y, w, h)
with w = x_max - x_min, h = y_max - y_min (the toolkit's calc_2d_bbox), both [-1, -1, -1, -1]
when no pixel is visible; visib_fract = px_count_visib / px_count_all. px_count_valid (pixels
with a depth measurement) is not written: there are no depth images. scene_gt_coco.json (as
calc_gt_coco.py with its default amodal boxes, every image): images {id = im_id, file_name =
rgb/NNNNNN.<ext> relative to the scene folder, width, height}; per object with a visible pixel an
annotation {id 1.. in im_id order, image_id, category_id = obj_id, iscrowd 0, area = visible
pixels, bbox = (x, y, w, h) of mask with w = x_max - x_min + 1, segmentation = mask_visib as
uncompressed RLE {counts, size}, width, height, ignore = visib_fract < 0.1}; categories: every
obj_id. Dates are left empty so that an export of the same labels is the same bytes.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ls_admin.export_source import ExportError, ExportSummary, Label, staged_output
from pose6d.cad_library import CadError, CadLibrary
from pose6d.camera import Pose, opencv_camera
from pose6d.coco_rle import run_counts
from pose6d.dataset import Dataset
from pose6d.errors import DataError
from pose6d.inout import atomic_write_bytes

README = __doc__
DEFAULT_MM_PER_UNIT = 1000.0
IMAGE_MODES = ("link", "copy", "none")


def bop_pose(pose: Pose, mm_per_unit: float = DEFAULT_MM_PER_UNIT
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cam_K 3x3 px, cam_R_m2c 3x3, cam_t_m2c (3,) mm) of one object: OpenCV camera, t scaled."""
    k, r, t = opencv_camera(pose)
    return k, r, t * mm_per_unit


def obj_id_map(cad: CadLibrary) -> dict[tuple[str, int], int]:
    """{(category, cad_index): obj_id} for every model of the library, ids 1.. in sorted order."""
    pairs = [(c, i) for c in cad.categories() for i in cad.indices(c)]
    return {pair: n for n, pair in enumerate(pairs, start=1)}


def ply_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """A binary little-endian PLY: vertices (N, 3) float64 (double keeps 1e-6 px exactness after
    the mm scale), faces (M, 3) as uchar-counted int lists."""
    v = np.ascontiguousarray(vertices, dtype="<f8")
    f = np.asarray(faces, dtype=np.int64)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment pose6d export (units: mm)\n"
              f"element vertex {len(v)}\nproperty double x\nproperty double y\nproperty double z\n"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    tri = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    tri["n"], tri["i"] = 3, f
    return header.encode("ascii") + v.tobytes() + tri.tobytes()


def model_info(vertices: np.ndarray) -> dict[str, float]:
    """BOP models_info entry of vertices (N, 3) in mm: diameter (largest vertex distance), min_*,
    size_* (bounding box)."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, size = v.min(axis=0), np.ptp(v, axis=0)
    return {"diameter": points_diameter(v), "min_x": float(lo[0]), "min_y": float(lo[1]),
            "min_z": float(lo[2]), "size_x": float(size[0]), "size_y": float(size[1]),
            "size_z": float(size[2])}


def points_diameter(points: np.ndarray) -> float:
    """Largest distance between two of the points (N, 3); on the convex hull, as it lies there."""
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    pts = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    try:
        pts = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):  # flat or tiny meshes: all points
        pass
    return float(pdist(pts).max()) if len(pts) > 1 else 0.0


def export_models(cad: CadLibrary, models_dir: Path, mm_per_unit: float,
                  progress: bool = True) -> dict[tuple[str, int], int]:
    """Write every CAD model as models/obj_NNNNNN.ply (mm) plus models_info.json; returns ids."""
    from tqdm import tqdm

    ids = obj_id_map(cad)
    info: dict[str, Any] = {}
    for (category, index), obj_id in tqdm(ids.items(), desc="models", unit="model",
                                          disable=not progress):
        try:
            mesh = cad.mesh(category, index)
        except CadError as exc:
            raise ExportError(str(exc)) from None
        vertices = mesh.vertices * mm_per_unit
        atomic_write_bytes(models_dir / f"obj_{obj_id:06d}.ply", ply_bytes(vertices, mesh.faces))
        info[str(obj_id)] = model_info(vertices)
    _write_json(models_dir / "models_info.json", info)
    return ids


def _write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=1) + "\n").encode())


def _place_image(src: Path, dst: Path, mode: str) -> None:
    if mode == "link":
        os.symlink(src.resolve(), dst)
    elif mode == "copy":
        shutil.copyfile(src, dst)


def scene_files(labels: list[Label], ids: dict[tuple[str, int], int], mm_per_unit: float
                ) -> tuple[dict, dict, dict]:
    """(scene_gt, scene_camera, image_map) of one scene's labels, im_id = 1.. in label order."""
    gt, cam, imap = {}, {}, {}
    for im_id, lab in enumerate(labels, start=1):
        k, r, t = bop_pose(lab.record.pose, mm_per_unit)
        obj_id = ids.get((lab.key.category, int(lab.record.cad_index)))
        if obj_id is None:
            raise ExportError(f"{lab.key}: CAD model {lab.record.cad_index} is not in CAD/")
        gt[str(im_id)] = [{"cam_R_m2c": r.reshape(-1).tolist(), "cam_t_m2c": t.tolist(),
                           "obj_id": obj_id}]
        cam[str(im_id)] = {"cam_K": k.reshape(-1).tolist(), "depth_scale": 1.0}
        extra = lab.record.extra
        imap[str(im_id)] = {"object_key": str(lab.key), "image": lab.key.name,
                            "width": extra.get("width"), "height": extra.get("height"),
                            "annotator": lab.annotator, "ls_annotation_id": lab.annotation_id,
                            "object_status": lab.object_status, "dense": lab.dense}
    return gt, cam, imap


def im_id_name(im_id: str, photo: Path | None) -> str:
    """rgb/'s file name of a BOP image: NNNNNN plus the photo's extension (.jpeg as .jpg;
    .jpg when the photo is missing)."""
    ext = photo.suffix.lower() if photo is not None else ".jpg"
    return f"{int(im_id):06d}" + (".jpg" if ext == ".jpeg" else ext)


def mask_png(mask: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a (H, W) bool mask: 255 on, 0 off (the toolkit's masks);
    zlib level 1 (masks are mostly runs: higher levels cost time and save little)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, "PNG", compress_level=1)  # mode L
    return buf.getvalue()


def coco_mask_fields(view) -> dict[str, Any] | None:
    """What scene_gt_coco.json says of one object (a visibility.ObjectView), from its masks
    (module docstring): None when no pixel is visible (the toolkit writes no annotation)."""
    from pose6d.visibility import coco_bbox

    if not view.px_count_visib or not view.amodal.any():
        return None
    height, width = view.visible.shape
    return {"iscrowd": 0, "area": int(view.px_count_visib),
            "bbox": [int(v) for v in coco_bbox(view.amodal)],
            "segmentation": {"counts": run_counts(view.visible).tolist(),
                             "size": [int(height), int(width)]},
            "width": int(width), "height": int(height),
            "ignore": bool(view.visib_fract < 0.1)}


def scene_gt_coco(gt: dict, images: dict[str, dict], masks: dict[str, dict | None],
                  ids: dict[tuple[str, int], int], split: str) -> dict[str, Any]:
    """One scene's scene_gt_coco.json: ``gt`` its scene_gt, ``images`` {im_id: {file_name,
    width, height}}, ``masks`` {im_id: coco_mask_fields}, ``ids`` the obj_id map."""
    out = {"info": {"description": f"pose6d_{split}", "version": "0.1.0", "year": "",
                    "url": "https://github.com/thodan/bop_toolkit",
                    "contributor": "pose6d-export", "date_created": ""},
           "licenses": [], "images": [], "annotations": [],
           "categories": [{"id": n, "name": str(n), "supercategory": c}
                          for (c, _), n in sorted(ids.items(), key=lambda kv: kv[1])]}
    for im_id in sorted(gt, key=int):
        out["images"].append(dict(images[im_id], id=int(im_id), date_captured="", license=1,
                                  coco_url="", flickr_url=""))
        for entry in gt[im_id]:  # one object per BOP image here
            fields = masks.get(im_id)
            if fields is not None:
                out["annotations"].append(dict(fields, id=len(out["annotations"]) + 1,
                                               image_id=int(im_id),
                                               category_id=entry["obj_id"]))
    return out


def write_masks(labels: list[Label], dataset: Dataset, places: dict[int, tuple[Path, int]],
                workers: int, progress: bool
                ) -> tuple[dict[Path, dict[str, list]], dict[Path, dict[str, dict | None]]]:
    """mask/ and mask_visib/ PNGs of every label (placed at places[id(label)] = (scene folder,
    im_id)); returns each scene folder's scene_gt_info and its objects' coco_mask_fields."""
    from ls_admin.export_views import render_photos
    from pose6d.visibility import gt_info

    def write(photo) -> list[tuple[Path, str, dict[str, Any], dict | None]]:
        """Write the photo's masks; per object (scene folder, im_id, its gt_info, its COCO
        fields)."""
        done = []
        for lab, view in zip(photo.labels, photo.views):
            folder, im_id = places[id(lab)]
            png = mask_png(view.amodal)
            same = view.px_count_visib == int(view.amodal.sum())  # nothing hidden: one encoding
            for sub, data in (("mask", png), ("mask_visib", png if same else
                                              mask_png(view.visible))):
                # plain writes: the staging folder's rename publishes the export as a whole
                (folder / sub).mkdir(parents=True, exist_ok=True)
                (folder / sub / f"{im_id:06d}_{0:06d}.png").write_bytes(data)
            done.append((folder, str(im_id), gt_info(view), coco_mask_fields(view)))
        return done

    infos: dict[Path, dict[str, list]] = defaultdict(dict)
    cocos: dict[Path, dict[str, dict | None]] = defaultdict(dict)
    for objects in render_photos(labels, dataset, write, workers, progress, desc="bop masks",
                                 whole=True):
        for folder, im_id, info, coco in objects:
            infos[folder][im_id] = [info]
            cocos[folder][im_id] = coco
    return infos, cocos


def export_bop(labels: list[Label], dataset: Dataset, out: Path, split: str = "train",
               mm_per_unit: float = DEFAULT_MM_PER_UNIT, images: str = "link",
               overwrite: bool = False, progress: bool = True, masks: bool = True,
               workers: int = 2) -> ExportSummary:
    """Write the BOP folder (module docstring) under ``out``; returns the summary."""
    from tqdm import tqdm

    if images not in IMAGE_MODES:
        raise ExportError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    if not mm_per_unit > 0:
        raise ExportError(f"mm per CAD unit must be > 0, got {mm_per_unit}")
    kept = [l for l in labels if l.usable]
    left_out = [{"object_key": str(l.key), "annotator": l.annotator,
                 "reason": "skipped" if l.skipped else l.object_status}
                for l in labels if not l.usable]
    by_category: dict[str, list[Label]] = defaultdict(list)
    for lab in kept:
        by_category[lab.key.category].append(lab)
    summary = ExportSummary(objects=len(kept), skipped=sum(l.skipped for l in labels),
                            bad=sum(not l.skipped and not l.usable for l in labels),
                            left_out=len(left_out))
    missing = 0
    with staged_output(out, overwrite) as stage:
        ids = export_models(dataset.cad, stage / "models", mm_per_unit, progress)
        _write_json(stage / "obj_id_map.json", [
            {"obj_id": n, "category": c, "cad_index": i, "model": f"models/obj_{n:06d}.ply"}
            for (c, i), n in ids.items()])
        scenes = [{"scene_id": n, "category": c} for n, c in enumerate(sorted(by_category), 1)]
        places = {id(lab): (stage / split / f"{scene['scene_id']:06d}", im_id)
                  for scene in scenes
                  for im_id, lab in enumerate(by_category[scene["category"]], start=1)}
        cocos: dict[Path, dict[str, dict | None]] = {}
        if masks:
            infos, cocos = write_masks(kept, dataset, places, workers, progress)
            for folder, info in infos.items():
                _write_json(folder / "scene_gt_info.json",
                            {k: info[k] for k in sorted(info, key=int)})
                summary.files += 1 + 2 * len(info)
        for scene in tqdm(scenes, desc="bop scenes", unit="scene", disable=not progress):
            folder = stage / split / f"{scene['scene_id']:06d}"
            items = by_category[scene["category"]]
            gt, cam, imap = scene_files(items, ids, mm_per_unit)
            for name, value in (("scene_gt", gt), ("scene_camera", cam), ("image_map", imap)):
                _write_json(folder / f"{name}.json", value)
            summary.files += 3
            rgb = {}  # im_id -> the photo, or None when it cannot be found
            for im_id, lab in enumerate(items, start=1):
                try:
                    rgb[str(im_id)] = dataset.image_path(lab.key)
                except DataError:
                    rgb[str(im_id)] = None
            if folder in cocos:
                files = {im_id: {"file_name": f"rgb/{im_id_name(im_id, src)}",
                                 "width": imap[im_id]["width"], "height": imap[im_id]["height"]}
                         for im_id, src in rgb.items()}
                _write_json(folder / "scene_gt_coco.json",
                            scene_gt_coco(gt, files, cocos[folder], ids, split))
                summary.files += 1
            if images == "none":
                continue
            (folder / "rgb").mkdir(parents=True, exist_ok=True)
            for im_id, src in rgb.items():
                if src is None:
                    missing += 1
                    continue
                _place_image(src, folder / "rgb" / im_id_name(im_id, src), images)
        _write_json(stage / "scenes.json", scenes)
        _write_json(stage / "left_out.json", left_out)
        atomic_write_bytes(stage / "README.md", README.encode())
    if missing:
        summary.notes.append(f"{missing} photos not found: their rgb/ entries are missing")
    return summary
