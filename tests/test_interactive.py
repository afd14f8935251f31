"""Interactive refinement through /predict with a context, as Label Studio sends it."""
import math

import numpy as np
import pytest

from pose6d import labeling
from pose6d.camera import Pose
from ml_backend.commands import CommandError, parse_commands
from pose6d.box_fit import fit_pose_to_box
from pose6d.errors import BadInput
from backend_helpers import (command_context, interactive_body, make_client, numbers_of,
                             results_by_name, task_for)
from checks import decode_brush
from reference_camera import reference_pixels


@pytest.fixture
def session(tiny_dataset, tiny_keys):
    client = make_client(tiny_dataset)
    task = task_for(tiny_dataset, tiny_keys[0], 7)
    record = tiny_dataset.read(tiny_keys[0])
    state = {"numbers": {k: round(v, 2) for k, v in record.pose.as_degrees().items()},
             "cad": record.cad_index}

    def send(command: str) -> dict:
        res = client.post("/predict", json=interactive_body(
            task, command_context(state["numbers"], state["cad"], command)))
        assert res.status_code == 200, res.json
        result = res.json["results"][0]["result"]
        by = results_by_name(result)
        if numbers_of(result):
            state["numbers"] = numbers_of(result)
            state["cad"] = int(by[labeling.CAD]["value"]["choices"][0])
        return by

    return send, state, record, client, task


def test_commands_move_the_pose_and_overlay(session):
    send, state, record, _, _ = session
    az0 = state["numbers"]["azimuth"]
    by = send("a++")
    assert state["numbers"]["azimuth"] == pytest.approx(az0 + 30)
    assert by[labeling.COMMAND]["value"]["text"] == []  # the box is cleared for the next command
    # The default overlay: the edges only, the photo under the mesh untouched.
    assert not decode_brush(by[labeling.MESH_REGION_ID]["value"]["rle"], 320, 240).any()
    assert decode_brush(by[labeling.EDGES_REGION_ID]["value"]["rle"], 320, 240).any()
    by = send("o=solid")
    assert by[labeling.COMMAND]["value"]["text"] == ["\u2139 overlay: solid (o: next style)\n"]
    mask1 = decode_brush(by[labeling.MESH_REGION_ID]["value"]["rle"], 320, 240)
    send("x-- y+")
    assert state["numbers"]["px"] == pytest.approx(record.pose.px - 30)
    assert state["numbers"]["py"] == pytest.approx(record.pose.py + 5)
    by = send("d+ d+")
    assert state["numbers"]["distance"] == pytest.approx(record.pose.distance + 0.4)
    mask2 = decode_brush(by[labeling.MESH_REGION_ID]["value"]["rle"], 320, 240)
    assert mask2.sum() < mask1.sum()  # further away: smaller
    send("n")
    assert state["cad"] == 3
    send("n")
    assert state["cad"] == 1  # wraps around the category's models (indices 1 and 3)
    send("u")
    assert state["cad"] == 3
    send("u")
    send("u")
    assert state["numbers"]["distance"] == pytest.approx(record.pose.distance)
    send("r")
    assert state["numbers"]["azimuth"] == pytest.approx(az0) and state["cad"] == record.cad_index


def test_typed_values_are_kept_and_rendered(session):
    send, state, record, _, _ = session
    state["numbers"]["elevation"] = 42.0  # typed into the Number field, then "." renders it
    by = send(".")
    assert state["numbers"]["elevation"] == pytest.approx(42.0)
    send("a=-170 a-20")
    assert state["numbers"]["azimuth"] == pytest.approx(170.0)  # wrapped to (-180, 180]


def test_bad_command_reports_in_the_box_and_changes_nothing(session):
    send, state, _, _, _ = session
    before = dict(state["numbers"])
    by = send("zz")
    assert by[labeling.COMMAND]["value"]["text"][0].startswith("\u26a0")
    assert labeling.MESH_REGION_ID not in by and state["numbers"] == before


@pytest.mark.parametrize("left", [[], ["\u2139 overlay: solid (o: next style)\n"]])
def test_a_box_call_without_a_typed_line_says_the_line_was_lost(session, left):
    """Label Studio calls for the box only on Enter, with the line just typed last (deleting an
    entry calls nothing). An answer that lands between the Enter and the call replaces the box
    first, so the call carries the box as that answer left it (empty, or its note): the line
    never reached the backend, which says so and changes nothing."""
    send, state, record, client, task = session
    start = dict(state["numbers"])
    send("a+")
    moved = dict(state["numbers"])
    context = command_context(moved, state["cad"], "")
    context[-1]["value"]["text"] = left
    res = client.post("/predict", json=interactive_body(task, context))
    by = results_by_name(res.json["results"][0]["result"])
    (message,) = by[labeling.COMMAND]["value"]["text"]
    assert message.startswith("\u26a0") and "type it again" in message, message
    assert not numbers_of(list(by.values()))  # nothing moves
    # typed again, the line runs from the values shown; the undo chain is intact
    assert send("a+") and state["numbers"]["azimuth"] == pytest.approx(moved["azimuth"] + 1)
    send("u")
    send("u")
    assert state["numbers"] == pytest.approx(start)


def test_unanswered_lines_run_after_a_note(session):
    """Lines typed while the backend was down stay in the box after its last note; the next
    call runs them all, in order, and only them."""
    send, state, record, client, task = session
    az = state["numbers"]["azimuth"]
    context = command_context(state["numbers"], state["cad"], "")
    context[-1]["value"]["text"] = ["\u2139 overlay: solid (o: next style)\n", "a+", "a++"]
    res = client.post("/predict", json=interactive_body(task, context))
    assert numbers_of(res.json["results"][0]["result"])["azimuth"] == pytest.approx(az + 31)


def test_empty_context_changes_nothing(session):
    _, _, _, client, task = session
    res = client.post("/predict", json=interactive_body(task, []))
    assert res.json["results"][0]["result"] == []


def test_centre_click_and_box_fit(session, tiny_dataset, tiny_keys):
    send, state, record, client, task = session
    click = {"id": "kp1", "from_name": labeling.CENTRE, "to_name": labeling.IMAGE,
             "type": "keypointlabels", "original_width": 320, "original_height": 240,
             "value": {"x": 50.0, "y": 25.0, "width": 1, "keypointlabels": [labeling.CENTRE_LABEL]}}
    res = client.post("/predict", json=interactive_body(task, [click]))
    shown = numbers_of(res.json["results"][0]["result"])
    assert shown["px"] == pytest.approx(159.5) and shown["py"] == pytest.approx(59.5)
    assert shown["azimuth"] == pytest.approx(state["numbers"]["azimuth"])
    box = labeling.box_region([40, 50, 200, 150], 320, 240, region_id="user_box")
    res = client.post("/predict", json=interactive_body(task, [box]))
    shown = numbers_of(res.json["results"][0]["result"])
    pose = Pose.from_degrees(**shown, viewport=record.pose.viewport)
    uv = reference_pixels(tiny_dataset.cad.mesh("car", 1).vertices, pose)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    # The box's borders are image coordinates; pixel centres lie half a pixel in (docs/camera.md).
    assert np.allclose((lo + hi) / 2, [120 - 0.5, 100 - 0.5], atol=0.5)
    assert math.hypot(*(hi - lo)) == pytest.approx(math.hypot(160, 100), rel=0.02)


def test_fit_pose_to_box_keeps_rotation():
    v = np.random.default_rng(0).uniform(-0.5, 0.5, (200, 3))
    pose = Pose.from_degrees(20, 10, 5, 5, 100, 100, viewport=800)
    fitted = fit_pose_to_box(v, pose, (300, 200, 420, 330))
    assert (fitted.azimuth, fitted.elevation, fitted.theta) == (pose.azimuth, pose.elevation, pose.theta)
    with pytest.raises(BadInput):
        fit_pose_to_box(v, pose, (10, 10, 11, 11))


@pytest.mark.parametrize("text, kinds", [("a+", ["add"]), ("A++,e-  d=3", ["add", "add", "set"]),
                                         ("", ["refresh"]), ("n p c3 r u f .", ["cad_next", "cad_prev",
                                         "cad_set", "reset", "undo", "flip", "refresh"]),
                                         ("x+12.5 \u26a0 old error", ["add"]),
                                         ("e=30 solve", ["set", "solve"])])
def test_parse_commands(text, kinds):
    assert [c.kind for c in parse_commands(text)] == kinds


@pytest.mark.parametrize("text", ["a", "q+", "a=", "a+x", "c", "rm -rf"])
def test_parse_commands_rejects(text):
    with pytest.raises(CommandError):
        parse_commands(text)


def test_workers_share_the_session(tiny_dataset, tiny_keys):
    """Two workers (two app instances on one dataset, as gunicorn runs them): a centre click carries
    no Numbers, so the worker that gets it must know the pose another worker showed; undo too."""
    worker_a, worker_b = make_client(tiny_dataset), make_client(tiny_dataset)
    task = task_for(tiny_dataset, tiny_keys[0], 9)
    record = tiny_dataset.read(tiny_keys[0])
    numbers = {k: round(v, 2) for k, v in record.pose.as_degrees().items()}
    res = worker_a.post("/predict", json=interactive_body(task, command_context(numbers, 1, "a++")))
    turned = numbers_of(res.json["results"][0]["result"])
    click = {"id": "kp", "from_name": labeling.CENTRE, "to_name": labeling.IMAGE, "type": "keypoint",
             "original_width": 320, "original_height": 240, "value": {"x": 25.0, "y": 50.0, "width": 1}}
    res = worker_b.post("/predict", json=interactive_body(task, [click]))
    clicked = numbers_of(res.json["results"][0]["result"])
    assert clicked["azimuth"] == pytest.approx(turned["azimuth"])  # not the initial pose
    assert (clicked["px"], clicked["py"]) == (pytest.approx(79.5), pytest.approx(119.5))
    res = worker_a.post("/predict", json=interactive_body(task, command_context(clicked, 1, "u")))
    assert numbers_of(res.json["results"][0]["result"]) == turned


def test_a_submission_ends_the_chain(tiny_dataset, tiny_keys):
    """After an annotation of the task is submitted, the next annotator's first click starts
    from the task's initial pose, not from the previous annotator's last one."""
    import ls_payloads as ls

    client = make_client(tiny_dataset)
    task = task_for(tiny_dataset, tiny_keys[0], 11)
    record = tiny_dataset.read(tiny_keys[0])
    numbers = {k: round(v, 2) for k, v in record.pose.as_degrees().items()}
    client.post("/predict", json=interactive_body(task, command_context(numbers, 1, "a++")))
    done = ls.created(41, 11, str(tiny_keys[0]), updated=1, result=ls.pose_result(azimuth=numbers["azimuth"] + 30))
    assert client.post("/webhook", json=done).status_code == 201
    click = {"id": "kp", "from_name": labeling.CENTRE, "to_name": labeling.IMAGE, "type": "keypoint",
             "original_width": 320, "original_height": 240, "value": {"x": 50.0, "y": 50.0, "width": 1}}
    res = client.post("/predict", json=interactive_body(task, [click]))
    assert numbers_of(res.json["results"][0]["result"])["azimuth"] == pytest.approx(numbers["azimuth"])


def test_huge_numbers_are_command_errors():
    with pytest.raises(CommandError):
        parse_commands("c" + "9" * 400)
    commands = parse_commands("a+" + "9" * 400)  # parses; the pose it makes is refused later
    assert commands[0].kind == "add"


def test_huge_numbers_never_500(session):
    send, state, _, _, _ = session
    for text in ("c" + "9" * 400, "a+" + "9" * 400, "d=" + "9" * 400, "x=" + "9" * 30):
        by = send(text)  # asserts a 200
        assert labeling.MESH_REGION_ID in by or by[labeling.COMMAND]["value"]["text"][0][0] == "\u26a0"


def test_range_notes_follow_the_projects_config():
    from conftest import REPO
    from pose6d.labeling_config import number_ranges

    default = number_ranges((REPO / "labeling_config/pose6d.xml").read_text())
    assert default["px"] == (labeling.NUMBER_SPECS["px"].min, labeling.NUMBER_SPECS["px"].max)
    wider = '<View><Number name="px" toName="image" min="-3200" max="6400" step="0.1"/></View>'
    assert number_ranges(wider)["px"] == (-3200.0, 6400.0)
    assert number_ranges(None)["py"] == default["py"]
