"""Pins, copy and the photo's other objects in the backend's loop (issue 21), through /predict
as Label Studio sends it: a pin call carries every pin point of the annotation (one label)."""
from __future__ import annotations

import numpy as np
import pytest

from backend_helpers import (command_context, interactive_body, make_client, numbers_of,
                             results_by_name, task_for)
from checks import decode_brush
from pose6d import labeling
from pose6d.cad_library import read_off
from pose6d.camera import Pose
from pose6d.dataset import SYNCED, ObjectRecord
from reference_camera import rasterize_reference, reference_pixels

W, H = 320, 240


def pin_region(rid: str, u: float, v: float) -> dict:
    """A KeyPointLabels result as Label Studio sends it: percent of the photo, where pixel
    (col, row)'s centre is at (col + 0.5, row + 0.5) (docs/camera.md)."""
    return {"id": rid, "from_name": labeling.PIN, "to_name": labeling.IMAGE,
            "type": "keypointlabels", "original_width": W, "original_height": H,
            "image_rotation": 0, "value": {"x": 100 * (u + 0.5) / W, "y": 100 * (v + 0.5) / H,
                                           "width": 0.6, "keypointlabels": [labeling.PIN_LABEL]}}


@pytest.fixture
def loop(tiny_dataset, tiny_keys):
    key = tiny_keys[0]  # car img_a_1_0; img_a_1_1 is its neighbour
    task = task_for(tiny_dataset, key, 11)
    record = tiny_dataset.read(key)
    state = {"numbers": {k: round(v, 2) for k, v in record.pose.as_degrees().items()},
             "cad": record.cad_index, "client": make_client(tiny_dataset)}

    def post(context: list[dict]) -> dict:
        res = state["client"].post("/predict", json=interactive_body(task, context))
        assert res.status_code == 200, res.json
        result = res.json["results"][0]["result"]
        if numbers_of(result):
            state["numbers"] = numbers_of(result)
        for r in result:  # the CAD model shown, as the gallery would now send it
            if r["type"] == "choices" and r["from_name"] == labeling.CAD:
                state["cad"] = int(r["value"]["choices"][0])
        return results_by_name(result)

    def command(text: str) -> dict:
        return post(command_context(state["numbers"], state["cad"], text))

    def pins(*regions) -> dict:
        return post(list(regions))

    vertices, faces = read_off(tiny_dataset.root / "CAD/car/01.off")
    return command, pins, state, (vertices, faces), tiny_dataset


def shown(state) -> Pose:
    return Pose.from_degrees(**state["numbers"], viewport=500)


def inside_pixel(mesh, pose: Pose, pick: int = 0) -> tuple[int, int]:
    """A pixel well inside the silhouette (reference rasteriser), away from its outline."""
    mask = rasterize_reference(reference_pixels(mesh[0], pose), mesh[1], W, H)
    core = mask[2:-2, 2:-2] & mask[:-4, 2:-2] & mask[4:, 2:-2] & mask[2:-2, :-4] & mask[2:-2, 4:]
    ys, xs = np.nonzero(core)
    i = [len(xs) // 2, 0, len(xs) - 1, len(xs) // 4, 3 * len(xs) // 4][pick]
    return int(xs[i]) + 2, int(ys[i]) + 2


def place_pins(pins, state, mesh, offsets: list[tuple[float, float]]) -> list[dict]:
    """One pin per offset, in turn: a model point well inside the overlay shown (inside_pixel,
    pick k), then its photo point that far from it (px); each point its own pin call, as Label
    Studio sends them. The pin points, m0, t0, m1, t1, ..."""
    regions: list[dict] = []
    for k, (du, dv) in enumerate(offsets):
        u, v = inside_pixel(mesh, shown(state), pick=k)
        regions.append(pin_region(f"m{k}", u, v))
        pins(*regions)
        regions.append(pin_region(f"t{k}", u + du, v + dv))
        pins(*regions)
    return regions


def note(by: dict) -> str:
    return "\n".join(by[labeling.COMMAND]["value"]["text"])


def test_one_pin_moves_the_centre_and_is_one_undo_step(loop):
    command, pins, state, mesh, _ = loop
    command(".")
    before = dict(state["numbers"])
    u, v = inside_pixel(mesh, shown(state))
    by = pins(pin_region("m1", u, v))
    assert "pin 1: model point set" in note(by) and state["numbers"] == before
    by = pins(pin_region("m1", u, v), pin_region("t1", u + 12, v - 7))
    # the surface point seen at (u, v) goes to (u + 12, v - 7): the centre moves by that much
    assert state["numbers"]["px"] == pytest.approx(before["px"] + 12, abs=0.051)
    assert state["numbers"]["py"] == pytest.approx(before["py"] - 7, abs=0.051)
    assert all(state["numbers"][n] == before[n] for n in ("azimuth", "elevation", "theta",
                                                          "distance"))
    # the pin points come back with their ids (Label Studio drops a smart tool's own point):
    # the photo point where it was put, the model point where it is now (on the photo point)
    for rid in ("m1", "t1"):
        assert by[rid]["from_name"] == labeling.PIN and by[rid]["type"] == "keypointlabels"
        assert by[rid]["value"]["keypointlabels"] == [labeling.PIN_LABEL]
        assert by[rid]["value"]["x"] == pytest.approx(100 * (u + 12 + 0.5) / W, abs=0.05)
        assert by[rid]["value"]["y"] == pytest.approx(100 * (v - 7 + 0.5) / H, abs=0.05)
    drawn = decode_brush(by[labeling.PINS_REGION_ID]["value"]["rle"], W, H)
    assert drawn[v - 7, u + 12 - 6] or drawn[v - 7, u + 12 + 6]  # the ring round the target
    assert drawn[v - 7 - 3: v - 7 + 4, u + 12 - 3: u + 12 + 4].any()
    assert "pins: 1 0." in note(command("pins"))  # its residual, under a pixel
    command("u")
    assert state["numbers"] == before


def test_two_pins_turn_and_scale_keep_azimuth_elevation(loop):
    command, pins, state, mesh, _ = loop
    command(".")
    before = dict(state["numbers"])
    (u1, v1), (u2, v2) = inside_pixel(mesh, shown(state), 1), inside_pixel(mesh, shown(state), 2)
    # the second photo point: the first pin's vector turned and stretched (image similarity)
    pins(pin_region("m1", u1, v1), pin_region("t1", u1, v1))
    by = pins(pin_region("m1", u1, v1), pin_region("t1", u1, v1), pin_region("m2", u2, v2),
              pin_region("t2", u1 + 1.2 * (u2 - u1), v1 + 1.2 * (v2 - v1)))
    assert "pins: 1" in note(by) and ", 2 " in note(by)
    assert state["numbers"]["azimuth"] == before["azimuth"]
    assert state["numbers"]["elevation"] == before["elevation"]
    assert state["numbers"]["distance"] < before["distance"] / 1.1  # closer: larger


def test_pins_survive_a_restart_and_unpin(loop, tiny_dataset):
    command, pins, state, mesh, _ = loop
    command(".")
    u, v = inside_pixel(mesh, shown(state))
    pins(pin_region("m1", u, v))
    pins(pin_region("m1", u, v), pin_region("t1", u + 20, v))
    moved = dict(state["numbers"])
    state["client"] = make_client(tiny_dataset)  # a restarted backend: the same store
    # the reloaded annotation sends its points again, plus a new one: m1 keeps its 3D point
    # (not read again at the moved pose), t1 stays its target, m9 is a new model point
    u2, v2 = inside_pixel(mesh, shown(state), 1)
    by = pins(pin_region("m1", u, v), pin_region("t1", u + 20, v), pin_region("m9", u2, v2))
    assert "pin 2: model point set" in note(by) and state["numbers"] == moved
    assert "1 0." in note(command("pins")) and "2 waiting" in note(command("pins"))
    assert "pin 1 removed" in note(command("unpin 1"))
    assert "1 waiting" in note(command("pins"))
    assert "removed" in note(command("unpin"))
    assert "none" in note(command("pins"))
    assert "no pin 3" in note(command("unpin 3"))


def test_a_pin_off_the_model_is_refused_and_ignored(loop):
    command, pins, state, mesh, _ = loop
    command(".")
    by = pins(pin_region("m1", 2, 2))
    assert note(by).startswith("\u26a0") and "not on the model" in note(by)
    u, v = inside_pixel(mesh, shown(state))
    by = pins(pin_region("m1", 2, 2), pin_region("m2", u, v))  # m2 starts a pin, not a target
    assert "pin 1: model point set" in note(by)


def test_copy_takes_the_neighbours_rotation(loop):
    command, _, state, _, dataset = loop
    command(".")
    px = state["numbers"]["px"]
    command("copy 1")  # object 1 of the photo: its initial pose (az 40, e 15, theta 0)
    assert (state["numbers"]["azimuth"], state["numbers"]["elevation"],
            state["numbers"]["theta"]) == (40, 15, 0)
    assert state["numbers"]["px"] == px
    assert "no object 5" in note(command("copy 5"))
    key = dataset.objects()[1]
    dataset.write(key, ObjectRecord(Pose.from_degrees(-77, 20, 3, 8, 180, 120, viewport=500), 3),
                  SYNCED)  # a synced label wins over the initial pose
    command("copy 1")
    assert (state["numbers"]["azimuth"], state["numbers"]["elevation"],
            state["numbers"]["theta"]) == (-77, 20, 3)


def test_the_photos_other_objects_are_drawn_faintly(tiny_dataset, tiny_keys):
    client = make_client(tiny_dataset)
    res = client.post("/predict", json={"tasks": [task_for(tiny_dataset, tiny_keys[0], 1),
                                                  task_for(tiny_dataset, tiny_keys[2], 2)]})
    first, second = (results_by_name(r["result"]) for r in res.json["results"])
    region = first[labeling.NEIGHBOURS_REGION_ID]
    drawn = decode_brush(region["value"]["rle"], W, H)
    other = tiny_dataset.read(tiny_keys[1])
    v, f = read_off(tiny_dataset.root / "CAD/car/03.off")
    expected = rasterize_reference(reference_pixels(v, other.pose), f, W, H)
    iou = (drawn & expected).sum() / (drawn | expected).sum()
    assert iou > 0.97
    # its number (copy 1) written at its centre, where its origin projects: (px, py)
    number = decode_brush(first[labeling.NEIGHBOUR_NUMBERS_REGION_ID]["value"]["rle"], W, H)
    ys, xs = np.nonzero(number)
    assert 20 <= len(xs) < 400
    assert (xs.min() + xs.max()) / 2 == pytest.approx(other.pose.px, abs=1.0)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(other.pose.py, abs=1.0)
    assert xs.max() - xs.min() < 20 and ys.max() - ys.min() < 30  # one digit, not the object's
    assert labeling.NEIGHBOURS_REGION_ID not in second  # the punching bag is alone
    assert labeling.NEIGHBOUR_NUMBERS_REGION_ID not in second


def test_neighbours_are_drawn_at_the_pose_their_own_task_opens_at(tiny_dataset, tiny_keys,
                                                                   tmp_path):
    """With a predictions file as the pose source, a neighbour with no synced label is drawn
    (and copied) at its predicted pose, the one its own task opens at, not at the dataset's
    initial record."""
    import json

    predicted = {"azimuth": -100, "elevation": 10, "theta": 20, "distance": 8, "px": 250,
                 "py": 150}
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps({"object_key": str(tiny_keys[1]), "cad_index": 3, **predicted}))
    client = make_client(tiny_dataset, pose_source=f"file:{path}")
    res = client.post("/predict", json={"tasks": [task_for(tiny_dataset, tiny_keys[0], 1)]})
    drawn = decode_brush(results_by_name(res.json["results"][0]["result"])[
        labeling.NEIGHBOURS_REGION_ID]["value"]["rle"], W, H)
    v, f = read_off(tiny_dataset.root / "CAD/car/03.off")

    def iou(pose: Pose) -> float:
        expected = rasterize_reference(reference_pixels(v, pose), f, W, H)
        return (drawn & expected).sum() / (drawn | expected).sum()

    assert iou(Pose.from_degrees(**predicted, viewport=500)) > 0.97
    assert iou(tiny_dataset.read(tiny_keys[1]).pose) < 0.5


def test_another_annotators_tab_leaves_the_pins_alone(tiny_dataset, tiny_keys):
    """Label Studio names no annotation in a smart call, only the requesting user (by their
    drafts, none before the first autosave): a second annotator's first pin must not land in
    the first one's chain."""
    client = make_client(tiny_dataset)
    key = tiny_keys[0]
    base = task_for(tiny_dataset, key, 21)
    record = tiny_dataset.read(key)
    numbers = {k: round(v, 2) for k, v in record.pose.as_degrees().items()}
    a_task = dict(base, drafts=[{"user": "a@example.com", "result": [],
                                 "updated_at": "2026-12-06T10:00:00Z"}])

    def post(task, context):
        res = client.post("/predict", json=interactive_body(task, context))
        assert res.status_code == 200
        return results_by_name(res.json["results"][0]["result"])

    vertices, faces = read_off(tiny_dataset.root / "CAD/car/01.off")
    post(a_task, command_context(numbers, record.cad_index, ".", box_id="box-A"))
    u, v = inside_pixel((vertices, faces), record.pose)
    post(a_task, [pin_region("a1", u, v)])
    post(a_task, [pin_region("a1", u, v), pin_region("a2", u + 10, v)])
    # B: no draft yet, a pin before any command: refused, A's pin untouched
    by = post(base, [pin_region("b1", u, v)])
    assert "command box first" in note(by)
    a_numbers = {k: v for k, v in numbers.items()}
    a_numbers["px"] = numbers["px"] + 10
    assert "pins: 1 0." in note(post(a_task, command_context(a_numbers, record.cad_index, "pins",
                                                             box_id="box-A")))
    # B types "." (its box names its annotation): its pins start a chain of their own
    post(base, command_context(numbers, record.cad_index, ".", box_id="box-B"))
    assert "pin 1: model point set" in note(post(base, [pin_region("b1", u, v)]))
    assert "pins: 1 0." in note(post(a_task, command_context(a_numbers, record.cad_index, "pins",
                                                             box_id="box-A")))


def two_tabs(dataset, key, task_id: int):
    """A task seen from two tabs: (post(task, context) -> the answer's results by name, the
    task as a call without drafts carries it, the task with A's draft (naming A's command box
    "box-A"), A's "." command context, the initial pose's numbers, the record)."""
    client = make_client(dataset)
    base = task_for(dataset, key, task_id)
    record = dataset.read(key)
    numbers = {k: round(v, 2) for k, v in record.pose.as_degrees().items()}
    a_context = command_context(numbers, record.cad_index, ".", box_id="box-A")
    a_task = dict(base, drafts=[{"user": "a@example.com", "result": a_context,
                                 "updated_at": "2026-12-06T10:00:00Z"}])

    def post(task, context):
        res = client.post("/predict", json=interactive_body(task, context))
        assert res.status_code == 200
        return results_by_name(res.json["results"][0]["result"])

    return post, base, a_task, a_context, numbers, record


def test_a_first_pin_two_tabs_could_have_placed_waits_for_a_draft(tiny_dataset, tiny_keys):
    """A and B type "." within seconds; A's first pin point comes before Label Studio saved
    A's draft (the call names nobody): refused, recorded nowhere, the point returned as it came
    (Label Studio drops a smart tool's point once the answer comes; returned, it stays).
    With A's draft (naming A's command box) that point, which Label Studio sends again with the
    next click, is A's pin 1, and its photo point moves A's pose by the offset; B has no pins
    and B's pose has not moved."""
    post, base, a_task, a_context, numbers, record = two_tabs(tiny_dataset, tiny_keys[0], 31)
    post(base, a_context)
    post(base, command_context(numbers, record.cad_index, ".", box_id="box-B"))
    vertices, faces = read_off(tiny_dataset.root / "CAD/car/01.off")
    u, v = inside_pixel((vertices, faces), record.pose)
    answer = post(base, [pin_region("a1", u, v)])
    refused = note(answer)
    assert "command box first" in refused and "your point stays" in refused, refused
    # returned where it was, so that Label Studio keeps it (it drops a smart tool's own point)
    sent = pin_region("a1", u, v)["value"]
    assert answer["a1"]["value"]["x"] == pytest.approx(sent["x"], abs=1e-9)
    assert answer["a1"]["value"]["y"] == pytest.approx(sent["y"], abs=1e-9)
    assert [k for k, r in answer.items() if r.get("from_name") == labeling.PIN] == ["a1"]
    for box in ("box-A", "box-B"):
        assert "pins: none" in note(post(base, command_context(numbers, record.cad_index, "pins",
                                                               box_id=box)))
    assert "pin 1: model point set" in note(post(a_task, [pin_region("a1", u, v)]))
    moved = numbers_of(list(post(a_task, [pin_region("a1", u, v),
                                          pin_region("a2", u + 12, v - 5)]).values()))
    assert moved["px"] == pytest.approx(numbers["px"] + 12, abs=0.051)
    assert moved["py"] == pytest.approx(numbers["py"] - 5, abs=0.051)
    by_b = post(base, command_context(numbers, record.cad_index, "pins", box_id="box-B"))
    assert "pins: none" in note(by_b) and numbers_of(list(by_b.values())) == numbers


def test_an_annotator_learnt_on_a_call_that_changes_nothing_is_remembered(tiny_dataset,
                                                                          tiny_keys):
    """A types "." before any draft (a chain of nobody known), then "." again once Label
    Studio saved A's draft: the pose does not change, but the chain is now A's. B's first pin
    point, before any draft of B's, could then only go to A's chain: refused, A untouched."""
    post, base, a_task, a_context, numbers, record = two_tabs(tiny_dataset, tiny_keys[0], 41)
    post(base, a_context)
    post(a_task, a_context)
    vertices, faces = read_off(tiny_dataset.root / "CAD/car/01.off")
    u, v = inside_pixel((vertices, faces), record.pose)
    refused = note(post(base, [pin_region("b1", u, v)]))
    assert "cannot tell whose pin" in refused and "your point stays" in refused, refused
    assert "pins: none" in note(post(a_task, command_context(numbers, record.cad_index, "pins",
                                                             box_id="box-A")))


def test_a_commands_answer_leaves_the_photo_points_as_the_annotator_left_them(loop):
    """A command carries no points, so its answer returns the model points only (they move
    with the model): a photo point the annotator deleted (or dragged) since is not put back.
    The next pin call, without that photo point, makes its click the pin's new photo point."""
    command, pins, state, mesh, _ = loop
    start = dict(state["numbers"])
    u, v = inside_pixel(mesh, shown(state))
    pins(pin_region("m1", u, v))
    answer = pins(pin_region("m1", u, v), pin_region("t1", u + 9, v + 4))
    assert {"m1", "t1"} <= set(answer)  # a pin call's own points go back (Label Studio drops them)
    answer = command(".")
    assert "m1" in answer and "t1" not in answer
    pins(pin_region("m1", u + 9, v + 4), pin_region("t2", u - 6, v + 2))
    said = note(command("pins"))
    assert "pins: 1 " in said and ", 2 " not in said, said
    assert state["numbers"]["px"] == pytest.approx(start["px"] - 6, abs=0.051)
    assert state["numbers"]["py"] == pytest.approx(start["py"] + 2, abs=0.051)


def test_a_model_point_deleted_by_hand_leaves_its_photo_point_unused(loop):
    """Deleting a pin's model point by hand removes that pin (the other pins solve again, as
    with unpin); its photo point, still on the photo, stays unused: the next click on the model
    starts a new pin instead of becoming that point's pin's photo point."""
    command, pins, state, mesh, _ = loop
    command(".")
    start = dict(state["numbers"])
    u, v = inside_pixel(mesh, shown(state))
    m1, t1 = pin_region("m1", u, v), pin_region("t1", u + 9, v + 4)
    pins(m1)
    pins(m1, t1)
    assert state["numbers"]["px"] == pytest.approx(start["px"] + 9, abs=0.051)
    moved = dict(state["numbers"])
    u2, v2 = inside_pixel(mesh, shown(state), pick=1)
    said = note(pins(t1, pin_region("m2", u2, v2)))  # m1 deleted, then a click on the model
    assert "pin 1 removed" in said and "pin 1: model point set" in said, said
    assert state["numbers"] == moved  # no pin left to solve from: the pose stays
    assert "pins: 1 waiting" in note(command("pins"))
    said = note(pins(t1, pin_region("m2", u2, v2), pin_region("t2", u2 - 5, v2 + 3)))
    assert "pins: 1 " in said and ", 2 " not in said, said
    assert state["numbers"]["px"] == pytest.approx(moved["px"] - 5, abs=0.051)
    assert state["numbers"]["py"] == pytest.approx(moved["py"] + 3, abs=0.051)
    answer = command(".")
    assert "m2" in answer and "m1" not in answer  # the deleted model point does not come back


def test_deleting_a_model_point_by_hand_solves_again_from_the_other_pins(loop):
    """Three complete pins, one of them 20 px off; deleting its model point by hand solves the
    pose again from the other two, as `unpin` would, and `u` steps back to before."""
    command, pins, state, mesh, _ = loop
    command(".")
    points = place_pins(pins, state, mesh, [(4, 2), (4, 2), (24, 2)])
    three = dict(state["numbers"])
    said = note(pins(*[p for p in points if p["id"] != "m2"]))
    assert "pin 3 removed" in said, said
    assert state["numbers"] != three
    residuals = note(command("pins"))
    assert "pins: 1 " in residuals and ", 3 " not in residuals, residuals
    command("u")
    assert state["numbers"] == three


def test_a_value_the_annotator_sets_after_pinning_is_what_later_solves_hold_to(loop):
    """Three pins that no pose meets (another instance's clicks) leave elevation to the prior.
    A drag solves again and elevation stays; the annotator then sets elevation 12 deg higher
    by hand, and the next drag's solve keeps their value instead of pulling it back to what was
    shown before the first pin; undoing their line undoes that too."""
    command, pins, state, mesh, _ = loop
    command(".")
    regions = place_pins(pins, state, mesh, [(10, 0), (-10, 4), (0, -10)])
    three = dict(state["numbers"])

    def drag_last(dx: float) -> None:
        u, v = labeling.region_point_pixels(regions[-1])
        regions[-1] = pin_region("t2", u + dx, v)
        pins(*regions)

    drag_last(1)
    assert abs(state["numbers"]["elevation"] - three["elevation"]) < 1.5
    dragged = dict(state["numbers"])
    command(f"e={three['elevation'] + 12:g}")
    drag_last(-1)
    assert abs(state["numbers"]["elevation"] - (three["elevation"] + 12)) < 1.5, state["numbers"]
    command("u")  # the drag's solve
    command("u")  # the annotator's elevation: the prior goes back too
    assert state["numbers"] == dragged
    drag_last(1)
    assert abs(state["numbers"]["elevation"] - three["elevation"]) < 1.5, state["numbers"]


def test_removing_the_first_pin_keeps_the_value_the_annotator_set(loop):
    """Five pins that no pose meets; the annotator then sets elevation 12 deg higher by hand.
    Deleting pin 1's model point by hand solves again from the other four, and ``unpin 1``
    (then the first of those) from the last three: both times the prior still holds the
    annotator's elevation, not the one shown when the next pin was started."""
    command, pins, state, mesh, _ = loop
    command(".")
    regions = place_pins(pins, state, mesh, [(10, 0), (-10, 4), (0, -10), (7, 7), (-6, -8)])
    five = dict(state["numbers"])
    wanted = five["elevation"] + 12
    command(f"e={wanted:g}")
    set_by_hand = dict(state["numbers"])
    said = note(pins(*[r for r in regions if r["id"] != "m0"]))
    assert "pin 1 removed" in said, said
    assert state["numbers"] != set_by_hand  # solved again
    assert abs(state["numbers"]["elevation"] - wanted) < 1.5, state["numbers"]
    four = dict(state["numbers"])
    said = note(command("unpin 1"))
    assert "the other pins solve again" in said, said
    assert state["numbers"] != four
    assert abs(state["numbers"]["elevation"] - wanted) < 1.5, state["numbers"]
    command("u")  # that pin back
    assert state["numbers"] == four
    command("u")  # the solve after the deletion
    command("u")  # the annotator's elevation: the prior the pins got goes back too
    assert state["numbers"] == five
    u, v = labeling.region_point_pixels(regions[-1])
    pins(*[r for r in regions[:-1] if r["id"] != "m0"], pin_region("t4", u + 1, v))
    assert abs(state["numbers"]["elevation"] - five["elevation"]) < 1.5, state["numbers"]


def test_solve_fits_the_pins_again_around_a_value_set_by_hand(loop):
    """``solve`` without complete pins is refused and changes nothing. Three pins that no pose
    meets; the annotator sets elevation 12 deg higher by hand: their value is shown as typed,
    and the pins no longer meet (nothing solves until asked). ``solve`` solves from the pins
    now: the elevation stays near the annotator's (the prior holds it), the other values move
    so that the pins meet better (their errors' sum, as ``pins`` lists them, falls), and ``u``
    steps back to the values as typed."""
    command, pins, state, mesh, _ = loop
    command(".")
    before = dict(state["numbers"])
    said = note(command("solve"))
    assert said.startswith("\u26a0") and "no pins" in said, said
    assert state["numbers"] == before
    regions = place_pins(pins, state, mesh, [(10, 0), (-10, 4), (0, -10)])

    def total_px() -> float:
        listed = note(command("pins")).split("pins: ", 1)[1]
        return sum(float(part.split()[1]) for part in listed.split(", "))

    wanted = state["numbers"]["elevation"] + 12
    command(f"e={wanted:g}")
    typed = dict(state["numbers"])
    assert typed["elevation"] == pytest.approx(wanted, abs=0.01)
    off = total_px()
    said = note(command("solve"))
    assert "pins: 1 " in said, said
    assert state["numbers"] != typed
    assert abs(state["numbers"]["elevation"] - wanted) < 1.5, state["numbers"]
    assert total_px() < off - 1.0, (total_px(), off)
    command("u")
    assert state["numbers"] == typed


def test_pins_placed_before_the_first_command_stay_the_annotations(loop):
    """Pins first (no command yet: the tab's chain has no name), then "." (the command box
    names the annotation): the chain goes on, so the next point starts pin 2 and `u` steps
    back through the pin's solve."""
    command, pins, state, mesh, _ = loop
    start = dict(state["numbers"])
    u, v = inside_pixel(mesh, shown(state))
    pins(pin_region("m1", u, v))
    pins(pin_region("m1", u, v), pin_region("t1", u + 9, v + 4))
    solved = dict(state["numbers"])
    assert solved["px"] == pytest.approx(start["px"] + 9, abs=0.051)
    command(".")
    assert "pins: 1 " in note(command("pins"))
    u2, v2 = inside_pixel(mesh, shown(state), pick=1)
    assert "pin 2: model point set" in note(pins(pin_region("m1", u, v),
                                                 pin_region("t1", u + 9, v + 4),
                                                 pin_region("m2", u2, v2)))
    command("u")
    assert state["numbers"] == start


def test_points_sent_back_as_returned_do_not_solve_again(loop):
    """Label Studio sends the pin points the backend returned (percent, rounded): no new solve,
    no new undo step; a photo point dragged 6 px away solves again."""
    command, pins, state, mesh, _ = loop
    command(".")
    u, v = inside_pixel(mesh, shown(state))
    pins(pin_region("m1", u, v))
    by = pins(pin_region("m1", u, v), pin_region("t1", u + 12, v - 7))
    solved = dict(state["numbers"])
    back = [by["m1"], by["t1"]]  # as returned
    by = pins(*back)
    assert labeling.PINS_REGION_ID in by and state["numbers"] == solved
    assert "pins:" not in note(by)  # nothing solved
    pins(back[0], pin_region("t1", u + 18, v - 7))
    assert state["numbers"]["px"] == pytest.approx(solved["px"] + 6, abs=0.051)
    command("u")
    assert state["numbers"] == solved  # one step back: the drag's solve only


def test_pins_are_carried_onto_another_cad_model_and_back(loop):
    """c3 after a pin: the pin's point becomes model 3's point seen where model 1's was (the
    same pixel at the pose shown; independent ray cast), not model 1's point used with model
    3; back on model 1 (c1) the pin has its own point again."""
    from test_pins import first_hits, reference_rays

    command, pins, state, mesh, dataset = loop
    command(".")
    start = shown(state)
    u, v = inside_pixel(mesh, start)
    pins(pin_region("m1", u, v))
    pins(pin_region("m1", u, v), pin_region("t1", u + 12, v - 7))
    p1 = first_hits(*mesh, *reference_rays(np.array([[u, v]], dtype=float), start))[0]
    at = shown(state)
    assert "1 pin carried onto model 3" in note(command("c3"))
    model3 = read_off(dataset.root / "CAD/car/03.off")
    seen = reference_pixels(p1[None], at)
    p3 = first_hits(*model3, *reference_rays(seen, at))[0]
    command(f"a={state['numbers']['azimuth'] + 50:g} e={state['numbers']['elevation'] + 25:g}")
    turned = shown(state)
    target = np.array([u + 12, v - 7], dtype=float)
    r1, r3 = (float(np.hypot(*(reference_pixels(p[None], turned)[0] - target))) for p in (p1, p3))
    assert abs(r1 - r3) > 0.5  # the two points are told apart
    listed = float(note(command("pins")).split("pins: 1 ")[1].split(" px")[0])
    assert listed == pytest.approx(r3, abs=0.06)
    assert "carried onto model 1" in note(command("c1"))
    listed = float(note(command("pins")).split("pins: 1 ")[1].split(" px")[0])
    assert listed == pytest.approx(r1, abs=0.06)
    said = note(command("c3 pins"))  # one line: the list is of model 3's point already
    assert "carried onto model 3 (their own points on it" in said
    assert float(said.split("pins: 1 ")[1].split(" px")[0]) == pytest.approx(r3, abs=0.06)


def test_an_unreadable_pin_point_keeps_its_pin(loop):
    """A pin call whose point has no readable position (null, NaN) does not drop that pin:
    only a point Label Studio no longer sends is one the annotator deleted."""
    command, pins, state, mesh, _ = loop
    command(".")
    u, v = inside_pixel(mesh, shown(state))
    pins(pin_region("m1", u, v))
    pins(pin_region("m1", u, v), pin_region("t1", u + 5, v))
    broken = pin_region("t1", u + 5, v)
    broken["value"]["x"] = None
    pins(pin_region("m1", u, v), broken)
    assert "pins: 1 0.0 px" in note(command("pins"))
    pins(pin_region("m1", u, v))  # t1 deleted: the pin waits for its photo point again
    assert "1 waiting" in note(command("pins"))


def test_a_pin_far_off_the_photo_is_drawn_clipped_and_kept():
    """A model point the pose puts far off the photo (the camera almost at it): the overlay
    draws the part of its line on the photo, in bounded time, and the point goes back held at
    the photo's border (a point left out would read as one the annotator deleted)."""
    from ml_backend import pins_step
    from ml_backend.overlay_regions import clip_segment, pins_mask

    photo = (100.0, 50.0)
    far = (100.0 + 3e7, 50.0 + 1.5e7)  # direction (2, 1)
    mask = pins_mask([(1, far, photo)], W, H)
    for step in (10, 60, 100):  # on the line from the photo point towards the model point
        x, y = photo[0] + 2 * step / 5 ** 0.5, photo[1] + step / 5 ** 0.5
        assert mask[round(y), round(x)], (x, y)
    assert not mask[200, 20] and not mask[5, 300]
    near = pins_mask([(2, (10.0, 10.0), (60.0, 40.0))], W, H)
    assert near[25, 35] and near[10, 10] and not near[200, 300]
    # 1e17 px away: the ends still exact (on the right border, and the photo point itself)
    end, start = clip_segment((100.0 + 2e17, 50.0 + 1e17), (100.0, 50.0), W, H)
    assert start == (100.0, 50.0)
    assert end == pytest.approx((W - 0.5, 50.0 + (W - 0.5 - 100.0) / 2), abs=1e-6)
    assert clip_segment((-50.0, -50.0), (-10.0, 500.0), W, H) is None  # all off the photo

    pin = {"model": "m1", "target": "t1", "point": [0.0, 0.0, 0.0], "photo": list(photo),
           "cad": 1, "off": False}
    pose = Pose.from_degrees(30, 15, 0, 8, 1e6, -1e6, viewport=500)  # the origin far right, up
    model, target = pins_step.regions([pin], pose, W, H)
    assert (model["id"], target["id"]) == ("m1", "t1")
    assert 99 < model["value"]["x"] <= 100 and 0 <= model["value"]["y"] < 1
    # behind the camera (camera at (0, -1, 0) looking at the origin, the point at (0, -2, 0)):
    # the point goes back where it was clicked, where the pose shown then put it (on the axis:
    # the centre (120, 70))
    clicked = Pose.from_degrees(0, 0, 0, 5, 120, 70, viewport=500)
    pin = dict(pin, point=[0.0, -2.0, 0.0], shown=list(clicked.as_radians().values()))
    model, _ = pins_step.regions([pin], Pose.from_degrees(0, 0, 0, 1, 160, 120, viewport=500),
                                 W, H)
    assert (model["value"]["x"], model["value"]["y"]) == pytest.approx(
        (100 * 120.5 / W, 100 * 70.5 / H))


def test_unpin_solves_again_from_the_other_pins_and_u_undoes_it(loop):
    """Three pins that agree (their photo points are where the model points are with the
    object moved by (6, 4) px: reference projection) and a fourth 4 px off that (within the
    loss's scale: it pulls), then `unpin 4`: the pose is the first three's alone, which put
    their model points on their photo points (reference ray cast); `u` brings back the
    four-pin pose and the pin; a refused line removes no pin."""
    from test_pins import first_hits, reference_rays

    command, pins, state, mesh, _ = loop
    command(".")
    start = shown(state)
    a, b, c = (inside_pixel(mesh, start, i) for i in (1, 2, 0))
    picked = [a, b, c, ((a[0] + c[0]) // 2, (b[1] + c[1]) // 2)]  # a box: its outline convex
    goal = start.replace(px=start.px + 6, py=start.py + 4)
    regions: list[dict] = []
    points, targets = [], []  # each model point: read at the pose shown when it was clicked
    for i, (u, v) in enumerate(picked, start=1):
        points.append(first_hits(*mesh, *reference_rays(np.array([[u, v]], dtype=float),
                                                        shown(state)))[0])
        targets.append(reference_pixels(points[-1][None], goal)[0] + ((3, -3) if i == 4
                                                                      else (0, 0)))
        regions.append(pin_region(f"m{i}", u, v))
        pins(*regions)
        regions.append(pin_region(f"t{i}", *targets[-1]))
        pins(*regions)
    four = dict(state["numbers"])
    points, targets = np.array(points[:3]), np.array(targets[:3])

    def off() -> float:
        return float(np.max(np.hypot(*(reference_pixels(points, shown(state)) - targets).T)))

    assert off() > 1  # pin 4 pulled the others off their places
    assert "pin 4 removed (the other pins solve again" in note(command("unpin 4"))
    assert off() < 0.15
    by = command("u")
    assert state["numbers"] == four and "1 pin back (unpin undone)" in note(by)
    listed = note(command("pins"))
    assert "4 " in listed and "waiting" not in listed  # the pin is back, the fourth again
    assert "no CAD model 9" in note(command("unpin 1 c9"))  # refused: nothing changes
    assert note(command("pins")) == listed and state["numbers"] == four
    assert "the pose stays" in note(command("unpin"))


def test_neighbour_numbers_are_clipped_to_the_photo():
    from ml_backend.overlay_regions import numbers_mask

    whole = numbers_mask([(12, (100.0, 60.0))], W, H)
    ys, xs = np.nonzero(whole)
    assert (xs.max() - xs.min()) > 1.5 * (ys.max() - ys.min()) * 3 / 5  # two digits side by side
    corner = numbers_mask([(8, (1.0, 1.0))], W, H)  # partly off the photo: the part on it
    assert corner[:10, :10].any() and not corner[20:, 20:].any()
    assert not numbers_mask([(3, (1e9, 5.0)), (4, (float("nan"), 5.0))], W, H).any()


def test_an_unpin_that_left_no_undo_step_is_not_brought_back_by_a_later_undo():
    from ml_backend import pins_step

    pins = [{"model": f"m{i}", "target": f"t{i}", "point": [0.0, 0.0, 0.0],
             "photo": [10.0 * i, 5.0], "cad": 1, "off": False} for i in (1, 2, 3)]
    key = (30.0, 15.0, 0.0, 8.0, 160.0, 120.0, 1)
    said, again = pins_step.unpin(pins, 2, mark=key)
    assert again and "u brings it back" in said
    pins_step.restore(pins, key, bring_back=False)  # the line moved nothing: no step to undo
    assert pins_step.restore(pins, key) is None
    assert [p["model"] for p in pins_step.live(pins)] == ["m1", "m3"]
    pins_step.unpin(pins, 2, mark=key)  # m3, its line's undo step undone: back
    assert pins_step.restore(pins, key) == "1 pin back (unpin undone)"
    assert [p["model"] for p in pins_step.live(pins)] == ["m1", "m3"]


def test_each_pin_is_drawn_with_its_number_beside_its_model_point():
    """The number `pins` and `unpin N` use, written up and to the right of the model point's
    dot (the dot alone is a disc; the rest of the drawing is the number)."""
    from ml_backend.overlay_regions import PIN_DOT_PX, pins_mask

    u, v = 100.0, 100.0
    mask = pins_mask([(3, (u, v), None)], W, H)
    ys, xs = np.mgrid[0:H, 0:W]
    dot = np.hypot(xs - u, ys - v) <= PIN_DOT_PX + 2  # the disc, grown by the 2 px lines
    rest_y, rest_x = np.nonzero(mask & ~dot)
    assert len(rest_x) > 20
    assert rest_x.min() > u + PIN_DOT_PX and rest_x.max() < u + 40
    assert rest_y.max() < v - PIN_DOT_PX + 2 and rest_y.min() > v - 40
    other = pins_mask([(7, (u, v), None)], W, H)
    assert (other & ~dot).sum() != (mask & ~dot).sum()  # another number, another drawing


def test_a_reopened_annotation_takes_back_its_pins_as_they_were(loop, tiny_keys):
    """Submitting ends the annotation's chain; its pin points stay in the annotation. Reopened,
    a new pin call carries them all: pin 1 is back with its own model point (listed at the
    error it had), pin 2, removed with `unpin 2` before the submit, stays removed (its points
    are not taken for a new pin), the new point starts pin 2, and nothing solves again."""
    import ls_payloads as ls
    from backend_helpers import submitted_context

    command, pins, state, mesh, _ = loop
    command(".")
    a = inside_pixel(mesh, shown(state), 0)
    regions = [pin_region("m1", *a)]
    pins(*regions)
    regions.append(pin_region("t1", a[0] + 6, a[1] + 4))
    pins(*regions)
    b = inside_pixel(mesh, shown(state), 1)  # on the model where pin 1 moved it
    regions.append(pin_region("m2", *b))
    pins(*regions)
    regions.append(pin_region("t2", b[0] - 5, b[1] + 3))
    by = pins(*regions)
    assert "pin 2 removed" in note(command("unpin 2"))
    before, listed = dict(state["numbers"]), note(command("pins"))
    assert "pins: 1 " in listed and ", 2" not in listed
    # where Label Studio has the points when it submits: the model points as last returned
    kept = [by[rid] if rid in ("m1", "m2") else r for rid, r in
            zip(("m1", "t1", "m2", "t2"), regions)]
    submitted = submitted_context(state["numbers"], state["cad"]) + kept
    res = state["client"].post("/webhook", json=ls.created(91, 11, str(tiny_keys[0]), 10,
                                                          submitted))
    assert res.status_code == 201, res.json
    c = inside_pixel(mesh, shown(state), 2)
    by = pins(*kept, pin_region("m3", *c))
    assert state["numbers"] == before
    assert "pin 2: model point set" in note(by)
    assert note(command("pins")).strip() == listed.strip() + ", 2 waiting"
