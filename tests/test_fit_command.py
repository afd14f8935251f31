"""The command box's auto-fit (`fit`, `fitxy`, `fitcad`, `fitaz`) through the HTTP contract, on the demo
dataset (photos with a known true pose): one Enter fits, one `u` undoes it."""
from __future__ import annotations

import math
import sys

import pytest

from backend_helpers import (command_context, interactive_body, make_client, numbers_of,
                             results_by_name, task_for)
from pose6d import labeling
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, Dataset, ObjectKey
from pose6d.pose_error import pose_rotation_error

KEY = ObjectKey.parse("car/demo_car_0009_0")  # whole, in view, its true CAD model given
INFO, ERROR = "\u2139", "\u26a0"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Dataset:
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("fitcmd") / "demo"
    make_demo_dataset(root, objects=16, seed=0, progress=False)
    return Dataset(root)


def errors(numbers: dict[str, float], truth: Pose) -> tuple[float, float]:
    pose = Pose.from_degrees(**numbers, viewport=truth.viewport)
    return (math.degrees(pose_rotation_error(pose, truth)),
            math.hypot(pose.px - truth.px, pose.py - truth.py))


def sender(client, task: dict, cad: int, box_id: str):
    """send(numbers, command) -> (the Numbers shown, the results by name), as the command box
    of one annotation (``box_id``) would."""
    def send(numbers, command):
        res = client.post("/predict", json=interactive_body(
            task, command_context(numbers, cad, command, box_id)))
        assert res.status_code == 200, res.json
        result = res.json["results"][0]["result"]
        return numbers_of(result), results_by_name(result)
    return send


def test_fit_moves_a_perturbed_pose_towards_the_photo_and_u_undoes_it(demo):
    truth = demo.read(KEY, GROUND_TRUTH)
    client = make_client(demo)
    task = task_for(demo, KEY, 3)
    task["data"]["cad_index"] = truth.cad_index
    deg = truth.pose.as_degrees()
    start = {n: round(v, labeling.NUMBER_SPECS[n].decimals) for n, v in dict(
        deg, azimuth=deg["azimuth"] + 6, elevation=deg["elevation"] - 4, px=deg["px"] + 9,
        py=deg["py"] - 6, distance=deg["distance"] * 1.08).items()}

    send = sender(client, task, truth.cad_index, "boxF")
    shown, _ = send(start, ".")
    fitted, by = send(shown, "fit")
    (line,) = by[labeling.COMMAND]["value"]["text"]
    assert line.startswith(f"{INFO} fit: score ") and "u undoes it" in line
    before, after = (float(s) for s in line.split("score ")[1].split(" in ")[0].split(" -> "))
    assert after > before
    rot0, centre0 = errors(shown, truth.pose)
    rot1, centre1 = errors(fitted, truth.pose)
    assert rot1 < rot0 and centre1 < centre0 / 2, (rot0, rot1, centre0, centre1)
    back, _ = send(fitted, "u")
    assert back == pytest.approx(shown)
    kept, _ = send(back, "fitxy")  # centre and distance only: the rotation stays as it was
    assert {n: kept[n] for n in ("azimuth", "elevation", "theta")} == pytest.approx(
        {n: back[n] for n in ("azimuth", "elevation", "theta")})
    assert errors(kept, truth.pose)[1] < centre0
    _, by = send(back, "fit a+")
    assert by[labeling.COMMAND]["value"]["text"][0].startswith(ERROR)


def test_fitaz_finds_an_object_turned_far_off_that_fit_leaves(demo):
    """An azimuth 135 deg off the truth: `fit`'s far hypotheses (the half turn and the quarter
    turns) all leave it 45 deg off, and it stays far off; `fitaz` tries the azimuth all round
    and turns it back."""
    truth = demo.read(KEY, GROUND_TRUTH)
    client = make_client(demo)
    task = task_for(demo, KEY, 4)
    task["data"]["cad_index"] = truth.cad_index
    deg = truth.pose.as_degrees()
    start = {n: round(v, labeling.NUMBER_SPECS[n].decimals)
             for n, v in dict(deg, azimuth=deg["azimuth"] + 135).items()}

    send = sender(client, task, truth.cad_index, "boxAZ")
    shown, _ = send(start, ".")
    assert errors(shown, truth.pose)[0] > 130
    local, _ = send(shown, "fit")
    assert errors(local, truth.pose)[0] > 30, errors(local, truth.pose)
    back, _ = send(local, "u")
    turned, by = send(back, "fitaz")
    rot, centre = errors(turned, truth.pose)
    assert rot < 6.0 and centre < 3.0, (rot, centre)  # the turns are 30 deg apart: 15 deg off
    (line,) = by[labeling.COMMAND]["value"]["text"]
    turn = float(line.split("turned ")[1].split(" deg")[0])
    assert abs(turn + 135) < 6, line


def test_fitaz_with_another_model_shown_tries_every_model_all_round(demo):
    """Turned 100 deg off with another CAD model of the category shown: `fitaz` fits every model
    all round, and the true one, turned back, wins (the info line names it)."""
    truth = demo.read(KEY, GROUND_TRUTH)
    wrong = next(i for i in demo.cad.indices(KEY.category) if i != truth.cad_index)
    client = make_client(demo)
    task = task_for(demo, KEY, 5)
    task["data"]["cad_index"] = wrong
    deg = truth.pose.as_degrees()
    start = {n: round(v, labeling.NUMBER_SPECS[n].decimals)
             for n, v in dict(deg, azimuth=deg["azimuth"] - 100).items()}

    send = sender(client, task, wrong, "boxAZ2")
    shown, _ = send(start, ".")
    turned, by = send(shown, "fitaz")
    assert by[labeling.CAD]["value"]["choices"] == [str(truth.cad_index)]
    rot, centre = errors(turned, truth.pose)
    assert rot < 6.0 and centre < 3.0, (rot, centre)
    (line,) = by[labeling.COMMAND]["value"]["text"]
    assert f"model {truth.cad_index} explains the photo best" in line, line


def test_without_opencv_fit_says_so_and_changes_nothing(demo, monkeypatch):
    """The Docker image leaves OpenCV out: `fit` is then an error line naming what is missing."""
    monkeypatch.setitem(sys.modules, "pose6d.fitting.fit", None)  # import pose6d.fitting.fit -> ImportError
    client = make_client(demo)
    task = task_for(demo, KEY, 4)
    numbers = {n: round(v, labeling.NUMBER_SPECS[n].decimals)
               for n, v in demo.read(KEY).pose.as_degrees().items()}
    res = client.post("/predict", json=interactive_body(
        task, command_context(numbers, task["data"]["cad_index"], "fit", "boxG")))
    by = results_by_name(res.json["results"][0]["result"])
    (line,) = by[labeling.COMMAND]["value"]["text"]
    assert line.startswith(ERROR) and "opencv-python-headless" in line
    assert labeling.MESH_REGION_ID not in by and not numbers_of(res.json["results"][0]["result"])


def test_pins_are_drawn_and_returned_at_the_pose_a_fit_chose(demo):
    """A fit after pins: the pins' model points go back (and are drawn) where they are at the
    fitted pose, not at the pose before the fit. The pin's 3D point by an independent ray cast
    (tests/test_pins.py's), its pixels by the transcribed camera formula."""
    import numpy as np

    from pose6d.cad_library import read_off
    from pose6d.inout import read_image
    from reference_camera import rasterize_reference, reference_pixels
    from test_pins import first_hits, reference_rays

    truth = demo.read(KEY, GROUND_TRUTH)
    height, width = read_image(demo.image_path(KEY)).shape[:2]
    client = make_client(demo)
    task = task_for(demo, KEY, 9)
    task["data"]["cad_index"] = truth.cad_index
    deg = truth.pose.as_degrees()
    start = {n: round(v, labeling.NUMBER_SPECS[n].decimals) for n, v in dict(
        deg, px=deg["px"] + 9, py=deg["py"] - 6, distance=deg["distance"] * 1.08).items()}
    send = sender(client, task, truth.cad_index, "boxP")
    shown, _ = send(start, ".")
    pose = Pose.from_degrees(**shown, viewport=truth.pose.viewport)
    vertices, faces = read_off(demo.root / f"CAD/car/{truth.cad_index:02d}.off")
    mask = rasterize_reference(reference_pixels(vertices, pose), faces, width, height)
    ys, xs = np.nonzero(mask[3:-3, 3:-3] & mask[:-6, 3:-3] & mask[6:, 3:-3])
    u, v = float(xs[len(xs) // 2] + 3), float(ys[len(ys) // 2] + 3)
    point = first_hits(vertices, faces, *reference_rays(np.array([[u, v]]), pose))[0]

    def region(rid, x, y):
        return {"id": rid, "from_name": labeling.PIN, "to_name": labeling.IMAGE,
                "type": "keypointlabels", "original_width": width, "original_height": height,
                "value": {"x": 100 * (x + 0.5) / width, "y": 100 * (y + 0.5) / height,
                          "width": 0.6, "keypointlabels": [labeling.PIN_LABEL]}}

    for context in ([region("m1", u, v)], [region("m1", u, v), region("t1", u, v)]):
        res = client.post("/predict", json=interactive_body(task, context))
        assert res.status_code == 200, res.json
    fitted, by = send(shown, "fitxy")
    assert fitted != shown  # the fit moved the centre (the start was 9, -6 px off)
    after = Pose.from_degrees(**fitted, viewport=truth.pose.viewport)
    returned = by["m1"]["value"]
    got = (returned["x"] * width / 100 - 0.5, returned["y"] * height / 100 - 0.5)
    expected = reference_pixels(point[None], after)[0]
    before = reference_pixels(point[None], pose)[0]
    assert np.hypot(*(expected - before)) > 2  # the two answers are told apart
    assert got == pytest.approx(tuple(expected), abs=0.05)
