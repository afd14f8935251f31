"""pose6d-review: the review annotation parser (label_sync.review) on hand-built Label Studio
results, the export filter, and the whole loop against a REAL Label Studio and backend: a review
project made from submitted annotations, a rejection sent back to the annotator's queue with the
note, the corrected submission synced, accepted in a second round; re-runs send nothing twice
and a send-back cut short is found again by its marker."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from label_sync import review as R
from label_sync.quality_store import EVALUATION, QualityStore, Review
from label_sync.records import SyncRejected
from label_sync.store import default_store_url
from ls_admin.export_source import Label, is_rejected
from pose6d.dataset import ObjectKey, ObjectRecord

REPO = Path(__file__).resolve().parents[1]
STAMP = "2026-12-06T10:00:00.123456Z"
STAMP_US = 1796551200123456  # hand: (2026-12-06T10:00:00Z - epoch) in us, + 123456
KEY = "car/demo_car_0001_0"


def choices(name: str, *values: str) -> dict:
    return {"id": f"r_{name}", "from_name": name, "to_name": R.OVERLAY_IMAGE, "type": "choices",
            "origin": "manual", "value": {"choices": list(values)}}


def comment(*lines: str) -> dict:
    return {"id": "r_c", "from_name": R.COMMENT, "to_name": R.OVERLAY_IMAGE, "type": "textarea",
            "origin": "manual", "value": {"text": list(lines)}}


def review_annotation(result: list, **extra) -> dict:
    return dict({"id": 501, "result": result, "updated_at": STAMP, "completed_by": 3,
                 "was_cancelled": False, "task": 70, "project": 9}, **extra)


def review_task(**data) -> dict:
    return {"id": 70, "data": dict({"object_key": KEY, "category": "car",
                                    R.DATA_REVIEWED: 41, R.DATA_REVIEWED_US: 1234}, **data)}


# --- the parser ---


def test_an_accept():
    review = R.review_from_annotation(review_annotation([choices(R.DECISION, "Accept")]),
                                      review_task(), 9)
    assert review == Review(501, STAMP_US, KEY, 41, "accept", (), "", "3", 9, reviewed_us=1234)


def test_a_reject_with_reasons_and_a_comment():
    result = [choices(R.DECISION, "Reject"), choices(R.REASONS, "bad pose", "bad CAD model"),
              comment("azimuth is off by 180", "  ")]
    review = R.review_from_annotation(review_annotation(result, completed_by={"id": 3,
                                                        "email": "rev@lab.org"}), review_task(), 9)
    assert review.decision == "reject" and review.reviewer == "rev@lab.org"
    assert review.reasons == ("bad CAD model", "bad pose")  # the original's order
    assert review.comment == "azimuth is off by 180"
    assert R.review_note("rev@lab.org", review.reasons, review.comment) == \
        "Sent back by rev@lab.org: bad CAD model, bad pose; azimuth is off by 180"
    assert R.review_note("rev", (), "") == "Sent back by rev: no reason chosen"


def test_an_accept_keeps_no_reasons_left_from_a_reject_clicked_first():
    result = [choices(R.DECISION, "Accept"), choices(R.REASONS, "bad image")]
    assert R.review_from_annotation(review_annotation(result), review_task(), 9).reasons == ()


def test_a_skipped_review_is_none():
    skipped = review_annotation([], was_cancelled=True)
    assert R.review_from_annotation(skipped, review_task(), 9) is None


@pytest.mark.parametrize("result, task, why", [
    ([], review_task(), "exactly one of Accept / Reject"),
    ([choices(R.DECISION, "Accept", "Reject")], review_task(), "exactly one"),
    ([choices(R.DECISION, "Maybe")], review_task(), "exactly one"),
    ([choices(R.DECISION, "Reject"), choices(R.REASONS, "too dark")], review_task(),
     "unknown reason"),
    ([{"from_name": R.DECISION, "type": "choices", "value": {"choices": "Reject"}}], review_task(),
     "malformed decision"),
    ("Reject", review_task(), "result must be a list"),
    ([choices(R.DECISION, "Accept")], review_task(**{R.DATA_REVIEWED: None}), R.DATA_REVIEWED),
    ([choices(R.DECISION, "Accept")], review_task(**{R.DATA_REVIEWED: "41"}), R.DATA_REVIEWED),
    ([choices(R.DECISION, "Accept")], review_task(object_key="no key"), "bad object_key"),
])
def test_malformed_reviews_are_refused_with_the_reason(result, task, why):
    with pytest.raises(SyncRejected, match=re.escape(why)):
        R.review_from_annotation(review_annotation(result), task, 9)


def test_bad_ids_and_times_are_refused():
    with pytest.raises(SyncRejected, match="integer id"):
        R.review_from_annotation(review_annotation([choices(R.DECISION, "Accept")], id="x"),
                                 review_task(), 9)
    with pytest.raises(SyncRejected, match="updated_at"):
        R.review_from_annotation(review_annotation([choices(R.DECISION, "Accept")],
                                                   updated_at="yesterday"), review_task(), 9)


def test_the_config_is_valid_for_label_studio_and_names_what_the_parser_reads():
    from label_studio_sdk.label_interface import LabelInterface

    li = LabelInterface(R.review_config())
    assert {c.name for c in li.controls} == {R.DECISION, R.REASONS, R.COMMENT}
    assert {o.name for o in li.objects} >= {R.OVERLAY_IMAGE, R.PHOTO_IMAGE}
    assert li.get_control(R.DECISION).labels == ["Accept", "Reject"]
    assert li.get_control(R.REASONS).labels == ["bad CAD model", "more CAD models needed",
                                                "bad pose", "bad image"]


# --- what create selects ---


def version(annotation_id: int, key: str, record: dict | None = None) -> "Version":
    from label_sync.store import Version

    return Version(annotation_id, 10, "h", key, 1, 1, "t", True, None, record or {}, False, "7")


def test_flags_and_selection():
    from ls_admin.review import flags, select

    shown, hidden, badfit, lost = (version(1, "car/a_1_0", {"pose_rendered": True}),
                                   version(2, "car/b_1_0", {"pose_rendered": False}),
                                   version(3, "car/c_1_0"), version(4, "car/d_1_0"))
    assert flags(shown, {"fit_score": 0.9}, 0.5, set()) == []
    assert flags(hidden, {}, 0.5, set()) == ["pose not rendered"]
    assert flags(badfit, {"fit_score": 0.31}, 0.5, set()) == ["fit score 0.31"]
    assert flags(lost, {}, 0.5, {"car/d_1_0"}) == ["lost the A/B evaluation"]
    every = [shown, hidden, badfit, lost]
    why = {v.annotation_id: flags(v, {"fit_score": 0.31} if v is badfit else {}, 0.5,
                                  {"car/d_1_0"}) for v in every}
    assert [v.annotation_id for v in select(every, "flagged", flagged=why)] == [2, 3, 4]
    assert select(every, "all") == every
    drawn = select(every, "sample", 2, seed=5)
    assert len(drawn) == 2 and drawn == select(every, "sample", 2, seed=5)  # a re-run: same draw
    assert len(select(every, "sample", 9)) == 4


def test_the_command_fails_in_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    run = subprocess.run([sys.executable, str(REPO / "scripts/review.py"), "sync", "--data-root",
                          "/nonexistent"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stderr.startswith("error:")
    helped = subprocess.run([sys.executable, str(REPO / "scripts/review.py"), "create", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--flagged" in helped.stdout and "examples:" in helped.stdout


# --- the export filter ---


def test_a_rejected_label_is_recognised_from_its_record_or_the_store():
    key = ObjectKey.parse(KEY)

    def label(extra: dict, annotation_id: int = 41, updated_us: int = 100) -> Label:
        rec = ObjectRecord(pose=None, cad_index=1, extra=extra)
        return Label(key, rec, "7", annotation_id=annotation_id, updated_us=updated_us)

    assert is_rejected(label({"review_status": "rejected"}), {})
    assert not is_rejected(label({"review_status": "reviewed"}), {})
    assert is_rejected(label({}), {41: None})
    assert is_rejected(label({}, updated_us=100), {41: 100})
    assert not is_rejected(label({}, updated_us=101), {41: 100})  # edited after the review
    assert not is_rejected(label({}, annotation_id=42), {41: None})


# --- the whole loop against a real Label Studio and backend ---

ANN_EMAIL, ANN_PASSWORD = "review-annotator@example.com", "ann-password-123"


class UserSession:
    """A Label Studio user through the browser's session API (login form, CSRF header)."""

    def __init__(self, url: str, email: str, password: str):
        self.url, self.s = url, requests.Session()
        self.s.get(f"{url}/user/login/")
        self.s.post(f"{url}/user/login/", data={"email": email, "password": password,
                                                "csrfmiddlewaretoken": self.s.cookies["csrftoken"]},
                    headers={"Referer": f"{url}/user/login/"})
        self.s.headers.update({"X-CSRFToken": self.s.cookies["csrftoken"], "Referer": url})
        me = self.s.get(f"{url}/api/current-user/whoami")
        assert me.ok and me.json()["email"] == email, me.text[:200]
        self.id = me.json()["id"]

    def next_task(self, project_id: int) -> dict | None:
        """GET /api/projects/{id}/next: the task Label Studio's stream gives this user."""
        r = self.s.get(f"{self.url}/api/projects/{project_id}/next")
        return r.json() if r.status_code == 200 else None

    def annotate(self, task_id: int, result: list) -> int:
        r = self.s.post(f"{self.url}/api/tasks/{task_id}/annotations/",
                        json={"result": result, "lead_time": 5.0})
        assert r.ok, r.text[:300]
        return r.json()["id"]


def pose_answer(dataset, key: str, azimuth_shift_deg: float = 0.0) -> tuple[list, float]:
    """A submitted result: the object's ground-truth pose (azimuth shifted), its CAD model,
    quality good, not dense; and the azimuth submitted (degrees)."""
    from pose6d import labeling as L
    from pose6d.dataset import GROUND_TRUTH

    gt = dataset.read(ObjectKey.parse(key), GROUND_TRUTH)
    deg = gt.pose.as_degrees()
    deg["azimuth"] = (deg["azimuth"] + azimuth_shift_deg + 180) % 360 - 180
    pose = type(gt.pose).from_degrees(**{k: deg[k] for k in ("azimuth", "elevation", "theta",
                                                             "distance", "px", "py")},
                                      viewport=gt.pose.viewport)
    result = L.pose_results(pose) + [L.choice_result(L.QUALITY, "good"),
                                     L.choice_result(L.DENSE, "no"),
                                     L.choice_result(L.CAD, str(gt.cad_index))]
    return result, next(r["value"]["number"] for r in result if r["from_name"] == "azimuth")


def synced_npz(dataset, key: str) -> dict | None:
    from pose6d.dataset import SYNCED
    from pose6d.inout import load_npz

    path = dataset.record_path(ObjectKey.parse(key), SYNCED)
    return load_npz(path) if path.exists() else None


def run_review(server, *args: str) -> str:
    env = dict(os.environ, LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY=server.token)
    run = subprocess.run([sys.executable, str(REPO / "scripts/review.py"), *args, "--quiet"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@contextlib.contextmanager
def store_tx(dataset):
    store = QualityStore(default_store_url(dataset.root))
    try:
        with store.transaction() as tx:
            yield tx
    finally:
        store.close()


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def review_result(decision: str, reasons: tuple[str, ...] = (), text: str = "") -> list:
    out = [choices(R.DECISION, decision)]
    if reasons:
        out.append(choices(R.REASONS, *reasons))
    if text:
        out.append(comment(text))
    return out


@pytest.fixture(scope="module")
def labelled(label_studio, label_studio_root, tmp_path_factory):
    """A demo dataset, the backend (webhook sync), a main project of 3 objects, each annotated
    by a second user through the API; yields what the test needs."""
    from label_studio_server import create_user
    from ls_admin.backend_process import BackendProcess
    from ls_admin.project import SetupOptions, setup_project
    from pose6d.dataset import Dataset
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("review") / "data"
    make_demo_dataset(root, objects=6, seed=4, progress=False)
    dataset = Dataset(root)
    with BackendProcess(root, log_path=root.parent / "backend.log") as backend:
        client = label_studio.client()
        report = setup_project(client, SetupOptions(root, backend.url, title="review main",
                                                    limit=3, progress=False), label_studio.url)
        create_user(label_studio, ANN_EMAIL, ANN_PASSWORD)
        ann = UserSession(label_studio.url, ANN_EMAIL, ANN_PASSWORD)
        submitted = {}
        for _ in range(3):  # as the annotator's stream hands them out
            task = ann.next_task(report.project_id)
            key = task["data"]["object_key"]
            result, azimuth = pose_answer(dataset, key)
            submitted[key] = (ann.annotate(task["id"], result), azimuth, task["id"])
        for key in submitted:
            wait_until(lambda: synced_npz(dataset, key), what=f"{key} synced by the webhook")
        yield {"dataset": dataset, "client": client, "main": report.project_id, "ann": ann,
               "submitted": submitted, "backend": backend}


def test_review_reject_send_back_correct_accept(label_studio, labelled):
    dataset, client, main, ann = (labelled[k] for k in ("dataset", "client", "main", "ann"))
    submitted = labelled["submitted"]
    first, second, third = sorted(submitted)
    assert ann.next_task(main) is None  # everything is labelled

    # 1. the review project: one task per submitted annotation, the pose rendered over the photo
    out = run_review(label_studio, "create", "--data-root", str(dataset.root), "--project-id",
                     str(main), "--review-title", "review loop")
    review_id = int(re.search(r"^review project (\d+)", out, re.M).group(1))
    assert "imported 3" in out
    tasks = {t.data["object_key"]: t for t in client.tasks.list(project=review_id, fields="all")}
    assert {k: t.data[R.DATA_REVIEWED] for k, t in tasks.items()} == \
        {k: v[0] for k, v in submitted.items()}
    with store_tx(dataset) as tx:
        registered = tx.project(review_id)
        assert registered.kind == "review" and registered.main_project_id == main
    from pose6d.inout import read_image
    rel = tasks[first].data[R.DATA_OVERLAY].split("?d=", 1)[1]
    overlay = read_image(Path(label_studio.document_root) / rel)
    photo = read_image(dataset.image_path(ObjectKey.parse(first)))
    assert overlay.shape == photo.shape and np.mean(np.any(overlay != photo, axis=2)) > 0.005
    served = requests.get(label_studio.url + tasks[first].data[R.DATA_OVERLAY],
                          headers={"Authorization": f"Token {label_studio.token}"})
    assert served.ok and served.content[:4] == b"\x89PNG"
    assert "imported 0" in run_review(label_studio, "create", "--data-root", str(dataset.root),
                                      "--project-id", str(main), "--review-title", "review loop")

    # 2. the reviewer rejects one, accepts another (no webhook on the review project: sync pulls)
    client.annotations.create(id=tasks[first].id, result=review_result(
        "Reject", ("bad pose", "bad CAD model"), "the car faces the other way"))
    client.annotations.create(id=tasks[second].id, result=review_result("Accept"))
    out = run_review(label_studio, "sync", "--data-root", str(dataset.root))
    assert "sent back: 1 new tasks" in out, out
    note = (f"Sent back by {label_studio.username}: bad CAD model, bad pose; "
            "the car faces the other way")
    rec = synced_npz(dataset, first)
    assert rec["review_status"] == "rejected" and rec["review_reasons"] == "bad CAD model; bad pose"
    assert rec["ls_annotation_id"] == submitted[first][0]
    assert synced_npz(dataset, second)["review_status"] == "reviewed"
    assert "review_status" not in synced_npz(dataset, third)

    # 3. the annotator's queue has the object again, with the note
    back = ann.next_task(main)
    assert back is not None and back["id"] not in {v[2] for v in submitted.values()}
    assert back["data"]["object_key"] == first and back["data"][R.DATA_REVIEW_NOTE] == note
    assert back["data"]["instructions"].startswith(note)
    # the rejected annotation is still in Label Studio (history kept)
    assert client.annotations.get(id=submitted[first][0]).id == submitted[first][0]

    # 4. re-running sends nothing twice; a send-back whose task id was never recorded (a run
    # killed between creating the task and recording it) is found by its marker, not redone
    assert "sent back: 0 new tasks, 0 found" in run_review(label_studio, "sync", "--data-root",
                                                           str(dataset.root))
    with store_tx(dataset) as tx:
        tx.run("UPDATE pose6d_qc_review SET sent_back_task_id = NULL")
    assert "sent back: 0 new tasks, 1 found" in run_review(label_studio, "sync", "--data-root",
                                                           str(dataset.root))
    main_tasks = list(client.tasks.list(project=main, include="id,data"))
    assert len(main_tasks) == 4 and sum(1 for t in main_tasks
                                        if t.data.get(R.DATA_SENT_BACK_FOR) is not None) == 1

    # 5. the corrected submission syncs as the object's record (not reviewed yet)
    result, azimuth = pose_answer(dataset, first, azimuth_shift_deg=25.0)
    corrected = ann.annotate(back["id"], result)
    rec = wait_until(lambda: (r := synced_npz(dataset, first)) is not None
                     and r["ls_annotation_id"] == corrected and r, what="the correction synced")
    assert float(rec["azimuth"]) == pytest.approx(np.radians(azimuth), abs=1e-9)
    assert "review_status" not in rec

    # 6. second round: only the new annotation is added; accepted, the record says reviewed
    out = run_review(label_studio, "create", "--data-root", str(dataset.root), "--project-id",
                     str(main), "--review-title", "review loop")
    assert "imported 1" in out, out
    new = [t for t in client.tasks.list(project=review_id, fields="all")
           if t.data[R.DATA_REVIEWED] == corrected]
    assert len(new) == 1
    client.annotations.create(id=new[0].id, result=review_result("Accept"))
    out = run_review(label_studio, "sync", "--data-root", str(dataset.root))
    assert "sent back: 0 new tasks" in out
    rec = synced_npz(dataset, first)
    assert rec["review_status"] == "reviewed" and rec["ls_annotation_id"] == corrected
    assert len(list(client.tasks.list(project=main, include="id"))) == 4  # nothing sent twice


def test_exports_leave_rejected_objects_out_unless_asked(label_studio, labelled, tmp_path):
    """Runs after the loop above: the object there was rejected, then corrected and accepted;
    a fresh rejection of another object is left out of the export."""
    dataset, client = labelled["dataset"], labelled["client"]
    third = sorted(labelled["submitted"])[2]
    review_id = next(p.id for p in client.projects.list() if p.title == "review loop")
    task = next(t for t in client.tasks.list(project=review_id, fields="all")
                if t.data["object_key"] == third)
    client.annotations.create(id=task.id, result=review_result("Reject", ("bad image",)))
    run_review(label_studio, "sync", "--data-root", str(dataset.root))
    assert synced_npz(dataset, third)["review_status"] == "rejected"

    def exported(*flags: str) -> dict[str, dict]:
        out = tmp_path / f"table{len(flags)}"
        run = subprocess.run([sys.executable, str(REPO / "scripts/export.py"), "--format", "table",
                              "--data-root", str(dataset.root), "--out", str(out), "--quiet",
                              *flags], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
        return {row["object_key"]: row for row in rows}

    everything = set(labelled["submitted"])
    assert set(exported()) == everything - {third}
    rows = exported("--include-rejected")
    assert set(rows) == everything
    assert rows[third]["review_status"] == "rejected"
    assert rows[sorted(everything)[0]]["review_status"] == "reviewed"  # accepted in the loop


def test_lost_ab_counts_live_ratings_for_and_against_the_human_pose(tmp_path):
    """Hand-made pairs, one rating per rater: on a the model won 2-1, on b the human won, on c one
    tie and one rating deleted; a rater's older verdict on d (for the model) is replaced by their
    newer one (for the human): only a lost."""
    from ls_admin.review import lost_ab

    from label_sync.quality_store import Pair, Rating

    store = QualityStore(str(tmp_path / "store.sqlite3"))
    try:
        with store.transaction() as tx:
            tx.register_project(70, EVALUATION, "e", None,
                                {"evaluation": "e", "a": "initial", "b": "synced"})
            for pair, key, left, right in (("p1", "car/a_1_0", "synced", "initial"),
                                           ("p2", "car/b_1_0", "initial", "synced"),
                                           ("p3", "car/c_1_0", "synced", "initial"),
                                           ("p4", "car/d_1_0", "initial", "synced")):
                tx.add_pair(Pair(pair, "e", key, left, right, {}, {}, "l.png", "r.png"))
            for ann, pair, rater, choice, t in (
                    (1, "p1", "7", "right", 1), (2, "p1", "8", "right", 1), (3, "p1", "9", "left", 1),
                    (4, "p2", "7", "right", 1), (5, "p3", "7", "same", 1), (6, "p3", "8", "right", 1),
                    (7, "p4", "7", "left", 1), (8, "p4", "7", "right", 2)):
                tx.upsert_rating(Rating(ann, pair, rater, choice, t))
            tx.delete_rating(6)
        assert lost_ab(store) == {"car/a_1_0"}
    finally:
        store.close()
