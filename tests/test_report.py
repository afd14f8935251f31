"""Report figures on constructed data with known errors, the HTML page and the script."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ls_payloads as P
from ls_admin.export_source import Label
from ls_admin.report import ReportInputs, build_report, format_summary
from ls_admin.report_html import render_html
from label_sync.engine import SyncService
from pose6d.camera import Pose
from pose6d.dataset import ObjectKey, ObjectRecord

REPO = Path(__file__).resolve().parents[1]
KEYS = [ObjectKey("car", f"img{i}", 0) for i in range(4)] + [ObjectKey("mug", "m0", 0)]


def rec(azimuth_deg: float, status: str = "status_good", cad: int = 1) -> ObjectRecord:
    return ObjectRecord(Pose.from_degrees(azimuth_deg, 20, 5, 6, 100, 80, viewport=2000), cad,
                        {"object_status": status, "dense": "dense_no"})


def lab(i: int, azimuth_deg: float, who: str, t: int, skipped: bool = False,
        status: str = "status_good") -> Label:
    return Label(KEYS[i], rec(azimuth_deg, status), who, skipped, annotation_id=100 * t + i,
                 updated_us=t)


@pytest.fixture
def inputs() -> ReportInputs:
    """Final labels at azimuth 0; the model's initial azimuth is off by exactly 40 degrees for
    2 of the 4 car objects. Annotator bo relabels img0, img1 20 degrees off alice's; the mug is
    skipped. Ground truth at azimuth 0: alice exact on 4, bo 20 degrees off on 2."""
    initial = {k: rec(0.0) for k in KEYS}
    initial[KEYS[0]] = rec(40.0, cad=2)
    initial[KEYS[1]] = rec(-40.0)
    labels = [lab(i, 0.0, "alice", 1) for i in range(4)]
    labels += [lab(0, 20.0, "bo", 0), lab(1, -20.0, "bo", 0)]  # older: alice's stay final
    labels += [lab(4, 0.0, "bo", 2, skipped=True)]
    gt = {k: rec(0.0) for k in KEYS[:4]}
    return ReportInputs("constructed", labels, True, initial, gt, {"bo": "bo@example.com"})


def test_model_accuracy_with_known_errors(inputs):
    model = build_report(inputs)["model"]
    assert model["overall"]["count"] == 4
    assert model["overall"]["acc_pi6"] == 0.5  # 40 deg > 30 deg for 2 of 4
    assert model["overall"]["acc_pi18"] == 0.5
    assert model["overall"]["median_deg"] == pytest.approx(20.0)  # median of 0, 0, 40, 40
    assert sorted(model["errors_deg"]) == pytest.approx([0, 0, 40, 40], abs=1e-6)
    assert model["cad_accuracy"] == 0.75
    assert list(model["per_category"]) == ["car"]


def test_agreement_and_ground_truth(inputs):
    report = build_report(inputs, qualify_acc=0.9, qualify_min=4)
    agree = report["agreement"]
    assert agree["objects"] == 2
    assert agree["overall"]["count"] == 2
    assert (agree["overall"]["acc_pi6"], agree["overall"]["acc_pi18"]) == (1.0, 0.0)
    assert agree["overall"]["median_deg"] == pytest.approx(20.0)
    assert list(agree["pairs"]) == ["alice / bo@example.com"]
    rows = {r["annotator"]: r for r in report["ground_truth"]["annotators"]}
    assert rows["alice"]["count"] == 4 and rows["alice"]["acc_pi18"] == 1.0
    assert rows["alice"]["on_target"] is True
    assert rows["bo@example.com"]["count"] == 2 and rows["bo@example.com"]["acc_pi18"] == 0.0
    assert rows["bo@example.com"]["median_deg"] == pytest.approx(20.0)
    assert rows["bo@example.com"]["on_target"] is False  # 2 < qualify_min objects


def test_progress(inputs):
    p = build_report(inputs)["progress"]
    assert (p["total"], p["done"], p["skipped"], p["bad"], p["annotations"]) == (5, 4, 1, 0, 7)
    cats = {r["category"]: r for r in p["categories"]}
    assert (cats["car"]["done"], cats["car"]["total"], cats["mug"]["skipped"]) == (4, 4, 1)
    people = {r["annotator"]: r for r in p["annotators"]}
    assert (people["alice"]["done"], people["bo@example.com"]["done"],
            people["bo@example.com"]["skipped"]) == (4, 2, 1)


def test_bad_labels_count_as_done_but_not_in_accuracy(inputs):
    inputs.labels.append(lab(2, 90.0, "alice", 5, status="status_bad"))
    report = build_report(inputs)
    assert report["progress"]["bad"] == 1 and report["progress"]["done"] == 4
    assert report["model"]["overall"]["count"] == 3  # img2's final label has no object


def test_one_label_per_object_has_no_agreement(inputs):
    inputs.all_annotations = False
    report = build_report(inputs)
    assert report["agreement"] is None
    assert "agreement: not available" in format_summary(report)


def test_html_escapes_names_and_embeds_plots(inputs):
    inputs.names["bo"] = "<script>alert(1)</script>"
    page = render_html(build_report(inputs))
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert page.count('src="data:image/png;base64,') >= 5


def test_summary_text(inputs):
    text = format_summary(build_report(inputs, qualify_min=4))
    assert "progress: 4 / 5 objects done (80.0%), 1 skipped" in text
    assert "pretrained model vs final labels: n=4     Acc@pi/6  50.0%  Acc@pi/18  50.0%  median 20.0 deg" in text
    line = next(l for l in text.splitlines() if l.strip().startswith("alice") and "quality" in l)
    assert line.endswith("ON TARGET")


def test_report_script_on_a_synced_dataset(tiny_dataset, tmp_path):
    """The script end to end: sync store (two annotators on one object), terminal and HTML."""
    service = SyncService(tiny_dataset)
    try:
        service.handle_event(P.created(1, 1, "car/img_a_1_0", 10, P.pose_result(azimuth=30), user=7))
        service.handle_event(P.created(2, 1, "car/img_a_1_0", 20, P.pose_result(azimuth=45), user=9))
    finally:
        service.close()
    out = tmp_path / "r.html"
    run = subprocess.run([sys.executable, str(REPO / "scripts/report.py"), "--data-root",
                          str(tiny_dataset.root), "--out", str(out), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert "progress: 1 / 3 objects done" in run.stdout
    assert "agreement (1 objects labeled twice or more): n=1     Acc@pi/6 100.0%  Acc@pi/18   0.0%  median 15.0 deg" in run.stdout
    assert out.read_text().startswith("<!doctype html>")
    import json

    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["ground_truth"] is None
    # initial azimuth 30 (tiny dataset), final 45: error 15 deg
    assert figures["model"]["overall"]["median_deg"] == pytest.approx(15.0)
    assert math.isclose(np.mean(figures["model"]["errors_deg"]), 15.0)


def test_poses_submitted_without_being_drawn_are_listed(inputs):
    """Labels whose record says pose_rendered False are listed by object, annotator (its email
    when the record has one) and annotation; True and unknown (absent) are not."""
    from ls_admin.report import emails_of

    drawn, unseen, unknown = (lab(i, 0.0, "7", 9) for i in range(3))
    drawn.record.extra["pose_rendered"] = True
    unseen.record.extra.update(pose_rendered=False, annotator_email="seven@example.com")
    inputs.labels = [drawn, unseen, unknown]
    inputs.names = emails_of(inputs.labels)
    report = build_report(inputs)
    assert report["unseen"] == [{"object": str(KEYS[1]), "annotator": "seven@example.com",
                                 "annotation": 901}]
    text = format_summary(report)
    assert "poses submitted without being drawn for the annotator: 1" in text
    assert f"{KEYS[1]}" in text.split("without being drawn")[1]
    page = render_html(report)
    assert "Poses submitted without being drawn" in page and "seven@example.com" in page


def test_the_report_counts_review_decisions_from_the_store(tiny_dataset):
    """Three decisions by hand: two rejections (one sent back) and an accept."""
    from label_sync.quality_store import QualityStore, Review
    from label_sync.store import default_store_url
    from ls_admin.report import load_inputs

    store = QualityStore(default_store_url(tiny_dataset.root))
    with store.transaction() as tx:
        for rid, decision, reasons, reviewer in ((1, "reject", ("bad pose",), "r1@lab.org"),
                                                 (2, "reject", ("bad pose", "bad image"), "r2@lab.org"),
                                                 (3, "accept", (), "r1@lab.org")):
            tx.upsert_review(Review(rid, 10, "car/img_a_1_0", 50 + rid, decision, reasons, "",
                                    reviewer, 9))
        tx.set_sent_back(1, 77)
    store.close()
    report = build_report(load_inputs(tiny_dataset))
    review = report["review"]
    assert (review["reviews"], review["accepted"], review["rejected"], review["sent_back"]) == (3, 1, 2, 1)
    assert review["reasons"] == {"bad pose": 2, "bad image": 1}
    assert review["reviewers"] == [{"reviewer": "r1@lab.org", "accepted": 1, "rejected": 1},
                                   {"reviewer": "r2@lab.org", "accepted": 0, "rejected": 1}]
    assert "2 rejected (1 sent back, 1 waiting for pose6d-review sync)" in format_summary(report)
    assert "<h2>Review</h2>" in render_html(report)
