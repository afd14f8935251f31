"""Issue 20's must-show in a real browser: an annotator fails then passes qualification.

Label Studio 1.23.2, the real backend, headless Chromium. pose6d-qualify create makes a
two-object qualification project from a demo dataset's ground truth (pass rule: 2 objects).
Annotator dave logs in, opens each test task on the labeling page, turns the model's pose 40
degrees away with the command box and submits: scored, he fails. He opens his answers again,
types the right angles and updates them: scored again, he passes. The admin's own poor answers
(through the API) stay a failed row. pose6d-report's HTML shows a row per annotator;
screenshots: docs/images/qc_qualification_task.png (dave's task), qc_qualification_failed.png
and qc_qualification.png (the report's qualification section before and after).
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from checks import wait_for
from label_studio_server import chromium_launch_kwargs, create_user, login
from ls_admin.backend_process import BackendProcess
from ls_admin.qualify import PassRule, QualifyOptions, create_qualification, score_qualification
from pose6d import labeling as L
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, Dataset, ObjectKey
from pose6d.labels import dense_value, quality_value
from test_annotator_loop_browser import open_task, wait_for_labeling
from test_qualify import angle_between, rotation_deg, store_rows
from test_refinement_browser import Annotator, Answers, VIEWPORT

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
KEYS = ("car/demo_car_0005_0", "mug/demo_mug_0004_0")
EMAIL, PASSWORD = "dave.q@example.com", "dave-password-123"

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture(scope="module")
def qualification(label_studio, label_studio_root, tmp_path_factory):
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("qualify_browser") / "demo"
    make_demo_dataset(root, objects=16, seed=0, progress=False)
    backend = BackendProcess(root, log_path=root.parent / "backend.log").start()
    try:
        client = label_studio.client()
        report = create_qualification(client, QualifyOptions(
            root, backend.url, title="qualification (browser)",
            keys=[ObjectKey.parse(k) for k in KEYS], rule=PassRule(min_objects=2),
            progress=False), label_studio.url)
        tasks = {t.data["object_key"]: t.id
                 for t in client.tasks.list(project=report.project_id, fields="all")}
        assert sorted(tasks) == sorted(KEYS)
        create_user(label_studio, EMAIL, PASSWORD)
        yield {"root": root, "dataset": Dataset(root), "client": client,
               "project": report.project_id, "tasks": tasks}
    finally:
        backend.stop()


# Label Studio's labeling store (window.Htx), its annotations: (id, author) each, the selected one.
STORE = "(window.Htx || window.dataManager.lsf.store || window.dataManager.lsf).annotationStore"
JS_TABS = f"""() => {STORE}.annotations.map(
  a => [a.pk, a.user ? a.user.email || a.user.id : null])"""
JS_SELECTED = f"() => {STORE}.selected.pk"
JS_OBJECT_KEY = """() => { const d = window.dataManager.lsf.task.data;
  return (typeof d === 'string' ? JSON.parse(d) : d).object_key; }"""


def stream_task(page) -> str:
    """Wait for the stream's current task to load; its object key."""
    wait_for_labeling(page)
    return page.evaluate(JS_OBJECT_KEY)


def dave_annotation(q: dict, key: str, dave_id: int):
    return next((a for a in q["client"].annotations.list(id=q["tasks"][key])
                 if a.completed_by == dave_id), None)


def report_section(label_studio, q: dict, out: Path, shot: Path, browser) -> str:
    """pose6d-report's HTML; a screenshot of its qualification section; the page's text."""
    run = subprocess.run([sys.executable, str(REPO / "scripts/report.py"), "--data-root",
                          str(q["root"]), "--out", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(out.as_uri())
    box = page.evaluate("""() => {
        const h = [...document.querySelectorAll('h2')].find(e => e.textContent === 'Qualification test');
        let e = h, bottom = 0;
        while (e && !(e !== h && e.tagName === 'H2')) { bottom = e.getBoundingClientRect().bottom; e = e.nextElementSibling; }
        const top = h.getBoundingClientRect().top;
        return {x: 0, y: top - 8 + window.scrollY, width: 1280, height: bottom - top + 16}; }""")
    page.screenshot(path=str(shot), clip=box, full_page=True)
    text = page.inner_text("body")
    page.context.close()
    return text


def admin_answers(q: dict, gt: dict, keys) -> None:
    """The admin answers badly through the API (quality and dense right, azimuth 90 deg off)."""
    for key in keys:
        ref = gt[key]
        pose = Pose(ref.pose.azimuth + math.pi / 2, ref.pose.elevation, ref.pose.theta,
                    ref.pose.distance, ref.pose.px, ref.pose.py, ref.pose.viewport)
        q["client"].annotations.create(id=q["tasks"][key], result=[
            *L.pose_results(pose), L.choice_result(L.CAD, str(ref.cad_index)),
            L.choice_result(L.QUALITY, quality_value(str(ref.extra["object_status"]))),
            L.choice_result(L.DENSE, dense_value(str(ref.extra["dense"])))])


def test_an_annotator_fails_then_passes_qualification(label_studio, qualification, tmp_path):
    from playwright.sync_api import sync_playwright

    q = qualification
    client, dataset = q["client"], q["dataset"]
    dave_id = next(u.id for u in client.users.list() if u.email == EMAIL)
    gt = {k: dataset.read(ObjectKey.parse(k), GROUND_TRUTH) for k in KEYS}
    admin_answers(q, gt, KEYS[1:])  # one before dave starts: does the stream show it to him?

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            answers = Answers()
            page.on("response", answers.on_response)
            login(page, label_studio, email=EMAIL, password=PASSWORD)
            # 1. Dave's first try, in the labeling stream (Label All Tasks): the model's pose
            # turned 40 degrees, then Submit; the stream then opens the next test task.
            page.goto(f"{label_studio.url}/projects/{q['project']}/data?labeling=1")
            for i in range(len(KEYS)):
                key = stream_task(page)
                me = Annotator(page, dataset, ObjectKey.parse(key), answers)
                # the stream shows dave only his own new answer, also where the admin answered
                assert [author for _, author in page.evaluate(JS_TABS)] == [EMAIL]
                me.command("a+40 q1 dn")
                if i == 0:
                    page.screenshot(path=str(IMAGES / "qc_qualification_task.png"))
                page.get_by_test_id("bottombar-submit-button").click()
                wait_for(lambda: dave_annotation(q, key, dave_id), 30, "dave's answer", page=page)
                page.wait_for_timeout(1500)
            admin_answers(q, gt, KEYS[:1])
            first = score_qualification(client, dataset, q["project"])
            results = {r.annotator: r for r in first.results}
            assert results[str(dave_id)].passed is False
            assert results[str(dave_id)].figures["median_deg"] > 10
            # independently: dave's submitted angles against the ground truth
            errors = []
            for key in KEYS:
                n = L.read_results(dave_annotation(q, key, dave_id).result).numbers
                errors.append(angle_between(
                    rotation_deg(*np.degrees([gt[key].pose.azimuth, gt[key].pose.elevation,
                                              gt[key].pose.theta])),
                    rotation_deg(n["azimuth"], n["elevation"], n["theta"])))
            assert results[str(dave_id)].figures["median_deg"] == pytest.approx(
                float(np.median(errors)), abs=2e-3)
            text = report_section(label_studio, q, tmp_path / "r1.html",
                                  IMAGES / "qc_qualification_failed.png", browser)
            assert "0 of 2 passed" in text

            # 2. Dave opens his answers again, types the right angles and updates them.
            for key in KEYS:
                before = dave_annotation(q, key, dave_id)
                open_task(page, label_studio, q, key)
                # the Data Manager shows every answer of the task (Community: no per-user view)
                assert sorted(a for _, a in page.evaluate(JS_TABS)) == [label_studio.username,
                                                                        EMAIL]
                page.get_by_text("dave.q@", exact=False).first.click()
                page.mouse.move(600, 600)  # away from the tab: its tooltip covers the command box
                page.wait_for_timeout(1500)
                assert str(page.evaluate(JS_SELECTED)) == str(before.id)
                me = Annotator(page, dataset, ObjectKey.parse(key), answers)
                deg = gt[key].pose.as_degrees()
                me.command(f"a={deg['azimuth']:.2f} e={deg['elevation']:.2f} t={deg['theta']:.2f}")
                page.get_by_test_id("bottombar-update-button").click()
                wait_for(lambda: dave_annotation(q, key, dave_id).updated_at != before.updated_at,
                         30, "dave's updated answer", page=page)
                assert dave_annotation(q, key, dave_id).id == before.id  # updated, not a new one
            second = score_qualification(client, dataset, q["project"])
            results = {r.annotator: r for r in second.results}
            assert results[str(dave_id)].passed is True
            assert results[str(dave_id)].figures["median_deg"] < 1.0
            assert [r.passed for r in second.results if r.annotator != str(dave_id)] == [False]
            rows = {r[0]: r for r in store_rows(q["root"], "pose6d_qc_qualification")}
            assert rows[str(dave_id)][2] == 1
            text = report_section(label_studio, q, tmp_path / "r2.html",
                                  IMAGES / "qc_qualification.png", browser)
            assert "1 of 2 passed" in text and EMAIL in text
        finally:
            browser.close()
