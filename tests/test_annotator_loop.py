"""The annotator's loop without traps, through the HTTP contract (Flask's test client), as
Label Studio sends the calls (docs/label_studio_notes.md): chains per annotation, ranges that
refuse instead of clamping, quality / dense from the command box, overlay styles, and the
synced record saying whether its pose had been drawn."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

import ls_payloads as ls
from backend_helpers import (command_context, interactive_body, make_client, numbers_of,
                             results_by_name, submitted_context, task_for)
from checks import decode_brush
from pose6d import labeling
from pose6d.dataset import SYNCED

ERROR, INFO = "\u26a0", "\u2139"


class Annotator:
    """One annotator's tab on one task: its own command-box id and (after the first autosave)
    its drafts, which Label Studio includes with each of its calls."""

    def __init__(self, client, task: dict, box_id: str, email: str | None = None):
        self.client, self.box_id, self.email = client, box_id, email
        self.task = dict(task, drafts=[{"id": 1, "user": email, "result": []}] if email else [])
        self.numbers: dict[str, float] = {}
        self.cad = task["data"]["cad_index"]

    def autosave(self, email: str) -> None:
        """Label Studio saved this tab's draft: its calls now carry it (the user, and the
        annotation's results as shown, the command box with its id among them)."""
        self.email = email
        self.task = dict(self.task, drafts=[{
            "id": 1, "user": email, "updated_at": "2026-12-06T10:00:00Z",
            "result": command_context(self.numbers, self.cad, ".", self.box_id)}])

    def start(self, numbers: dict[str, float]) -> "Annotator":
        self.numbers = dict(numbers)
        return self

    def send(self, command: str) -> dict:
        res = self.client.post("/predict", json=interactive_body(
            self.task, command_context(self.numbers, self.cad, command, self.box_id)))
        assert res.status_code == 200, res.json
        result = res.json["results"][0]["result"]
        if numbers_of(result):  # Label Studio shows what came back
            self.numbers = numbers_of(result)
            self.cad = int(results_by_name(result)[labeling.CAD]["value"]["choices"][0])
        return results_by_name(result)

    def click(self, region: dict) -> dict:
        res = self.client.post("/predict", json=interactive_body(self.task, [region]))
        result = res.json["results"][0]["result"]
        if numbers_of(result):
            self.numbers = numbers_of(result)
        return results_by_name(result)


@pytest.fixture
def setup(tiny_dataset, tiny_keys):
    client = make_client(tiny_dataset)
    task = task_for(tiny_dataset, tiny_keys[0], 7)
    record = tiny_dataset.read(tiny_keys[0])
    start = {k: round(v, 2) for k, v in record.pose.as_degrees().items()}
    return client, task, record, start


def test_two_annotators_keep_their_own_undo(setup):
    """The issue's walk: B a+10, A e+, B u -> B is back at its own previous pose, not A's."""
    client, task, _, start = setup
    a = Annotator(client, task, "boxA", "a@example.com").start(start)
    b = Annotator(client, task, "boxB", "b@example.com").start(start)
    b.send("a+10")
    a.send("e+")
    b.send("u")
    assert b.numbers == pytest.approx(start)
    assert a.numbers["elevation"] == pytest.approx(start["elevation"] + 1)
    a.send("u")
    assert a.numbers == pytest.approx(start)
    b.send("u")  # nothing further back in B's own chain: B stays
    assert b.numbers == pytest.approx(start)


def test_a_centre_click_continues_its_annotators_chain(setup):
    """A smart-tool call carries only the drawn point: it continues the chain of the annotator
    whose drafts come with it, not the chain used last on the task."""
    client, task, _, start = setup
    a = Annotator(client, task, "boxA", "a@example.com").start(start)
    b = Annotator(client, task, "boxB", "b@example.com").start(start)
    a.send("a+20")
    b.send("e-5")  # B's chain is now the task's most recent
    point = {"id": "kp", "from_name": labeling.CENTRE, "to_name": labeling.IMAGE,
             "type": "keypoint", "original_width": 320, "original_height": 240,
             "value": {"x": 25.0, "y": 50.0, "width": 1}}
    a.click(point)
    assert a.numbers["azimuth"] == pytest.approx(start["azimuth"] + 20)  # A's pose, moved
    assert a.numbers["elevation"] == pytest.approx(start["elevation"])
    assert (a.numbers["px"], a.numbers["py"]) == pytest.approx((80 - 0.5, 120 - 0.5))


CENTRE_CLICK = {"id": "kp", "from_name": labeling.CENTRE, "to_name": labeling.IMAGE,
                "type": "keypoint", "original_width": 320, "original_height": 240,
                "value": {"x": 25.0, "y": 50.0, "width": 1}}


def test_a_smart_call_two_tabs_could_have_made_is_refused_until_a_draft_names_it(setup):
    """Two annotators open the task and type "." within seconds (no draft saved yet: Label
    Studio names neither annotation nor user): a centre click could be either's, so it is
    refused and nobody's pose moves. Once A's draft is saved (it names A's command box), the
    same click moves A's pose from A's own (a+20), and B's chain is untouched."""
    client, task, _, start = setup
    a = Annotator(client, task, "boxA").start(start)
    b = Annotator(client, task, "boxB").start(start)
    a.send("a+20")
    b.send(".")
    by = a.click(CENTRE_CLICK)
    assert "cannot tell whose" in "\n".join(by[labeling.COMMAND]["value"]["text"])
    assert a.numbers["azimuth"] == pytest.approx(start["azimuth"] + 20)  # not answered: kept
    a.autosave("a@example.com")
    a.click(CENTRE_CLICK)
    assert a.numbers["azimuth"] == pytest.approx(start["azimuth"] + 20)
    assert (a.numbers["px"], a.numbers["py"]) == pytest.approx((80 - 0.5, 120 - 0.5))
    b.send("u")  # B's chain holds only B's pose: nothing to go back to
    assert b.numbers == pytest.approx(start)
    a.send("u")  # A's click was one step on A's chain
    assert a.numbers["azimuth"] == pytest.approx(start["azimuth"] + 20)
    assert a.numbers["px"] == pytest.approx(start["px"])


def test_drawing_first_and_typing_later_is_one_chain(setup):
    """A tab that clicks the centre before its first command (no draft yet: an unnamed chain)
    and then types: the command continues that chain, so undo goes back through the click to
    the pose the task opened with."""
    client, task, _, start = setup
    a = Annotator(client, task, "boxA").start(start)
    a.click(CENTRE_CLICK)
    clicked = dict(a.numbers)
    assert (clicked["px"], clicked["py"]) == pytest.approx((80 - 0.5, 120 - 0.5))
    a.send("a+10")
    a.send("u")
    assert a.numbers == pytest.approx(clicked)
    a.send("u")
    assert a.numbers == pytest.approx(start)


def test_a_lone_tab_needs_no_draft_and_a_tab_left_behind_is_not_continued():
    """pick_chain with no annotation and no user named: the one chain at work on the task is
    continued; one last changed more than ACTIVE_S ago is a tab left behind (a new chain)."""
    import datetime as dt

    from ml_backend.refinement_state import ACTIVE_S, ChainRecord, UnclearCaller, pick_chain

    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    ago = lambda s: (now - dt.timedelta(seconds=s)).isoformat()  # noqa: E731
    working = ChainRecord("7/boxA", "7", None, [], updated=ago(5))
    left = ChainRecord("7/boxOld", "7", None, [], updated=ago(ACTIVE_S + 60))
    other = ChainRecord("7/boxB", "7", "b@example.com", [], updated=ago(1))
    assert pick_chain([working, left, other], "7", None, None, now=now) is working
    fresh = pick_chain([left, other], "7", None, None, now=now)
    assert fresh.chain_id not in ("7/boxOld", "7/boxB") and fresh.states == []
    with pytest.raises(UnclearCaller):  # two tabs at work, neither named
        pick_chain([working, dataclasses.replace(working, chain_id="7/boxC")], "7", None, None,
                   now=now)
    # a pin: the chain holding its points wins; a chain with other pins is never a new pin's
    assert pick_chain([working, other], "7", None, None, owns=lambda c: c is other,
                      pinned=lambda c: c is other, now=now) is other
    with pytest.raises(UnclearCaller):
        pick_chain([dataclasses.replace(working, user=None)], "7", None, None,
                   owns=lambda c: False, pinned=lambda c: True, now=now)
    # an annotation's first named call continues the unnamed chain its tab drew in (the pose
    # its Numbers show), never another tab's nor a known annotator's other than the caller
    unnamed = ChainRecord("7/-abc", "7", None, [], updated=ago(5))
    named = pick_chain([unnamed], "7", "7/boxD", None, shows=lambda c: True, now=now)
    assert (named.chain_id, named.adopted) == ("7/boxD", "7/-abc")
    assert pick_chain([unnamed], "7", "7/boxD", None, shows=lambda c: False,
                      now=now).adopted == ""
    theirs = dataclasses.replace(unnamed, user="b@example.com")
    assert pick_chain([theirs], "7", "7/boxD", "a@example.com", shows=lambda c: True,
                      now=now).adopted == ""
    assert pick_chain([theirs], "7", "7/boxD", "b@example.com", now=now).adopted == "7/-abc"


@pytest.mark.parametrize("command, name, limit", [
    ("d=-5", "distance", "0.1..100"), ("d-100", "distance", "0.1..100"),
    ("e=95", "elevation", "-90..90"), ("e+80", "elevation", "-90..90"),
    ("x=99999", "px", "-800..1600"), ("y=-700", "py", "-640..1280")])
def test_out_of_range_values_are_refused_not_clamped(setup, command, name, limit):
    client, task, _, start = setup
    a = Annotator(client, task, "boxA").start(start)
    by = a.send(command)
    (line,) = by[labeling.COMMAND]["value"]["text"]
    assert line.startswith(ERROR) and name in line and limit in line and "nothing changed" in line
    assert labeling.MESH_REGION_ID not in by and a.numbers == start  # no new pose, no overlay
    a.send("a+")  # and the chain goes on from the unchanged pose
    assert a.numbers == pytest.approx(dict(start, azimuth=start["azimuth"] + 1))


def test_the_project_config_sets_the_limits(setup, tiny_dataset):
    """The px range of a config made for larger photos (make_labeling_config --max-photo-size)."""
    from pose6d.labeling_config import build_config

    client, task, _, start = setup
    body = interactive_body(task, command_context(start, task["data"]["cad_index"], "x=2000"))
    body["label_config"] = build_config((1600, 1200))
    res = client.post("/predict", json=body)
    assert numbers_of(res.json["results"][0]["result"])["px"] == 2000.0


def test_quality_and_dense_from_the_command_box(setup):
    client, task, _, start = setup
    a = Annotator(client, task, "boxA").start(start)
    by = a.send("q2 dy a+")
    assert by[labeling.QUALITY]["value"]["choices"] == ["partially visible"]
    assert by[labeling.DENSE]["value"]["choices"] == ["yes"]
    assert a.numbers["azimuth"] == pytest.approx(start["azimuth"] + 1)
    by = a.send("q4 dn")
    assert by[labeling.QUALITY]["value"]["choices"] == ["bad quality - no object"]
    assert by[labeling.DENSE]["value"]["choices"] == ["no"]
    by = a.send("a+")  # commands without a label leave the annotator's choices alone
    assert labeling.QUALITY not in by and labeling.DENSE not in by
    by = a.send("q5")
    assert by[labeling.COMMAND]["value"]["text"][0].startswith(ERROR)


def alpha_of(region: dict) -> set[int]:
    """The alpha values of a brush region's pixels, as Label Studio's decoder gives them."""
    w, h = region["original_width"], region["original_height"]
    values = np.asarray(decode_rle(region["value"]["rle"]), dtype=np.uint8).reshape(h, w, 4)
    return set(np.unique(values[..., 3]).tolist())


def test_overlay_styles_cycle_and_are_remembered_per_annotator(setup, tiny_dataset, tiny_keys):
    client, task, _, start = setup
    a = Annotator(client, task, "boxA", "a@example.com").start(start)
    by = a.send("a+")
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0}  # edges: no fill
    assert alpha_of(by[labeling.EDGES_REGION_ID]) == {0, 255}
    by = a.send("o")
    assert by[labeling.COMMAND]["value"]["text"] == [f"{INFO} overlay: tint (o: next style)\n"]
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0, 64}  # a faint fill
    by = a.send("o")
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0, 255}  # solid
    by = a.send("o")
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0} and alpha_of(by[labeling.EDGES_REGION_ID]) == {0}
    by = a.send("o=tint")
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0, 64}
    # The same annotator on another task keeps the style; another annotator has the default.
    other = task_for(tiny_dataset, tiny_keys[1], 8)
    numbers = {k: round(v, 2) for k, v in tiny_dataset.read(tiny_keys[1]).pose.as_degrees().items()}
    by = Annotator(client, other, "boxA2", "a@example.com").start(numbers).send("a+")
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0, 64}
    by = Annotator(client, other, "boxB", "b@example.com").start(numbers).send("a+")
    assert alpha_of(by[labeling.MESH_REGION_ID]) == {0}


def test_a_model_chosen_in_the_gallery_is_drawn_and_said(setup):
    client, task, _, start = setup
    a = Annotator(client, task, "boxA").start(start)
    a.send("a+")
    other = 3 if a.cad == 1 else 1  # the tiny dataset's cars have models 1 and 3
    a.cad = other  # clicked in the gallery: Label Studio calls nothing, the Numbers stay
    by = a.send(".")
    assert by[labeling.COMMAND]["value"]["text"] == [
        f"{INFO} model {other} chosen in the gallery had not been drawn: drawn now\n"]
    assert by[labeling.CAD]["value"]["choices"] == [str(other)]


def submitted(annotator: Annotator, quality: str = "good") -> list[dict]:
    """The annotation Label Studio submits: the values shown, the choices, the command box."""
    return submitted_context(annotator.numbers, annotator.cad, annotator.box_id, quality)


def test_the_record_says_whether_its_pose_was_drawn(setup, tiny_dataset, tiny_keys):
    client, task, _, start = setup
    key = str(tiny_keys[0])
    a = Annotator(client, task, "boxA", "a@example.com").start(start)
    a.send("a+ d+")
    res = client.post("/webhook", json=ls.created(41, 7, key, 10, submitted(a)))
    assert res.status_code == 201, res.json
    record = tiny_dataset.read(tiny_keys[0], SYNCED)
    assert bool(record.extra["pose_rendered"]) is True
    assert str(record.extra["annotator_email"]) == "a@example.com"
    # Another annotation whose elevation was changed without a redraw (as a slider would).
    b = Annotator(client, task, "boxB", "b@example.com").start(start)
    b.send("a-")
    b.numbers["elevation"] += 3.0
    res = client.post("/webhook", json=ls.created(42, 7, key, 20, submitted(b)))
    assert res.status_code == 201, res.json
    record = tiny_dataset.read(tiny_keys[0], SYNCED)
    assert int(record.extra["ls_annotation_id"]) == 42 and bool(record.extra["pose_rendered"]) is False
    # The model's pose submitted as it opened (no command typed): it was drawn.
    c = Annotator(client, task, "boxC").start(start)
    res = client.post("/webhook", json=ls.created(43, 7, key, 30, submitted(c)))
    record = tiny_dataset.read(tiny_keys[0], SYNCED)
    assert int(record.extra["ls_annotation_id"]) == 43 and bool(record.extra["pose_rendered"]) is True


def test_submitting_ends_only_that_annotations_chain(setup, tiny_keys):
    client, task, _, start = setup
    a = Annotator(client, task, "boxA").start(start)
    b = Annotator(client, task, "boxB").start(start)
    a.send("a+5")
    b.send("a+7")
    b.send("a+1")
    client.post("/webhook", json=ls.created(51, 7, str(tiny_keys[0]), 10, submitted(a)))
    b.send("u")  # B's chain survived A's submission
    assert b.numbers["azimuth"] == pytest.approx(start["azimuth"] + 7)


def test_the_default_overlay_keeps_the_photo_visible(setup, tiny_dataset):
    """/predict (a task opened): the edges only, no fill over the object."""
    client, task, _, _ = setup
    res = client.post("/predict", json={"tasks": [task]})
    by = results_by_name(res.json["results"][0]["result"])
    assert not decode_brush(by[labeling.MESH_REGION_ID]["value"]["rle"], 320, 240).any()
    assert decode_brush(by[labeling.EDGES_REGION_ID]["value"]["rle"], 320, 240).sum() > 50
    assert all(by[n].get("readonly") is True for n in labeling.NUMBER_SPECS)  # no slider drags


@pytest.mark.parametrize("where", ["store", "memory"])
def test_a_submitted_annotations_chain_is_kept_apart_and_taken_back_when_reopened(tmp_path, where):
    """forget (the annotation submitted) keeps a chain with pins out of the ones a call can
    pick (one without pins is dropped); a new chain of the same name, or an unnamed pin call
    carrying one of its pin points, takes back its name, poses and pins; other calls start
    afresh.
    In the store and in memory (the store down)."""
    from ml_backend.chain import State
    from ml_backend.refinement_state import Chains, RefinementStore
    from pose6d.camera import Pose

    def failing():
        raise OSError("store down")

    store = RefinementStore(str(tmp_path / "chains.sqlite3")) if where == "store" else None
    chains = Chains((lambda: store) if store else failing, State)
    pose = Pose.from_degrees(10, 5, 0, 4, 100, 80)
    pin = {"model": "m1", "target": "t1", "point": [0.1, 0.2, 0.3], "photo": [90.0, 70.0],
           "cad": 1, "off": False}
    with chains.open("7", "box", "a@example.com") as record:
        record.states.append(State(pose, 1))
        record.pins.append(dict(pin))
    chains.forget("7", "box")
    with chains.open("7", "plain", "b@example.com") as record:  # no pins: not kept
        record.states.append(State(pose, 2))
    chains.forget("7", "plain")
    with chains.rows("7") as rows:
        assert [c.chain_id for c in rows.chains_of_task("7", ended=True)] == ["ended:7/box"]
        assert rows.chains_of_task("7") == []
    with chains.open("7", None, None, points={"elsewhere"}) as record:  # another tab: afresh
        assert record.states == [] and record.pins == []
    chains.forget("7")  # the task's chains dropped (ended ones too)
    with chains.open("7", "box", "a@example.com") as record:
        record.states.append(State(pose, 1))
        record.pins.append(dict(pin))
    chains.forget("7", "box")
    with chains.open("7", "box", None) as record:  # reopened, a named call first
        assert [s.key() for s in record.states] == [State(pose, 1).key()]
        assert record.pins == [pin] and record.user == "a@example.com"
    chains.forget("7", "box")
    with chains.open("7", None, None, points={"t1", "m9"}) as record:  # a pin call first
        assert record.pins == [pin] and len(record.states) == 1
        assert record.chain_id == "7/box"  # the annotation's: its next command continues it
    with chains.rows("7") as rows:
        assert [c.chain_id for c in rows.chains_of_task("7")] == ["7/box"]
        assert rows.chains_of_task("7", ended=True) == []  # taken back, not copied
