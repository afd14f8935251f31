"""Fuzzing the HTTP contract (hypothesis, Flask test client): arbitrary JSON and structured but
wrong bodies for /predict (with and without params.context) and /webhook, and random pose
values (NaN, inf, huge, negative, strings) in interactive calls.

Every answer must be a contract status (never a 500), no exception may reach the error log, and
a refused request must leave the dataset untouched (annotations_new/ hashed before and after).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ls_payloads as ls
from backend_helpers import make_client, task_for
from conftest import make_tiny_dataset
from pose6d import labeling
from pose6d.dataset import Dataset

EXAMPLES = int(os.environ.get("POSE6D_FUZZ_EXAMPLES", "300"))  # per test
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
KEYS = ["car/img_a_1_0", "car/img_a_1_1", "punching_bag/bag_2_0"]
BAD_KEYS = ["car/../../etc/passwd_0", "../x_0", "/etc/passwd_0", "car/%2e%2e%2fx_0", "car/x",
            "car/img_a_1_99", "boat/x_0", "car/.._0", "car\\..\\x_0", "", "car/img_a_1_-1"]
NAMES = [*labeling.NUMBER_SPECS, labeling.CAD, labeling.QUALITY, labeling.DENSE, labeling.COMMAND,
         labeling.CENTRE, labeling.BOX, labeling.OVERLAY, "other"]
TYPES = ["number", "choices", "textarea", "keypointlabels", "rectanglelabels", "brushlabels",
         "keypoint", "rectangle", "labels", "whatever"]
COMMANDS = ["a+", "a--", "d+", "d-", "d=0", "d=-5", "x=1e309", "e=1000", "f", "n", "p", "c2",
            "c99", "r", "u", ".", "a+7 d-0.5", "zz", "\u26a0 old error", ""]


class ErrorLog(logging.Handler):
    """Collects ERROR records: the app logs every unexpected exception with log.exception."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    dataset = make_tiny_dataset(tmp_path_factory.mktemp("fuzz") / "data")
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    try:
        yield dataset, make_client(dataset), handler
    finally:
        logging.getLogger().removeHandler(handler)


def tree_hash(folder: Path, skip_store: bool = True) -> str:
    """Hash of every file's path and bytes under ``folder`` (the sync store's SQLite files are
    skipped: the journal records refused events on purpose)."""
    digest = hashlib.sha256()
    if folder.exists():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if skip_store and path.name.startswith(".sync.sqlite3"):
                continue
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def check(env, method: str, body, allowed: set[int], changes_allowed_on: set[int] = frozenset()):
    """Send ``body``; the status must be in ``allowed``, nothing may be logged as an error, and
    annotations_new/ may change only for statuses in ``changes_allowed_on``."""
    dataset, client, errors = env
    synced = dataset.root / "annotations_new"
    before = tree_hash(synced)
    errors.records.clear()
    res = client.post(method, json=body)
    assert res.status_code in allowed, (res.status_code, res.get_data(as_text=True)[:500])
    assert res.is_json and isinstance(res.json, dict)
    assert not errors.records, [r.getMessage() for r in errors.records]
    if res.status_code not in changes_allowed_on:
        assert tree_hash(synced) == before, f"{method} {res.status_code} changed annotations_new/"
    return res


# --- strategies ---

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62),
                    st.floats(), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)
weird_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, -1e300, 0.0, -0.0,
                                                                      -5.0, 1e-320, 2**63]),
    st.integers(), st.text(max_size=8), st.none(), st.booleans(), st.lists(st.floats(), max_size=2))


@st.composite
def result_items(draw) -> dict:
    """A Label Studio result entry with plausible names and types and arbitrary values."""
    value = draw(st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "number": weird_numbers, "choices": st.lists(st.one_of(st.text(max_size=4), weird_numbers), max_size=2),
        "text": st.one_of(st.lists(st.sampled_from(COMMANDS) | st.text(max_size=10), max_size=2), st.text(max_size=10)),
        "x": weird_numbers, "y": weird_numbers, "width": weird_numbers, "height": weird_numbers,
        "rle": st.lists(st.integers(), max_size=4)})))
    item = {"from_name": draw(st.sampled_from(NAMES) | st.text(max_size=5)), "to_name": "image",
            "type": draw(st.sampled_from(TYPES)), "value": value}
    if draw(st.booleans()):
        item["id"] = draw(st.sampled_from([labeling.BOX_REGION_ID, "r1"]) | st.text(max_size=4))
    for name in ("original_width", "original_height"):
        if draw(st.booleans()):
            item[name] = draw(weird_numbers)
    return item


@st.composite
def tasks(draw, dataset: Dataset) -> dict:
    """A task: a real one, one with a bad / hostile object key, or arbitrary data."""
    kind = draw(st.sampled_from(["real", "bad_key", "random_key", "junk"]))
    if kind == "real":
        from pose6d.dataset import ObjectKey

        task = task_for(dataset, ObjectKey.parse(draw(st.sampled_from(KEYS))), draw(st.integers(-5, 5)))
        if draw(st.booleans()):
            task["data"]["bbox"] = draw(json_values)
        return task
    if kind == "junk":
        return draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3))
    key = draw(st.sampled_from(BAD_KEYS)) if kind == "bad_key" else draw(json_values)
    return {"id": draw(json_values), "data": {"object_key": key}}


def pose_context(draw) -> list[dict]:
    """The command-box context with six (possibly absurd) Numbers, a CAD choice and a command."""
    out = [{"from_name": n, "to_name": "image", "type": "number", "value": {"number": draw(weird_numbers)}}
           for n in labeling.NUMBER_SPECS if draw(st.integers(0, 9))]
    out.append({"from_name": labeling.CAD, "to_name": "image", "type": "choices",
                "value": {"choices": [draw(st.sampled_from(["1", "3", "2", "0", "-1", "1e9", "x"]))]}})
    out.append({"from_name": labeling.COMMAND, "to_name": "image", "type": "textarea",
                "value": {"text": [draw(st.sampled_from(COMMANDS) | st.text(max_size=12))]}})
    return out


# --- /predict ---


@FUZZ
@given(body=json_values)
def test_predict_arbitrary_json(env, body):
    check(env, "/predict", body, {200, 400})


@FUZZ
@given(data=st.data())
def test_predict_structured(env, data):
    dataset = env[0]
    body = {"tasks": data.draw(st.lists(tasks(dataset), min_size=1, max_size=3))}
    params = data.draw(st.sampled_from(["none", "null_context", "context", "junk"]))
    if params == "null_context":
        body["params"] = {"context": None}
    elif params == "context":
        body["params"] = {"context": {"result": data.draw(st.lists(result_items(), max_size=5)
                                                           | json_values)}}
    elif params == "junk":
        body["params"] = data.draw(json_values)
    res = check(env, "/predict", body, {200, 400})
    if res.status_code == 200:
        assert len(res.json["results"]) == len(body["tasks"])


@FUZZ
@given(data=st.data())
def test_interactive_random_pose_values(env, data):
    dataset = env[0]
    from pose6d.dataset import ObjectKey

    task = task_for(dataset, ObjectKey.parse(data.draw(st.sampled_from(KEYS))), data.draw(st.integers(1, 3)))
    body = {"tasks": [task], "params": {"context": {"result": pose_context(data.draw)}}}
    res = check(env, "/predict", body, {200})
    result = res.json["results"][0]["result"]
    for item in result:  # whatever came in, what goes back is renderable
        if item["type"] == "number":
            assert isinstance(item["value"]["number"], float) and math.isfinite(item["value"]["number"])
    numbers = {r["from_name"]: r["value"]["number"] for r in result if r["type"] == "number"}
    if numbers:
        assert numbers["distance"] > 0


# --- /webhook ---


@FUZZ
@given(body=json_values)
def test_webhook_arbitrary_json(env, body):
    check(env, "/webhook", body, {201, 400, 422}, changes_allowed_on={201})


ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
           "TASKS_DELETED", "PROJECT_UPDATED", "RECONCILE", ""]


@st.composite
def webhook_events(draw) -> dict:
    """A Label Studio-shaped event with one part replaced by something wrong."""
    action = draw(st.sampled_from(ACTIONS))
    key = draw(st.sampled_from(KEYS + BAD_KEYS))
    result = draw(st.sampled_from(["valid", "random", "weird_pose"]))
    if result == "valid":
        items = ls.pose_result()
    elif result == "weird_pose":
        items = ls.pose_result(**{n: draw(weird_numbers) for n in ("azimuth", "distance", "px")},
                               quality=draw(st.sampled_from(["good", "bad", None, "x"])),
                               cad=draw(st.sampled_from(["1", "3", "2", None, "x", "-1"])))
    else:
        items = draw(st.lists(result_items(), max_size=4))
    event = ls.annotation_event("ANNOTATION_CREATED", draw(st.integers(1, 50)), draw(st.integers(1, 5)),
                                key, updated=draw(st.floats(0, 1e6)), result=items)
    event["action"] = action
    part = draw(st.sampled_from(["none", "annotation", "task", "updated_at", "id", "data",
                                 "was_cancelled", "lists"]))
    if part == "annotation":
        event["annotation"] = draw(json_values)
    elif part == "task":
        event["task"] = draw(json_values)
    elif part == "updated_at":
        event["annotation"]["updated_at"] = draw(json_values | st.sampled_from(
            ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2025-13-01", "Z"]))
    elif part == "id":
        event["annotation"]["id"] = draw(json_values | st.integers(min_value=2**63))
        event["task"]["id"] = draw(json_values | st.integers(min_value=2**63))
    elif part == "data":
        event["task"]["data"] = draw(json_values)
    elif part == "was_cancelled":
        event["annotation"]["was_cancelled"] = draw(json_values)
    elif part == "lists":
        event["annotations"] = draw(json_values | st.lists(st.fixed_dictionaries({"id": json_values})))
        event["tasks"] = draw(json_values)
    return event


@FUZZ
@given(event=webhook_events())
def test_webhook_structured(env, event):
    check(env, "/webhook", event, {201, 400, 422}, changes_allowed_on={201})


def test_fuzz_left_the_initial_annotations_alone(env, tmp_path):
    """Runs last in this module: whatever was sent, the initial records and photos are intact."""
    dataset = env[0]
    fresh = make_tiny_dataset(tmp_path / "data")
    for folder in ("annotations", "images", "CAD"):
        assert tree_hash(dataset.root / folder) == tree_hash(fresh.root / folder)
