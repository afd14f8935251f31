"""The sync engine's quality-control steps (label_sync.quality_sync): a qualification project's
annotations never become records, --require-qualification holds an unqualified annotator's
labels until they pass, and a reviewer's decision shows in the synced record."""
from __future__ import annotations

import math

import pytest

import ls_payloads as ls
from label_sync.engine import SyncService
from label_sync.quality_store import QUALIFICATION, Qualification, QualityStore, Review
from label_sync.store import default_store_url
from pose6d.dataset import SYNCED, ObjectKey
from pose6d.inout import load_npz

CAR0, CAR1 = "car/img_a_1_0", "car/img_a_1_1"
QC_PROJECT = 50


def synced(dataset, key: str) -> dict | None:
    path = dataset.record_path(ObjectKey.parse(key), SYNCED)
    return load_npz(path) if path.exists() else None


@pytest.fixture
def quality(tiny_dataset):
    store = QualityStore(default_store_url(tiny_dataset.root))
    yield store
    store.close()


def qualify(quality: QualityStore, annotator: str, passed: bool) -> None:
    with quality.transaction() as tx:
        tx.set_qualification(Qualification(annotator, None, passed, {"objects": 10}, QC_PROJECT,
                                           "2026-12-06T00:00:00+00:00"))


def test_a_qualification_projects_annotations_are_never_records(tiny_dataset, quality):
    with quality.transaction() as tx:
        tx.register_project(QC_PROJECT, QUALIFICATION, "test", None, {})
    service = SyncService(tiny_dataset)
    event = ls.created(11, 2, CAR0, 10, ls.pose_result(azimuth=99), project_id=QC_PROJECT)
    event["project"]["id"] = QC_PROJECT
    summary = service.handle_event(event)
    assert summary["status"] == "ignored" and "qualification project" in summary["reason"]
    assert synced(tiny_dataset, CAR0) is None
    # the same object labelled in the labelling project (1) is synced as usual
    assert service.handle_event(ls.created(12, 3, CAR0, 20))["status"] == "applied"
    assert synced(tiny_dataset, CAR0)["ls_annotation_id"] == 12
    # a deletion in the qualification project deletes nothing of the labelling project
    deletion = ls.deleted(12)
    deletion["project"]["id"] = QC_PROJECT
    service.handle_event(deletion)
    assert synced(tiny_dataset, CAR0)["ls_annotation_id"] == 12


def test_unqualified_annotators_are_held_and_applied_once_they_pass(tiny_dataset, quality):
    service = SyncService(tiny_dataset, require_qualification=True)
    qualify(quality, "8", passed=True)
    first = service.handle_event(ls.created(21, 2, CAR0, 10, ls.pose_result(azimuth=45), user=7))
    assert first["status"] == "held" and "not taken" in first["reason"]
    assert service.handle_event(ls.created(22, 3, CAR1, 10, user=8))["status"] == "applied"
    assert synced(tiny_dataset, CAR0) is None and synced(tiny_dataset, CAR1) is not None
    assert service.release_held() == 0  # 7 has still not passed

    qualify(quality, "7", passed=False)
    assert service.release_held() == 0
    assert service.journal(10)[-1]["status"] == "held"

    qualify(quality, "7", passed=True)
    assert service.release_held() == 1
    rec = synced(tiny_dataset, CAR0)
    assert rec["azimuth"] == pytest.approx(math.radians(45)) and rec["annotator"] == "7"
    assert service.release_held() == 0  # applied once, not again
    # without the flag nobody is held
    assert SyncService(tiny_dataset).require_qualification  # the store keeps the rule
    open_service = SyncService(tiny_dataset, require_qualification=False)
    assert open_service.handle_event(ls.created(23, 4, CAR1, 30, user=99))["status"] == "applied"


def test_an_unqualified_annotator_may_label_the_qualification_project_itself(tiny_dataset, quality):
    with quality.transaction() as tx:
        tx.register_project(QC_PROJECT, QUALIFICATION, "test", None, {})
    service = SyncService(tiny_dataset, require_qualification=True)
    assert service.labels_refused("new@lab.org", QC_PROJECT) is None
    refused = service.labels_refused("new@lab.org", 1)
    assert refused and "has not passed the qualification test" in refused
    qualify(quality, "new@lab.org", passed=True)
    assert service.labels_refused("new@lab.org", 1) is None
    assert SyncService(tiny_dataset, require_qualification=False).labels_refused(
        "other@lab.org", 1) is None


def review(annotation_id: int, decision: str, reviewed_us: int | None = None) -> Review:
    return Review(900 + annotation_id, 1, CAR0, annotation_id, decision, ("bad pose",),
                  "rotate it", "rev@lab.org", 60, reviewed_us=reviewed_us)


def test_a_review_decision_is_in_the_record_of_the_annotation_it_judged(tiny_dataset, quality):
    service = SyncService(tiny_dataset)
    service.handle_event(ls.created(31, 2, CAR0, 10))
    with quality.transaction() as tx:
        tx.upsert_review(review(31, "reject"))
    assert "rewrote" in service.resync_object(ObjectKey.parse(CAR0))
    rec = synced(tiny_dataset, CAR0)
    assert rec["review_status"] == "rejected" and rec["review_reasons"] == "bad pose"
    assert rec["reviewer"] == "rev@lab.org" and rec["review_comment"] == "rotate it"
    assert rec["ls_annotation_id"] == 31  # the pose stays, marked rejected

    # the corrected submission (a new annotation) is the record, not yet reviewed
    service.handle_event(ls.created(32, 5, CAR0, 20, ls.pose_result(azimuth=70)))
    rec = synced(tiny_dataset, CAR0)
    assert rec["ls_annotation_id"] == 32 and "review_status" not in rec
    with quality.transaction() as tx:
        tx.upsert_review(review(32, "accept"))
    service.resync_object(ObjectKey.parse(CAR0))
    assert synced(tiny_dataset, CAR0)["review_status"] == "reviewed"


def test_an_edit_after_the_review_is_not_covered_by_it(tiny_dataset, quality):
    service = SyncService(tiny_dataset)
    service.handle_event(ls.created(41, 2, CAR0, 10))
    reviewed_us = service.versions()[0].updated_us
    with quality.transaction() as tx:
        tx.upsert_review(review(41, "accept", reviewed_us))
    service.resync_object(ObjectKey.parse(CAR0))
    assert synced(tiny_dataset, CAR0)["review_status"] == "reviewed"
    service.handle_event(ls.updated(41, 2, CAR0, 30, ls.pose_result(azimuth=80)))
    rec = synced(tiny_dataset, CAR0)
    assert rec["azimuth"] == pytest.approx(math.radians(80)) and "review_status" not in rec


# --- the backend: what an annotator sees ---


def test_the_backend_tells_an_unqualified_annotator_why_nothing_moves(tiny_dataset, tiny_keys,
                                                                     quality):
    from backend_helpers import command_context, interactive_body, make_client, numbers_of, task_for
    from pose6d import labeling

    client = make_client(tiny_dataset, require_qualification=True)
    task = task_for(tiny_dataset, tiny_keys[0], 7)
    numbers = {k: round(v, 2) for k, v in tiny_dataset.read(tiny_keys[0]).pose.as_degrees().items()}

    def send(user: str) -> list[dict]:
        body = interactive_body(dict(task, drafts=[{"user": user, "result": []}]),
                                command_context(numbers, 1, "a+"))
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.json
        return response.json["results"][0]["result"]

    refused = send("new@lab.org")
    assert not numbers_of(refused)  # the pose is not changed
    text = [r for r in refused if r["from_name"] == labeling.COMMAND][0]["value"]["text"][0]
    assert "new@lab.org has not passed the qualification test" in text
    qualify(quality, "new@lab.org", passed=True)
    moved = numbers_of(send("new@lab.org"))
    assert moved["azimuth"] == pytest.approx(numbers["azimuth"] + 1)


def test_a_sent_back_task_says_why_in_the_command_box(tiny_dataset, tiny_keys):
    from backend_helpers import (command_context, interactive_body, make_client, numbers_of,
                                 task_for)
    from pose6d import labeling
    from pose6d.tasks import REVIEW_NOTE

    client = make_client(tiny_dataset)
    task = task_for(tiny_dataset, tiny_keys[0], 8)
    task["data"][REVIEW_NOTE] = "Sent back by rev@lab.org: bad pose; the wheels are off"
    result = client.post("/predict", json={"tasks": [task]}).json["results"][0]["result"]
    box = [r for r in result if r["from_name"] == labeling.COMMAND]
    assert box and box[0]["value"]["text"][0].rstrip("\n").endswith(task["data"][REVIEW_NOTE])
    # the note stays in the box while the annotator types below it: it never runs as commands
    task["data"][REVIEW_NOTE] += "\nand the mirror: f"
    result = client.post("/predict", json={"tasks": [task]}).json["results"][0]["result"]
    shown = [r for r in result if r["from_name"] == labeling.COMMAND][0]["value"]["text"][0]
    numbers = numbers_of(result)
    context = command_context(numbers, task["data"]["cad_index"], "")
    context[-1]["value"]["text"] = [shown, "e+"]  # one entry per Enter, the note's first
    answer = client.post("/predict", json=interactive_body(task, context)).json["results"][0][
        "result"]
    assert numbers_of(answer)["elevation"] == pytest.approx(numbers["elevation"] + 1)
    assert numbers_of(answer)["azimuth"] == pytest.approx(numbers["azimuth"])
    plain = client.post("/predict", json={"tasks": [task_for(tiny_dataset, tiny_keys[0], 9)]})
    assert not [r for r in plain.json["results"][0]["result"] if r["from_name"] == labeling.COMMAND]


def test_a_sent_back_task_opens_at_the_pose_sent_back(tiny_dataset, tiny_keys):
    """The annotator corrects the rejected pose instead of starting over: a task carrying the
    sent-back marker is prefilled (and refined) from the object's synced pose; the same object
    in a task without the marker from the initial pose; with no synced record, the initial."""
    import dataclasses

    from backend_helpers import (command_context, interactive_body, make_client, numbers_of,
                                 task_for)
    from pose6d.tasks import SENT_BACK_FOR

    key = tiny_keys[0]
    initial = tiny_dataset.read(key)
    rejected = initial.pose.replace(azimuth=initial.pose.azimuth + 3.0, px=initial.pose.px + 7)
    client = make_client(tiny_dataset)
    back = task_for(tiny_dataset, key, 12)
    back["data"][SENT_BACK_FOR] = 99

    def prefill(task) -> dict:
        res = client.post("/predict", json={"tasks": [task]})
        return numbers_of(res.json["results"][0]["result"])

    def same(shown: dict, pose) -> bool:  # azimuth up to a whole turn (shown wrapped or not)
        want = pose.as_degrees()
        turn = (shown["azimuth"] - want["azimuth"] + 180) % 360 - 180
        return abs(turn) < 0.01 and all(abs(shown[n] - want[n]) < 0.01 for n in want
                                        if n != "azimuth")

    assert same(prefill(back), initial.pose)  # nothing synced: the initial pose
    tiny_dataset.write(key, dataclasses.replace(initial, pose=rejected), SYNCED)
    assert same(prefill(back), rejected) and not same(prefill(back), initial.pose)
    assert same(prefill(task_for(tiny_dataset, key, 13)), initial.pose)
    # refinement starts there too: "a+" turns the pose sent back
    res = client.post("/predict", json=interactive_body(
        back, command_context({}, initial.cad_index, "a+")))
    turned = numbers_of(res.json["results"][0]["result"])
    assert same(turned, rejected.replace(azimuth=rejected.azimuth + math.radians(1.0)))
