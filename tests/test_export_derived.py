"""Derived labels (COCO masks, 2D-3D correspondences, BOP masks and scene_gt_info) against
independent references: pycocotools reads the COCO file, masks are compared with the tests'
own rasteriser and z-buffer (tests/reference_camera.py), correspondences are re-projected with
the camera formula transcribed there, and the BOP files are read as the BOP toolkit's format
document (docs/bop_datasets_format.md) describes them."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ls_admin.export_bop import export_bop
from ls_admin.export_coco import export_coco
from ls_admin.export_correspondences import export_correspondences
from ls_admin.export_source import labels_from_synced
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, SYNCED, Dataset, ObjectKey, ObjectRecord, write_record
from reference_camera import (rasterize_reference, reference_depth_image, reference_pixels)

REPO = Path(__file__).resolve().parents[1]
OVERLAP = "overlap_9999"  # a photo of ours: a near car hiding part of a far one, plus a "bad" one
KEYPOINTS = {"origin": [0.0, 0.0, 0.0], "front_top": [0.45, 0.1, 0.2], "rear": [-0.5, 0.0, 0.05]}


def sync_record(record: ObjectRecord, **extra) -> ObjectRecord:
    fields = dict(record.extra, annotator="7", ls_annotation_id=1, ls_task_id=1, ls_project_id=1,
                  updated_at="2026-12-01T12:00:00.000000+00:00")
    fields.update(extra)
    return ObjectRecord(record.pose, record.cad_index, fields)


def add_synced_demo(root: Path, cad_root: Path | None = None) -> Dataset:
    """The demo dataset's ground truth as synced labels, plus the OVERLAP photo."""
    from pose6d.demo.dataset import make_demo_dataset

    make_demo_dataset(root, objects=40, seed=3, progress=False)
    ds = Dataset(root)
    gt = {k: ds.read(k, GROUND_TRUTH) for k in ds.objects(GROUND_TRUTH)}
    for key, rec in gt.items():
        write_record(ds.record_path(key, SYNCED), sync_record(rec))
    template_key = next(k for k in sorted(gt) if k.category == "car")
    t = gt[template_key]
    p = t.pose
    near = p.replace(px=p.px - 0.15 * p.viewport / p.distance)
    far = p.replace(distance=p.distance * 1.6, px=p.px + 0.15 * p.viewport / p.distance)
    bad = p.replace(distance=p.distance * 1.2, px=p.px + 0.3 * p.viewport / p.distance)
    for k, (pose, status) in enumerate(((near, "status_good"), (far, "status_partially"),
                                        (bad, "status_bad"))):
        write_record(ds.record_path(ObjectKey("car", OVERLAP, k), SYNCED),
                     sync_record(ObjectRecord(pose, t.cad_index, dict(t.extra)),
                                 object_status=status))
        write_record(ds.record_path(ObjectKey("car", OVERLAP, k)),
                     ObjectRecord(pose, t.cad_index, dict(t.extra)))
    shutil.copyfile(ds.image_path(template_key), root / "images" / "car" / f"{OVERLAP}.JPEG")
    mesh_path = ds.cad.path("car", t.cad_index)
    mesh_path.with_suffix(".keypoints.json").write_text(json.dumps(KEYPOINTS))
    return ds


@dataclasses.dataclass
class Reference:
    """One object, each mask (photo size) from the z-buffer over its photo's usable objects.

    amodal, visible: by the tests' own rasteriser (reference_camera). big: its whole silhouette
    on a canvas one photo size larger on each side. rendered_amodal, rendered_visible: the same
    from pose6d.renderer.render at the photo's size (the overlay's renderer, called directly).
    """

    amodal: np.ndarray
    visible: np.ndarray
    big: np.ndarray
    rendered_amodal: np.ndarray
    rendered_visible: np.ndarray


def zbuffer(depth: dict, usable: dict) -> dict:
    """{key: visible mask}: hit, and no other usable object strictly nearer."""
    out = {}
    for key, d in depth.items():
        others = [o for k, o in depth.items() if k != key and usable[k]]
        hidden = np.any([o < d for o in others], axis=0) if others else False
        out[key] = np.isfinite(d) & ~hidden
    return out


def reference_views(ds: Dataset) -> dict[str, Reference]:
    """Independent masks of every synced object (Reference)."""
    from pose6d.renderer import render

    photos: dict[tuple[str, str], list] = {}
    for key in ds.objects(SYNCED):
        photos.setdefault((key.category, key.name), []).append((key, ds.read(key, SYNCED)))
    out = {}
    for objs in photos.values():
        depth, rendered, big = {}, {}, {}
        usable = {key: rec.extra["object_status"] != "status_bad" for key, rec in objs}
        for key, rec in objs:
            w, h = int(rec.extra["width"]), int(rec.extra["height"])
            mesh = ds.cad.mesh(key.category, rec.cad_index)
            m = max(w, h)
            d = reference_depth_image(mesh.vertices, mesh.faces, rec.pose, w, h, margin=m)
            big[key] = np.isfinite(d[m - h:m + 2 * h, m - w:m + 2 * w])
            depth[key] = d[m:m + h, m:m + w]
            r = render(mesh, rec.pose, w, h)
            rendered[key] = r.full(np.where(r.mask, r.depth, np.inf), np.inf)
        ref, ren = zbuffer(depth, usable), zbuffer(rendered, usable)
        for key, _ in objs:
            out[str(key)] = Reference(np.isfinite(depth[key]), ref[key], big[key],
                                      np.isfinite(rendered[key]), ren[key])
    return out


EDGE_TIES = 2  # pixels per mask whose centre lies on a triangle edge (float32 vs float64)


def assert_same_up_to_edge_ties(ours: np.ndarray, reference: np.ndarray, what: str) -> int:
    """Masks equal but for at most EDGE_TIES pixels, each on the boundary of both masks'
    union (a pixel centre on the silhouette's edge: Embree's float32 and the reference's
    inclusive float64 test may decide it differently). Returns how many differ."""
    diff = ours != reference
    n = int(diff.sum())
    assert n <= EDGE_TIES, f"{what}: {n} pixels differ"
    union = np.pad(ours | reference, 1)
    interior = union[1:-1, 1:-1] & union[:-2, 1:-1] & union[2:, 1:-1] & union[1:-1, :-2] \
        & union[1:-1, 2:]
    assert not (diff & interior).any(), f"{what}: an inner pixel differs"
    return n


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ds = add_synced_demo(tmp_path_factory.mktemp("derived") / "data")
    return ds, reference_views(ds)


def test_coco_rle_is_byte_for_byte_pycocotools():
    from pycocotools import mask as mask_utils
    from pose6d import coco_rle

    rng = np.random.default_rng(1)
    for trial in range(400):
        h, w = rng.integers(1, 70, 2)
        m = rng.random((h, w)) < rng.random()
        if trial % 2:  # long runs, as object masks have
            m = np.zeros((h, w), bool)
            m[rng.integers(0, h):rng.integers(0, h + 1), rng.integers(0, w):] = True
        ours, theirs = coco_rle.encode(m), mask_utils.encode(np.asfortranarray(m, dtype=np.uint8))
        assert ours["counts"] == theirs["counts"].decode() and ours["size"] == [h, w]
        assert (mask_utils.decode(dict(ours, counts=ours["counts"].encode())) == m).all()


def test_coco_masks_equal_an_independent_render(demo, tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    ds, ref = demo
    export_coco(labels_from_synced(ds), ds, tmp_path / "coco", split="val", progress=False)
    coco = COCO(str(tmp_path / "coco/annotations/instances_val.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ds.cad.categories()
    anns = coco.loadAnns(coco.getAnnIds())
    keys = {a["pose6d"]["object_key"] for a in anns}
    usable = {k for k in ref if not k.endswith(f"{OVERLAP}_2")}
    assert keys == usable and len(anns) == len(usable) == 42  # the bad one is left out
    ious, ties = [], 0
    for ann in anns:
        key = ann["pose6d"]["object_key"]
        img = coco.loadImgs(ann["image_id"])[0]
        with Image.open(ds.root / img["file_name"]) as photo:
            assert photo.size == (img["width"], img["height"])
        k = ObjectKey.parse(key)
        assert img["file_name"] == f"images/{k.category}/{k.name}.JPEG"
        mask = coco.annToMask(ann).astype(bool)
        inter = (mask & ref[key].rendered_visible).sum()
        ious.append(inter / (mask | ref[key].rendered_visible).sum())
        amodal = mask_utils.decode(dict(ann["segmentation_amodal"],
                                        counts=ann["segmentation_amodal"]["counts"].encode()))
        assert (amodal.astype(bool) == ref[key].rendered_amodal).all(), key
        ties += assert_same_up_to_edge_ties(mask, ref[key].visible, key)
        assert_same_up_to_edge_ties(amodal.astype(bool), ref[key].amodal, key)
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        assert ann["area"] == mask_utils.area(rle) == mask.sum()
        assert ann["bbox"] == mask_utils.toBbox(rle).tolist() and ann["iscrowd"] == 0
        npz = np.load(ds.record_path(ObjectKey.parse(key), SYNCED))
        for name in ("azimuth", "elevation", "theta", "distance", "px", "py", "viewport"):
            assert ann["pose6d"][name] == float(npz[name]), (key, name)
        assert ann["pose6d"]["cad_index"] == int(npz["cad_index"])
        assert (ann["pose6d"]["object_status"], ann["pose6d"]["dense"]) == (
            str(npz["object_status"]), str(npz["dense"]))
    assert min(ious) == 1.0, f"IoU {min(ious)} against the renderer's own silhouettes"
    print(f"\nIoU 1.0 for all {len(anns)} objects against the renderer; against the reference "
          f"rasteriser {ties} pixels differ in all (centres on an edge)")
    # The test meets an occlusion: the far car is cut by the near one, not by the bad one.
    near, far, bad = (ref[f"car/{OVERLAP}_{k}"] for k in range(3))
    assert 0 < far.visible.sum() < far.amodal.sum()
    assert (far.amodal & ~far.visible == far.amodal & near.amodal).all()
    assert (bad.amodal & far.amodal & ~near.amodal).sum() > 100  # nearer, but hides nothing


def test_coco_leaves_out_bad_and_skipped_unless_asked(demo, tmp_path):
    ds, _ = demo
    labels = labels_from_synced(ds)
    skipped = dataclasses.replace(labels[0], skipped=True)
    export_coco(labels[1:] + [skipped], ds, tmp_path / "a", progress=False)
    left_out = json.loads((tmp_path / "a/left_out.json").read_text())
    reasons = {e["object_key"]: e["reason"] for e in left_out}
    assert reasons == {f"car/{OVERLAP}_2": "status_bad", str(labels[0].key): "skipped"}
    export_coco(labels, ds, tmp_path / "b", include_bad=True, progress=False)
    anns = json.loads((tmp_path / "b/annotations/instances_train.json").read_text())["annotations"]
    assert f"car/{OVERLAP}_2" in {a["pose6d"]["object_key"] for a in anns}


def test_correspondences_reproject_onto_their_pixels(demo, tmp_path):
    ds, ref = demo
    summary = export_correspondences(labels_from_synced(ds), ds, tmp_path / "corr", progress=False)
    index = json.loads((tmp_path / "corr/index.json").read_text())
    assert summary.objects == len(index) == 42
    errors = []
    for entry in index:
        key = entry["object_key"]
        z = np.load(tmp_path / "corr" / entry["file"], allow_pickle=False)
        rec = ds.read(ObjectKey.parse(key), SYNCED)
        x0, y0, x1, y1 = z["box"]
        assert z["xyz"].dtype == np.float16 and z["mask"].shape == (y1 - y0, x1 - x0)
        full = np.zeros_like(ref[key].visible)
        full[y0:y1, x0:x1] = z["mask"]
        assert (full == ref[key].rendered_visible).all(), key
        rows, cols = np.nonzero(z["mask"])
        uv = reference_pixels(z["xyz"][rows, cols].astype(np.float64), rec.pose)
        err = np.hypot(uv[:, 0] - (x0 + cols), uv[:, 1] - (y0 + rows))
        assert err.mean() < 0.5, (key, err.mean())
        errors.append(err)
        mesh = ds.cad.mesh(key.split("/")[0], rec.cad_index)
        lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        assert sorted(map(tuple, z["corners_3d"])) == sorted(
            (x, y, w) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for w in (lo[2], hi[2]))
        np.testing.assert_allclose(z["corners_2d"], reference_pixels(z["corners_3d"], rec.pose),
                                   atol=1e-6)
        if OVERLAP in key:
            assert list(z["keypoint_names"]) == list(KEYPOINTS)
            np.testing.assert_array_equal(z["keypoints_3d"], list(KEYPOINTS.values()))
            np.testing.assert_allclose(z["keypoints_2d"],
                                       reference_pixels(z["keypoints_3d"], rec.pose), atol=1e-6)
            np.testing.assert_allclose(z["keypoints_2d"][0], [rec.pose.px, rec.pose.py], atol=1e-6)
    every = np.concatenate(errors)
    print(f"\nre-projection error over {every.size} pixels: mean {every.mean():.3f} px, "
          f"max {every.max():.3f} px")
    assert every.mean() < 0.5


def bop_bbox(mask: np.ndarray, dx: int = 0, dy: int = 0) -> list[int]:
    """(x, y, w, h), w = x_max - x_min: the BOP toolkit's calc_2d_bbox (its misc.py)."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()) - dx, int(ys.min()) - dy, int(xs.max() - xs.min()),
            int(ys.max() - ys.min())]


def test_bop_masks_and_gt_info_read_as_the_format_document_says(demo, tmp_path):
    """A reader written from docs/bop_datasets_format.md: masks named IMID_GTID.png per
    scene_gt.json entry; the silhouette is where P_m2i = K [R_m2c, t_m2c] maps the model (PLY,
    mm); scene_gt_info.json's fields as the document (and calc_gt_info.py) define them."""
    import open3d as o3d

    ds, ref = demo
    out = tmp_path / "bop"
    export_bop(labels_from_synced(ds), ds, out, progress=False)
    models = {}
    seen, cut = set(), 0
    for scene in sorted((out / "train").iterdir()):
        gt = json.loads((scene / "scene_gt.json").read_text())
        cam = json.loads((scene / "scene_camera.json").read_text())
        info = json.loads((scene / "scene_gt_info.json").read_text())
        imap = json.loads((scene / "image_map.json").read_text())
        assert set(info) == set(gt) == set(cam)
        for im_id, entries in gt.items():
            key = imap[im_id]["object_key"]
            w, h = imap[im_id]["width"], imap[im_id]["height"]
            for gt_id, g in enumerate(entries):
                name = f"{int(im_id):06d}_{gt_id:06d}.png"
                masks = {}
                for sub in ("mask", "mask_visib"):
                    with Image.open(scene / sub / name) as im:
                        assert (im.mode, im.size) == ("L", (w, h))
                        masks[sub] = np.asarray(im)
                    assert set(np.unique(masks[sub])) <= {0, 255}
                if g["obj_id"] not in models:
                    ply = out / "models" / f"obj_{g['obj_id']:06d}.ply"
                    m = o3d.io.read_triangle_mesh(str(ply))
                    models[g["obj_id"]] = (np.asarray(m.vertices), np.asarray(m.triangles))
                v, f = models[g["obj_id"]]
                k = np.array(cam[im_id]["cam_K"]).reshape(3, 3)
                x = (v @ np.array(g["cam_R_m2c"]).reshape(3, 3).T + g["cam_t_m2c"]) @ k.T
                uv = x[:, :2] / x[:, 2:]
                assert_same_up_to_edge_ties(masks["mask"] > 0, rasterize_reference(uv, f, w, h),
                                            key)
                assert ((masks["mask"] > 0) == ref[key].rendered_amodal).all(), key
                whole = rasterize_reference(uv + [w, h], f, 3 * w, 3 * h)  # calc_gt_info's canvas
                visib = masks["mask_visib"] > 0
                assert (visib == ref[key].rendered_visible).all(), key
                assert not (visib & ~(masks["mask"] > 0)).any()
                (i,) = info[im_id]
                assert set(i) == {"bbox_obj", "bbox_visib", "px_count_all", "px_count_visib",
                                  "visib_fract"}
                assert abs(i["px_count_all"] - whole.sum()) <= EDGE_TIES, key
                assert i["px_count_visib"] == visib.sum()
                assert i["visib_fract"] == pytest.approx(visib.sum() / i["px_count_all"],
                                                         abs=1e-12)
                assert i["bbox_visib"] == bop_bbox(visib)
                assert np.abs(np.subtract(i["bbox_obj"], bop_bbox(whole, w, h))).max() <= 1
                if i["bbox_obj"][0] < 0 or i["bbox_obj"][1] < 0:
                    cut += 1  # a silhouette beyond the photo's border: its box is not clipped
                seen.add(key)
    assert len(seen) == 42 and cut > 0


def test_bop_scene_gt_coco_reads_as_the_toolkit_writes_it(demo, tmp_path):
    """scene_gt_coco.json as the BOP toolkit's calc_gt_coco.py writes it (amodal boxes, every
    image), read by pycocotools: each annotation's mask is the scene's mask_visib PNG, its box
    that of the mask PNG (pycoco_utils.bbox_from_binary_mask: w = x_max - x_min + 1), its area
    the visible pixels, ignore below 10% visible, category_id the scene_gt obj_id; an object
    with no visible pixel has none; file_name is the rgb/ file."""
    from pycocotools.coco import COCO

    ds, _ = demo
    out = tmp_path / "bop"
    export_bop(labels_from_synced(ds), ds, out, progress=False)
    annotated = hidden = 0
    for scene in sorted((out / "train").iterdir()):
        gt = json.loads((scene / "scene_gt.json").read_text())
        info = json.loads((scene / "scene_gt_info.json").read_text())
        coco = COCO(str(scene / "scene_gt_coco.json"))
        assert sorted(coco.getImgIds()) == sorted(int(i) for i in gt)
        assert {c["id"] for c in coco.loadCats(coco.getCatIds())} >= \
            {e["obj_id"] for entries in gt.values() for e in entries}
        anns = coco.loadAnns(coco.getAnnIds())
        assert sorted(a["id"] for a in anns) == list(range(1, len(anns) + 1))
        for im_id, entries in gt.items():
            image = coco.loadImgs(int(im_id))[0]
            assert (scene / image["file_name"]).is_file()
            assert image["file_name"].startswith(f"rgb/{int(im_id):06d}.")
            with Image.open(scene / "mask_visib" / f"{int(im_id):06d}_000000.png") as im:
                visib = np.asarray(im) > 0
            with Image.open(scene / "mask" / f"{int(im_id):06d}_000000.png") as im:
                whole = np.asarray(im) > 0
            mine = coco.loadAnns(coco.getAnnIds(imgIds=int(im_id)))
            if not visib.any():
                assert mine == []
                hidden += 1
                continue
            (ann,) = mine
            assert (image["width"], image["height"]) == (visib.shape[1], visib.shape[0])
            assert (coco.annToMask(ann) > 0).tolist() == visib.tolist()
            ys, xs = np.nonzero(whole)
            assert ann["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                   int(ys.max() - ys.min() + 1)]
            assert ann["area"] == int(visib.sum()) and ann["iscrowd"] == 0
            assert ann["ignore"] == (info[im_id][0]["visib_fract"] < 0.1)
            assert ann["category_id"] == entries[0]["obj_id"]
            annotated += 1
    assert annotated + hidden == 42 and annotated > 0


def test_bop_without_masks_writes_what_it_wrote_before(demo, tmp_path):
    ds, _ = demo
    export_bop(labels_from_synced(ds), ds, tmp_path / "bop", masks=False, progress=False)
    scene = next((tmp_path / "bop/train").iterdir())
    assert sorted(p.name for p in scene.iterdir()) == ["image_map.json", "rgb", "scene_camera.json",
                                                      "scene_gt.json"]


def test_real_meshes_masks_and_correspondences(shared_cad_root, tmp_path):
    """The ImageNet3D meshes: COCO masks equal the reference render, correspondences land."""
    from pycocotools.coco import COCO
    from pose6d.renderer import render

    root = tmp_path / "data"
    (root / "annotations").mkdir(parents=True)
    (root / "CAD").symlink_to(shared_cad_root)  # never copied
    ds = Dataset(root)
    from conftest import some_meshes
    for n, (cat, idx) in enumerate(some_meshes(shared_cad_root, per_category=1, limit=6)):
        pose = Pose.from_degrees(25 + 40 * n, 12, 5 - 3 * n, 3.5, 150 + 4 * n, 110, viewport=300)
        extra = {"width": 320, "height": 240, "object_status": "status_good", "dense": "dense_no"}
        for kind in ("annotations", SYNCED):
            write_record(root / kind / cat / f"real_{n}_0.npz",
                         sync_record(ObjectRecord(pose, idx, extra)))
    labels = labels_from_synced(ds)
    export_coco(labels, ds, tmp_path / "coco", progress=False)
    export_correspondences(labels, ds, tmp_path / "corr", progress=False)
    coco = COCO(str(tmp_path / "coco/annotations/instances_train.json"))
    assert len(coco.getAnnIds()) == len(labels) > 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        key = ObjectKey.parse(ann["pose6d"]["object_key"])
        rec = ds.read(key, SYNCED)
        mesh = ds.cad.mesh(key.category, rec.cad_index)
        depth = reference_depth_image(mesh.vertices, mesh.faces, rec.pose, 320, 240)
        mask = coco.annToMask(ann).astype(bool)
        assert (mask == render(mesh, rec.pose, 320, 240).full_mask).all(), key
        assert_same_up_to_edge_ties(mask, np.isfinite(depth), str(key))
        z = np.load(tmp_path / "corr" / key.category / f"{key.stem}.npz")
        rows, cols = np.nonzero(z["mask"])
        uv = reference_pixels(z["xyz"][rows, cols].astype(np.float64), rec.pose)
        assert np.hypot(uv[:, 0] - z["box"][0] - cols, uv[:, 1] - z["box"][1] - rows).mean() < 0.5


def test_cli_coco_and_correspondences(demo, tmp_path):
    ds, _ = demo
    for fmt in ("coco", "correspondences"):
        out = tmp_path / fmt
        run = subprocess.run([sys.executable, str(REPO / "scripts/export.py"), "--format", fmt,
                              "--data-root", str(ds.root), "--out", str(out), "--quiet"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert f"exported 42 labels" in run.stdout and f"as {fmt}" in run.stdout
        assert (out / "README.md").is_file() and (out / "left_out.json").is_file()


def test_masks_page_shows_a_sample_per_category(demo):
    import base64
    import io
    import re

    from ls_admin.report_masks import masks_page

    ds, ref = demo
    page = masks_page(labels_from_synced(ds), ds, per_category=2)
    for category in ds.cad.categories():
        assert f"<h2>{category}</h2>" in page
    pictures = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pictures) == 2 * len(ds.cad.categories())
    assert "car/overlap_9999_1: status_partially" in page  # the photo with an occlusion is shown
    assert "overlap_9999_2" not in page  # "bad": not drawn
    with Image.open(io.BytesIO(base64.b64decode(pictures[0]))) as im:
        assert im.width <= 480


def test_two_annotations_of_one_object_never_hide_each_other(demo):
    """--all-annotations: an object's own annotations are one object to the z-buffer, while a
    nearer other object still hides it."""
    from pose6d.visibility import object_surface, photo_views

    ds, ref = demo
    near, far = (ds.read(ObjectKey("car", OVERLAP, k), SYNCED) for k in (0, 1))
    w, h = int(near.extra["width"]), int(near.extra["height"])
    mesh = ds.cad.mesh("car", near.cad_index)
    s_near, s_far = (object_surface(mesh, r.pose, w, h) for r in (near, far))
    s_far2 = object_surface(mesh, far.pose.replace(distance=far.pose.distance * 0.9), w, h)
    views = photo_views([s_far, s_far2, s_near], w, h, owners=["far", "far", "near"])
    assert (views[0].visible == ref[f"car/{OVERLAP}_1"].rendered_visible).all()
    assert (views[1].visible == views[1].amodal & ~views[2].amodal).all()
    assert (views[2].visible == views[2].amodal).all()


def test_keypoints_file_errors_name_the_file(tmp_path):
    from pose6d.errors import DataError
    from pose6d.keypoints import read_keypoints

    mesh = tmp_path / "01.off"
    assert read_keypoints(mesh) is None
    for bad in ("[1, 2]", '{"a": [1, 2]}', '{"a": [1, 2, "x"]}', "{"):
        (tmp_path / "01.keypoints.json").write_text(bad)
        with pytest.raises(DataError, match="01.keypoints.json"):
            read_keypoints(mesh)
