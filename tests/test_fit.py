"""Auto-fit (pose6d.fitting.fit, pose6d.fitting.evidence, pose6d.fitting.batch, scripts/auto_fit.py).

Expected values come from the demo generator's ground truth and from geometry known by
construction, never from the fit itself.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from checks import iou
from conftest import REPO, box_mesh
from pose6d.cad_library import CadMesh
from pose6d.camera import InvalidPoseError, Pose
from pose6d.dataset import GROUND_TRUTH, Dataset
from pose6d.demo.dataset import make_demo_dataset
from pose6d.demo.photo import background, composite_object
from pose6d.fitting.fit import FitError, fit_pose, fit_translation
from pose6d.fitting.cad import fit_cad, screen_models
from pose6d.fitting.score import score_pose
from pose6d.fitting.turns import all_round_turns, fit_all_round, place_turns
from pose6d.fitting.silhouette import frame_pose, mesh_symmetry, render_silhouette
from pose6d.fitting.batch import fit_dataset
from pose6d.fitting.evidence import EvidenceError, ImageEvidence
from pose6d.inout import read_image
from pose6d.pose_error import pose_rotation_error
from pose6d.demo.procedural_cad import build_model, cylinder
from pose6d.renderer import render


def _deg(a: Pose, b: Pose) -> float:
    return math.degrees(pose_rotation_error(a, b))


def _centre(a: Pose, b: Pose) -> float:
    return math.hypot(a.px - b.px, a.py - b.py)


def _mesh(category: str, index: int) -> CadMesh:
    v, f = build_model(category, index)
    return CadMesh(category, index, Path(f"<{category}/{index}>"), v, f.astype(np.int32))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("fitdemo") / "data"
    make_demo_dataset(root, 16, seed=0, progress=False)
    return Dataset(root)


def _object(demo: Dataset, key: str):
    """A fully visible demo object: (photo, mesh, ground-truth pose, box)."""
    okey = next(k for k in demo.objects() if str(k) == key)
    gt = demo.read(okey, GROUND_TRUTH)
    assert gt.extra["object_status"] == "status_good" and gt.extra["dense"] == "dense_no"
    return (read_image(demo.image_path(okey)), demo.cad.mesh(okey.category, gt.cad_index),
            gt.pose, gt.bbox)


@pytest.fixture(scope="module")
def car(demo):
    return _object(demo, "car/demo_car_0009_0")


@pytest.fixture(scope="module")
def chair(demo):
    return _object(demo, "chair/demo_chair_0006_0")


def perturbed(gt: Pose) -> Pose:
    """10 deg of rotation (azimuth 8, elevation -6), 10 px of centre (6, -8), 10 % distance."""
    return gt.replace(azimuth=gt.azimuth + math.radians(8.0),
                      elevation=gt.elevation - math.radians(6.0), px=gt.px + 6.0,
                      py=gt.py - 8.0, distance=gt.distance * 1.1)


# --- Recovery -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["chair", "car"])
def test_known_perturbation_is_recovered(request, name):
    """With the photographed CAD model. Not every demo object is recovered this well: about
    half of the fully visible ones end within 2 deg / 2 px (the others within 3-8 deg: a
    parallel crease or a foreground GrabCut cuts short holds one side of the outline; mugs show
    their azimuth only by the handle); these two are."""
    photo, mesh, gt, box = request.getfixturevalue(name)
    start = perturbed(gt)
    assert 9.5 < _deg(start, gt) < 10.5 and _centre(start, gt) == pytest.approx(10.0)
    result = fit_pose(photo, mesh, start, box)
    assert _deg(result.pose, gt) < 2.0, result
    assert _centre(result.pose, gt) < 2.0, result
    assert abs(result.pose.distance / gt.distance - 1.0) < 0.02
    assert result.score > result.initial_score
    assert 0.0 <= result.initial_score <= result.score <= 1.0
    assert not result.flip_taken and result.changed


def test_perfect_pose_is_not_made_worse(car):
    photo, mesh, gt, box = car
    result = fit_pose(photo, mesh, gt, box)
    assert _deg(result.pose, gt) <= 1.0
    assert _centre(result.pose, gt) <= 1.5
    assert result.score >= result.initial_score


def test_translation_only_keeps_the_rotation(car):
    photo, mesh, gt, box = car
    start = gt.replace(px=gt.px + 6.0, py=gt.py - 8.0, distance=gt.distance * 1.1)
    result = fit_translation(photo, mesh, start, box)
    assert (result.pose.azimuth, result.pose.elevation, result.pose.theta) == \
        (start.azimuth, start.elevation, start.theta)
    assert _centre(result.pose, gt) < 2.0
    assert abs(result.pose.distance / gt.distance - 1.0) < 0.02


def test_a_flipped_start_is_turned_back(car):
    photo, mesh, gt, box = car
    start = gt.replace(azimuth=gt.azimuth + math.pi + math.radians(4.0), px=gt.px + 5.0)
    result = fit_pose(photo, mesh, start, box)
    assert result.flip_considered and result.flip_taken
    assert _deg(result.pose, gt) < 3.0


@pytest.mark.parametrize("quarter", [90.0, -90.0])
def test_a_quarter_turned_start_is_turned_back(car, quarter):
    """A start turned a quarter away (plus 4 deg and 5 px): the plain fit (not all round) tries
    the quarter turns and takes the one back, which explains the photo clearly better."""
    photo, mesh, gt, box = car
    start = gt.replace(azimuth=gt.azimuth + math.radians(quarter + math.copysign(4.0, quarter)),
                       px=gt.px + 5.0)
    assert 93.0 < _deg(start, gt) < 95.0
    result = fit_pose(photo, mesh, start, box)
    assert _deg(result.pose, gt) < 3.0, result
    assert not result.flip_taken and result.score > result.initial_score + 0.08


def test_interior_edges_tell_where_the_handle_is():
    """A mug photographed with its handle in front of the body: turned about its axis so the
    handle hides behind, its outline fits as well (the body is a cylinder) but its interior edges
    no longer lie on the photo's. When an outline fits only roughly (another instance of the
    category) the judge gives no values: the score alone decides."""
    from pose6d.demo.dataset import sized_pose
    from pose6d.fitting.fit import BOX_OUTLINE
    from pose6d.fitting.interior import judge
    from pose6d.fitting.score import Score, interior_agreement
    from pose6d.fitting.search import apply_delta

    mesh = _mesh("mug", 1)
    rng = np.random.default_rng(3)
    # the azimuth that points the handle at the camera: the one with the nearest surface point
    probe = Pose.from_degrees(azimuth=0.0, elevation=15.0, theta=0.0, distance=3.0, px=320.0,
                              py=240.0, viewport=2000.0)
    nearest = {az: float(render(mesh, probe.replace(azimuth=math.radians(az)), 640, 480)
                         .depth.min()) for az in range(0, 360, 10)}
    front = math.radians(min(nearest, key=nearest.get))
    gt, _ = sized_pose(mesh, (front, probe.elevation, 0.0), 2000.0, 260.0, 500.0)
    gt = gt.replace(px=320.0, py=240.0)
    # turned round about the vertical axis, the projected box kept in place (the mesh's origin
    # need not lie on the body's axis)
    back = apply_delta(gt, np.array([180.0] + [0.0] * 8), 260.0, mesh)
    image = background(rng, 640, 480)
    composite_object(image, mesh, gt, np.array([200.0, 60.0, 40.0]))
    photo = image.clip(0, 255).astype(np.uint8)
    ev = ImageEvidence(photo)
    level = ev.level(ev.frame((0, 0, 640, 480), 1))
    true, turned = (score_pose(level, mesh, p, 260.0) for p in (gt, back))
    assert abs(true.outline - turned.outline) < 0.05 and true.outline > BOX_OUTLINE
    inside = [interior_agreement(level, mesh, p, 260.0) for p in (gt, back)]
    assert inside[0] > inside[1] + 0.2, inside
    values = judge(level, mesh, [("given", back, turned, 1), ("flip", gt, true, 1)], 260.0,
                   BOX_OUTLINE)
    assert values["flip"] > values["given"] + 0.08
    rough = Score(true.total, BOX_OUTLINE - 0.1, true.silhouette, true.n_outline)
    assert judge(level, mesh, [("given", gt, rough, 1), ("flip", back, turned, 1)], 260.0,
                 BOX_OUTLINE) == {}


@pytest.mark.parametrize("key", ["chair/demo_chair_0006_0", "car/demo_car_0013_0"])
def test_the_photographed_models_own_edges_turn_it_back(demo, key):
    """refine_by_interior with the photographed model, started 5 deg off in azimuth and 3 in
    elevation with no pull back (prior weight 0): its creases and outline bring it within 2 deg;
    started at the truth, it stays within 2 deg (the value's optimum, not exactly the truth)."""
    from pose6d.fitting.place import fit_levels
    from pose6d.fitting.interior import refine_by_interior

    photo, mesh, gt, box = _object(demo, key)
    levels = fit_levels(ImageEvidence(photo, box), mesh, gt)
    x = np.zeros(9)
    x[:2] = 5.0, -3.0
    pose, score, n = refine_by_interior(levels.fine, mesh, gt, x, levels.size, [0, 1, 2], 0.0,
                                        mesh)
    assert _deg(pose, gt) < 2.0 and n > 2, _deg(pose, gt)
    pose, _, _ = refine_by_interior(levels.fine, mesh, gt, np.zeros(9), levels.size, [0, 1, 2],
                                    0.0, mesh)
    assert _deg(pose, gt) < 2.0


def test_the_right_cad_model_is_suggested(demo, car):
    photo, mesh, gt, box = car
    meshes = {i: demo.cad.mesh("car", i) for i in demo.cad.indices("car")}
    wrong = next(i for i in meshes if i != mesh.index)
    result = fit_cad(photo, meshes, perturbed(gt), box, initial_index=wrong)
    assert set(result.results) == set(meshes)
    assert result.best_index == mesh.index
    assert result.suggested_index in (mesh.index, wrong)
    if result.suggested_index == mesh.index:
        assert result.scores[mesh.index] >= result.scores[wrong] + 0.03


def test_screening_all_round_finds_the_turn_back_and_the_right_model(demo):
    """Every demo object whose half turn looks different, shown turned 90 deg away: of the pose
    and its 11 turns, the one back to the truth places best (place_turns); the true model is
    among the two screen_models keeps, whichever model is shown."""
    turns = [0.0] + all_round_turns(30.0)
    checked = 0
    for key in demo.objects():
        gt = demo.read(key, GROUND_TRUTH)
        mesh = demo.cad.mesh(key.category, gt.cad_index)
        if mesh_symmetry(mesh) != "none" or gt.extra["object_status"] != "status_good":
            continue
        photo = read_image(demo.image_path(key))
        shown = gt.pose.replace(azimuth=gt.pose.azimuth + math.radians(90.0))
        placed = place_turns(photo, mesh, shown, turns, gt.bbox)
        assert placed is not None, str(key)
        scores = np.array([fx for _, fx in placed])
        assert turns[int(np.argmax(scores))] == 270.0, (str(key), scores.round(2))
        meshes = {i: demo.cad.mesh(key.category, i) for i in demo.cad.indices(key.category)}
        assert gt.cad_index in screen_models(ImageEvidence(photo, gt.bbox), meshes, shown), str(key)
        checked += 1
    assert checked >= 6
    with pytest.raises(FitError, match="step_deg"):
        all_round_turns(0.0)


def test_the_all_round_fit_reuses_the_screenings_placements(car):
    """fitaz places every turn once (place_turns, which also ranks the CAD models); the
    all-round fit given those placements ends where it ends without them, with fewer renders.
    Placements that do not match its hypotheses are ignored."""
    photo, mesh, gt, box = car
    evidence = ImageEvidence(photo, box)
    shown = gt.replace(azimuth=gt.azimuth + math.radians(100.0))
    placed = place_turns(evidence, mesh, shown, [0.0] + all_round_turns(30.0))
    fresh = fit_all_round(evidence, mesh, shown)
    again = fit_all_round(evidence, mesh, shown, placed=placed)
    assert _deg(fresh.pose, gt) < 6.0  # turned back (the turns are 30 deg apart)
    assert again.pose == fresh.pose and again.score == fresh.score
    assert again.evaluations < fresh.evaluations
    assert fit_all_round(evidence, mesh, shown, placed=placed[:3]).pose == fresh.pose


def test_the_score_prefers_the_true_pose(car):
    photo, mesh, gt, box = car
    ev = ImageEvidence(photo, box)
    level = ev.level(ev.frame((0, 0, photo.shape[1], photo.shape[0]), 1))
    true = score_pose(level, mesh, gt, 200.0)
    for off in (gt.replace(px=gt.px + 15), gt.replace(azimuth=gt.azimuth + 0.3),
                gt.replace(distance=gt.distance * 1.2)):
        assert score_pose(level, mesh, off, 200.0).total < true.total
    assert 0.7 < true.total <= 1.0 and 0.9 < true.silhouette <= 1.0


def test_a_candidate_far_from_the_start_is_taken_when_it_explains_the_photo(car):
    photo, mesh, gt, box = car
    start = gt.replace(azimuth=gt.azimuth + math.radians(40.0), px=gt.px + 8.0)
    result = fit_pose(photo, mesh, start, box, candidates=[gt.replace(px=gt.px + 3.0)],
                      allow_flip=False)
    assert _deg(result.pose, gt) < 3.0 and result.margin > 0.02


def test_edges_of_a_rectangle_run_along_its_sides():
    """Canny on a bright rectangle: edges on its border, gradient direction 0 (modulo pi) on
    the left and right sides, pi / 2 on the top and bottom."""
    from pose6d.fitting.evidence import oriented_distance, oriented_edges

    image = np.zeros((120, 160, 3), np.uint8)
    image[30:90, 40:120] = 200
    edges, orientation = oriented_edges(image)
    ys, xs = np.nonzero(edges)
    assert len(ys) > 200
    near_side = (np.abs(xs - 40) <= 2) | (np.abs(xs - 119) <= 2)
    near_top = (np.abs(ys - 30) <= 2) | (np.abs(ys - 89) <= 2)
    assert (near_side | near_top).all()
    side = near_side & ~near_top
    top = near_top & ~near_side
    angle = orientation[ys, xs]
    assert np.all(np.minimum(angle[side], np.pi - angle[side]) < 0.2)
    assert np.all(np.abs(angle[top] - np.pi / 2) < 0.2)
    dist = oriented_distance(edges, orientation)
    assert dist[0, 60, 50] == pytest.approx(10.0, abs=1.5)  # 10 px right of the left side
    assert dist[4, 60, 50] > 20.0  # the horizontal sides are 29 px away


# --- Geometry ---------------------------------------------------------------------------------

def test_frames_render_what_the_full_image_shows_downscaled():
    mesh = _mesh("chair", 3)
    pose = Pose.from_degrees(40, 20, 5, 4.0, 301.3, 207.8, viewport=1500)
    full = render(mesh, pose, 640, 480).full_mask.astype(np.float32)
    ev = ImageEvidence(np.zeros((480, 640, 3), np.uint8))
    for k in (2, 4):
        frame = ev.frame((96, 40, 520, 440), k)
        (x0, y0, x1, y1), mask = render_silhouette(mesh, frame_pose(pose, frame), frame.width,
                                                   frame.height)
        small = np.zeros((frame.height, frame.width), bool)
        small[y0:y1, x0:x1] = mask
        crop = full[40:40 + frame.height * k, 96:96 + frame.width * k]
        area = crop.reshape(frame.height, k, frame.width, k).mean(axis=(1, 3)) >= 0.5
        assert iou(small, area) > 0.93, k


def test_stretching_the_rays_stretches_the_mesh():
    v, f = box_mesh(1.0, 0.6, 0.4)
    mesh = CadMesh("box", 1, Path("<box>"), v, f.astype(np.int32))
    stretched = CadMesh("box", 2, Path("<box2>"), v * [1.5, 1.0, 0.8], f.astype(np.int32))
    pose = Pose.from_degrees(30, 25, 0, 5.0, 160, 120, viewport=400)
    a = render_silhouette(mesh, pose, 320, 240, scale=np.array([1.5, 1.0, 0.8]))
    b = render_silhouette(stretched, pose, 320, 240)
    full_a, full_b = np.zeros((240, 320), bool), np.zeros((240, 320), bool)
    full_a[a[0][1]:a[0][3], a[0][0]:a[0][2]] = a[1]
    full_b[b[0][1]:b[0][3], b[0][0]:b[0][2]] = b[1]
    assert iou(full_a, full_b) > 0.995


def test_symmetry_of_known_shapes():
    v, f = cylinder(0.3, 1.0, segments=48)
    assert mesh_symmetry(CadMesh("c", 1, Path("<c>"), v, np.asarray(f, np.int32))) == \
        "rotational"
    v, f = box_mesh(1.0, 0.5, 0.4)
    assert mesh_symmetry(CadMesh("b", 1, Path("<b>"), v, f.astype(np.int32))) == "half_turn"
    assert mesh_symmetry(_mesh("car", 1)) == "none"  # a car's front is not its back


# --- Clear answers --------------------------------------------------------------------------------

def test_blank_photo_keeps_the_pose_with_a_low_score(car):
    _, mesh, gt, box = car
    start = perturbed(gt)
    result = fit_pose(np.full((480, 640, 3), 128, np.uint8), mesh, start, box)
    assert result.pose == start and not result.changed
    assert "blank" in result.message
    assert result.score < 0.3


def test_missing_box_still_fits_on_outlines(car):
    photo, mesh, gt, _ = car
    start = perturbed(gt)
    result = fit_pose(photo, mesh, start, None)
    assert math.isnan(result.silhouette) and 0.0 <= result.score <= 1.0
    assert _deg(result.pose, gt) < _deg(start, gt)
    assert _centre(result.pose, gt) < _centre(start, gt)


def test_truncated_object_is_fitted_or_kept():
    """An object pushed a third across the left border of the photo."""
    rng = np.random.default_rng(3)
    mesh = _mesh("car", 2)
    gt = Pose.from_degrees(-70, 10, 0, 9.0, 30, 240, viewport=2000)
    photo = background(rng, 640, 480)
    composite_object(photo, mesh, gt, np.array([180.0, 30, 30]))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    mask = render(mesh, gt, 640, 480).full_mask
    ys, xs = np.nonzero(mask)
    assert xs.min() == 0  # really cut by the border
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    start = perturbed(gt)
    result = fit_pose(photo, mesh, start, box)
    assert 0.0 <= result.score <= 1.0 and result.score >= result.initial_score
    assert _deg(result.pose, gt) <= _deg(start, gt) + 1.0
    assert _centre(result.pose, gt) < _centre(start, gt)


@pytest.mark.parametrize("photographed, fitted", [(("mug", 1), ("mug", 2)),
                                                   (("car", 2), ("car", 1))])
def test_a_box_cut_by_the_border_does_not_place_another_instance(photographed, fitted):
    """Half the object beyond the left or right border, fitted with another model of the category
    from 10 deg / 10 px off: the cut box does not say where the object ends, so the fit must not
    span it (that put these centres 17-54 px off); every fitted centre stays within twice the
    start's error of the truth."""
    for az, px in [(-60, 30), (-70, 600), (30, 40), (120, 610)]:
        rng = np.random.default_rng(5)
        gt = Pose.from_degrees(az, 15, 0, 9.0, px, 240, viewport=2000)
        photo = background(rng, 640, 480)
        composite_object(photo, _mesh(*photographed), gt, np.array([40.0, 60, 170]))
        photo = np.clip(photo, 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(render(_mesh(*photographed), gt, 640, 480).full_mask)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert box[0] == 0 or box[2] == 640  # really cut by the border
        start = perturbed(gt)
        result = fit_pose(photo, _mesh(*fitted), start, box)
        assert _centre(result.pose, gt) <= 2 * _centre(start, gt), (az, px, result)


def test_another_instance_keeps_the_rotation_unless_a_turn_clearly_explains_more():
    """Procedural car 1 photographed, fitted with car 2 (another instance of the category, whose
    outline lies on the photo's edges only roughly) from 10 deg / 10 px off: no turn explains the
    photo clearly better, so the rotation stays exactly as it started while the model is placed
    on the box; car 1 itself (its outline fits) is turned towards the truth."""
    rng = np.random.default_rng(5)
    gt = Pose.from_degrees(-60, 15, 0, 9.0, 320, 240, viewport=2000)
    photo = background(rng, 640, 480)
    composite_object(photo, _mesh("car", 1), gt, np.array([40.0, 60, 170]))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(render(_mesh("car", 1), gt, 640, 480).full_mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    start = perturbed(gt)
    other = fit_pose(photo, _mesh("car", 2), start, box)
    assert other.rotation_kept and other.changed, other
    assert (other.pose.azimuth, other.pose.elevation, other.pose.theta) == \
        (start.azimuth, start.elevation, start.theta)
    assert _centre(other.pose, gt) < _centre(start, gt) / 2
    same = fit_pose(photo, _mesh("car", 1), start, box)
    assert not same.rotation_kept and _deg(same.pose, gt) < _deg(start, gt) - 3.0, same


def test_object_outside_the_photo_keeps_the_pose(car):
    photo, mesh, gt, _ = car
    start = gt.replace(px=-2000.0)
    result = fit_pose(photo, mesh, start)
    assert result.pose == start and "outside" in result.message and result.score == 0.0


def test_nan_pose_is_a_clear_value_error(car):
    photo, mesh, gt, box = car
    values = dict(gt.as_radians(), azimuth=float("nan"))
    with pytest.raises(InvalidPoseError, match="finite"):
        fit_pose(photo, mesh, values, box)
    assert issubclass(InvalidPoseError, ValueError)


@pytest.mark.parametrize("photo,bbox,match", [
    (np.zeros((4, 4, 3), np.uint8), None, "at least 8x8"),
    (np.zeros((480, 640, 3), np.float32) + np.nan, None, "finite"),
    (np.zeros((480, 640, 3), np.uint8), (10, 10, 12, 11), "smaller than"),
    (np.zeros((480, 640, 3), np.uint8), (0, float("inf"), 5, 5), "finite"),
])
def test_bad_photo_or_box_is_a_clear_value_error(car, photo, bbox, match):
    _, mesh, gt, _ = car
    with pytest.raises(EvidenceError, match=match):
        fit_pose(photo, mesh, gt, bbox)
    assert issubclass(EvidenceError, ValueError)


def test_bad_mode_and_mesh_are_fit_errors(car):
    photo, mesh, gt, box = car
    with pytest.raises(FitError, match="mode"):
        fit_pose(photo, mesh, gt, box, mode="rotation")
    with pytest.raises(FitError, match="mesh"):
        fit_pose(photo, "car.off", gt, box)
    assert issubclass(FitError, ValueError)


# --- Batch ----------------------------------------------------------------------------------------

def _auto_fit_script():
    spec = importlib.util.spec_from_file_location("auto_fit", REPO / "scripts" / "auto_fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_demo(tmp_path) -> Dataset:
    root = tmp_path / "data"
    make_demo_dataset(root, 3, seed=0, progress=False)
    return Dataset(root)


def test_fit_dataset_writes_one_line_per_object_and_errors_for_missing_images(tiny_demo,
                                                                              tmp_path):
    keys = [str(k) for k in tiny_demo.objects()]
    broken = tiny_demo.objects()[-1]
    tiny_demo.image_path(broken).unlink()
    out = tmp_path / "fit.jsonl"
    summary = fit_dataset(tiny_demo.root, out, progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["object_key"] for line in lines] == keys
    assert summary["objects"] == len(keys) and summary["errors"] == 1
    bad = lines[keys.index(str(broken))]
    assert set(bad) == {"object_key", "error"} and "image not found" in bad["error"]
    fields = {"object_key", "azimuth", "elevation", "theta", "distance", "px", "py",
              "cad_index", "score", "initial_score", "seconds"}
    for line in lines:
        if line is bad:
            continue
        assert set(line) == fields
        record = tiny_demo.read(tiny_demo.objects()[keys.index(line["object_key"])])
        assert line["cad_index"] == record.cad_index
        assert line["score"] >= line["initial_score"]
        assert all(math.isfinite(line[n]) for n in fields - {"object_key", "cad_index"})
        assert -180.0 <= line["azimuth"] <= 180.0


def test_fit_dataset_with_workers_keys_and_all_cads(tiny_demo, tmp_path):
    keys = [str(k) for k in tiny_demo.objects()][:2] + ["car/no_such_object_0", "not a key"]
    out = tmp_path / "fit.jsonl"
    summary = fit_dataset(tiny_demo.root, out, keys=keys, workers=2, all_cads=True,
                          progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["object_key"] for line in lines] == keys
    assert summary["errors"] == 2 and summary["fitted"] == 2
    for line in lines[:2]:
        category = line["object_key"].split("/")[0]
        assert line["cad_index"] in tiny_demo.cad.indices(category)
    assert "object key" in lines[3]["error"]


def test_auto_fit_script(tiny_demo, tmp_path, capsys):
    script = _auto_fit_script()
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0
    assert "--all-cads" in capsys.readouterr().out
    out = tmp_path / "out.jsonl"
    key = str(tiny_demo.objects()[0])
    assert script.main(["--data-root", str(tiny_demo.root), "--out", str(out), "--keys", key,
                        "--quiet"]) == 0
    assert json.loads(out.read_text())["object_key"] == key
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # one line, exit 2 (pose6d.cli.fail)
        script.main(["--data-root", str(tmp_path / "missing"), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
