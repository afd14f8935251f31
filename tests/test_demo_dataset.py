"""The demo dataset: procedural CAD, layout, determinism, model-like initial poses, GT alignment."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from checks import iou
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, INITIAL, SYNCED, Dataset, ObjectKey
from pose6d.demo.dataset import (MANIFEST, DemoDatasetError, make_demo_dataset, mask_bbox,
                                 wrap_angle)
from pose6d.inout import read_image
from pose6d.demo.procedural_cad import MODELS, build_model
from pose6d.cad_library import CadMesh
from pose6d.renderer import render

REPO = Path(__file__).resolve().parents[1]
N_OBJECTS = 40


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "data"
    make_demo_dataset(root, N_OBJECTS, seed=0, progress=False)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _mesh(category: str, index: int) -> CadMesh:
    v, f = build_model(category, index)
    return CadMesh(category, index, Path(f"{category}/{index}"), v, f)


def _view_mask(mesh: CadMesh, azimuth_deg: float, size: int = 160) -> np.ndarray:
    distance = 2.2 * 3000 / size * 1.0  # about 1.1 units per half image: every model fits
    pose = Pose.from_degrees(azimuth_deg, 20, 0, distance, size / 2, size / 2, 3000)
    return render(mesh, pose, size, size).full_mask


# --- Procedural CAD ----------------------------------------------------------------------------

@pytest.mark.parametrize("category,index", [(c, i) for c in MODELS for i in MODELS[c]])
def test_models_are_sane_meshes(category, index):
    v, f = build_model(category, index)
    assert v.dtype == np.float64 and v.shape[1] == 3 and np.isfinite(v).all()
    assert f.shape[1] == 3 and f.min() >= 0 and f.max() < len(v)
    extent = v.max(axis=0) - v.min(axis=0)
    assert 0.5 < extent.max() <= 2.1, extent
    assert np.allclose((v.max(axis=0) + v.min(axis=0)) / 2, 0, atol=1e-9)  # bbox-centred
    assert 50 <= len(f) <= 12000
    assert build_model(category, index)[0].tobytes() == v.tobytes()  # pure function


def test_model_set():
    assert set(MODELS) >= {"car", "chair", "mug", "dining_table"}
    assert all(len(models) >= 3 for models in MODELS.values())
    assert sorted(MODELS["car"]) == [1, 2, 4]  # a deliberate gap
    assert max(len(build_model(c, i)[1]) for c in MODELS for i in MODELS[c]) >= 8000


@pytest.mark.parametrize("category", ["car", "chair", "mug"])
def test_asymmetric_objects_look_different_from_behind(category):
    for index in MODELS[category]:
        mesh = _mesh(category, index)
        ious = [iou(_view_mask(mesh, a), _view_mask(mesh, a + 180)) for a in (0, 30, 90)]
        assert min(ious) < 0.85, (category, index, ious)


def test_symmetric_table_is_symmetric():
    mesh = _mesh("dining_table", 1)  # guards the check above: a symmetric model must pass
    assert iou(_view_mask(mesh, 30), _view_mask(mesh, 210)) > 0.97


@pytest.mark.parametrize("category", sorted(MODELS))
def test_subtypes_are_visibly_different(category):
    views = [[_view_mask(_mesh(category, i), a) for a in (35, 90)] for i in MODELS[category]]
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            ious = [iou(a, b) for a, b in zip(views[i], views[j])]
            assert min(ious) < 0.9, (category, i, j, ious)


# --- Layout and loading ------------------------------------------------------------------------

def test_dataset_loads_back(demo):
    ds = Dataset(demo)
    keys = ds.objects(INITIAL)
    assert len(keys) == N_OBJECTS and keys == ds.objects(GROUND_TRUTH)
    assert ds.cad.categories() == sorted(MODELS)
    assert ds.cad.indices("car") == [1, 2, 4]
    sizes, viewports = set(), set()
    for key in keys:
        init, gt = ds.read(key, INITIAL), ds.read(key, GROUND_TRUTH)
        image = read_image(ds.image_path(key))
        assert ds.image_path(key).suffix == ".JPEG"
        assert image.shape == (gt.extra["height"], gt.extra["width"], 3)
        assert init.extra["class"] == gt.extra["class"] == key.category
        assert np.array_equal(init.bbox, gt.bbox)
        assert gt.extra["object_status"] in ("status_good", "status_partially")
        assert gt.extra["dense"] in ("dense_no", "dense_yes")
        for record in (init, gt):
            assert len(ds.cad.mesh(key.category, record.cad_index).faces) > 0
        sizes.add(image.shape[:2])
        viewports.add((image.shape[1], gt.pose.viewport))
    assert sizes == {(480, 640), (375, 500)}
    assert viewports == {(640, 2000.0), (500, 3000.0)}  # viewport stored per object


def test_manifest(demo):
    manifest = json.loads((demo / MANIFEST).read_text())
    assert manifest["seed"] == 0 and manifest["objects"] == N_OBJECTS
    assert len(manifest["objects_summary"]) == N_OBJECTS
    tris = {m["subtype"]: m["triangles"] for ms in manifest["categories"].values() for m in ms}
    assert tris["tall"] == len(build_model("mug", 3)[1])
    assert "p_flip180" in manifest["noise_model"]
    for obj in manifest["objects_summary"]:
        assert (demo / obj["image"]).is_file()


def test_underscore_category_round_trips(demo):
    ds = Dataset(demo)
    keys = ds.objects(INITIAL, categories=["dining_table"])
    assert keys and all(k.name.startswith("demo_dining_table_") for k in keys)
    for key in keys:
        assert ObjectKey.parse(str(key)) == key
        assert ds.image_relpath(key).startswith("images/dining_table/")
        assert ds.read(key, GROUND_TRUTH).extra["class"] == "dining_table"
        ds.cad.mesh("dining_table", ds.read(key).cad_index)


# --- Determinism -------------------------------------------------------------------------------

def test_same_seed_same_bytes(demo, tmp_path):
    make_demo_dataset(tmp_path / "again", N_OBJECTS, seed=0, progress=False)
    first, second = _tree(demo), _tree(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []


def test_other_seed_differs(demo, tmp_path):
    make_demo_dataset(tmp_path / "other", 6, seed=1, progress=False)
    other, first = _tree(tmp_path / "other"), _tree(demo)
    images = [k for k in other if k.endswith(".JPEG")]
    assert images and all(other[k] != first.get(k) for k in images)
    gt = [k for k in other if k.startswith(GROUND_TRUTH)]
    assert all(other[k] != first.get(k) for k in gt)


# --- Initial poses vs ground truth -------------------------------------------------------------

def test_initial_poses_err_like_a_model(demo):
    ds = Dataset(demo)
    az, dist, centre, wrong_cad = [], [], [], 0
    for key in ds.objects():
        init, gt = ds.read(key, INITIAL).pose, ds.read(key, GROUND_TRUTH)
        az.append(abs(math.degrees(wrap_angle(init.azimuth - gt.pose.azimuth))))
        dist.append(abs(init.distance / gt.pose.distance - 1))
        centre.append(math.hypot(init.px - gt.pose.px, init.py - gt.pose.py))
        wrong_cad += ds.read(key).cad_index != gt.cad_index
    az = np.array(az)
    assert 0.5 < np.median(az) < 10
    assert 0.03 <= np.mean(az > 90) <= 0.35
    assert 0 < np.median(dist) < 0.1 and 0 < np.median(centre) < 10
    assert 0 < wrong_cad < 0.5 * len(az)


# --- Ground truth lines up with the image ------------------------------------------------------

def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        m = out.copy()
        m[1:] |= out[:-1]
        m[:-1] |= out[1:]
        m[:, 1:] |= out[:, :-1]
        m[:, :-1] |= out[:, 1:]
        out = m
    return out


def _contrast(image: np.ndarray, mask: np.ndarray) -> float:
    inside = mask & ~_grow(~mask, 2)
    ring = _grow(mask, 5) & ~_grow(mask, 2)
    if inside.sum() < 20 or ring.sum() < 20:
        return math.nan
    return float(np.linalg.norm(image[inside].mean(0) - image[ring].mean(0)))


def test_gt_render_matches_image(demo):
    ds = Dataset(demo)
    good, shifted = [], []
    for key in ds.objects(GROUND_TRUTH):
        gt = ds.read(key, GROUND_TRUTH)
        image = read_image(ds.image_path(key)).astype(np.float64)
        mesh = ds.cad.mesh(key.category, gt.cad_index)
        h, w = image.shape[:2]
        mask = render(mesh, gt.pose, w, h).full_mask
        assert np.array_equal(gt.bbox, mask_bbox(mask)), key  # stored bbox = GT mask's bbox
        off = render(mesh, gt.pose.replace(px=gt.pose.px + 12), w, h).full_mask
        good.append(_contrast(image, mask))
        shifted.append(_contrast(image, off))
    good, shifted = np.array(good), np.array(shifted)
    assert np.nanmin(good) > 20 and np.mean(good > 40) > 0.8, good
    assert np.nanmean(good) > 1.5 * np.nanmean(shifted)  # the measure does see misalignment


def test_cut_and_dense_objects(demo):
    ds = Dataset(demo)
    summary = {o["key"]: o for o in json.loads((demo / MANIFEST).read_text())["objects_summary"]}
    per_image: dict[tuple[str, str], list] = {}
    for key in ds.objects(GROUND_TRUTH):
        gt = ds.read(key, GROUND_TRUTH)
        per_image.setdefault((key.category, key.name), []).append(gt)
        x1, y1, x2, y2 = gt.bbox
        touches = x1 == 0 or y1 == 0 or x2 == gt.extra["width"] or y2 == gt.extra["height"]
        if gt.extra["object_status"] == "status_partially":
            assert touches and summary[str(key)]["visible_fraction"] < 0.9
        else:
            assert summary[str(key)]["visible_fraction"] >= 0.9
    statuses = [r.extra["object_status"] for rs in per_image.values() for r in rs]
    assert 0.05 <= statuses.count("status_partially") / len(statuses) <= 0.5
    sizes = [len(rs) for rs in per_image.values()]
    assert 2 in sizes and set(sizes) <= {1, 2}
    for records in per_image.values():
        expected = "dense_yes" if len(records) == 2 else "dense_no"
        assert all(r.extra["dense"] == expected for r in records)


# --- Output folder safety and the script -------------------------------------------------------

def test_refuses_foreign_folder_and_replaces_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DemoDatasetError):
        make_demo_dataset(foreign, 1, progress=False)
    make_demo_dataset(foreign, 1, progress=False, force=True)
    assert (foreign / "notes.txt").read_text() == "mine"

    root = tmp_path / "demo"
    make_demo_dataset(root, 3, progress=False)
    ds = Dataset(root)
    key = ds.objects()[-1]
    ds.write(key, ds.read(key), SYNCED)  # a user's label must survive a re-run
    make_demo_dataset(root, 1, progress=False)
    assert len(ds.objects(INITIAL)) == len(ds.objects(GROUND_TRUTH)) == 1
    assert len(list((root / "images").rglob("*.JPEG"))) == 1
    assert ds.objects(SYNCED) == [key]


def test_script(tmp_path):
    script = REPO / "scripts" / "make_demo_dataset.py"
    ok = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "d"), "--objects",
                         "2", "--seed", "3", "--quiet"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "d" / MANIFEST).read_text())["seed"] == 3
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    bad = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "not a demo dataset" in bad.stderr
    assert bad.stderr.count("\n") == 1
