"""pose6d-review in a real browser (Label Studio 1.23.2, the real backend, headless Chromium): a
reviewer rejects a submitted pose on the review page (reason and comment), the review project's
webhook brings the decision to the store, pose6d-review sync sends the object back, and the
annotator's "Label All Tasks" opens it again at the pose sent back, with the reviewer's note
above the command box and in it; the corrected submission syncs, and accepted in a second
round the record says reviewed.
Screenshots: docs/images/qc_review_task.png, docs/images/qc_review_sent_back.png.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from checks import wait_for
from label_studio_server import chromium_launch_kwargs, create_user, login
from label_sync import review as R
from label_sync.quality_store import QualityStore
from label_sync.store import default_store_url
from pose6d.dataset import GROUND_TRUTH, SYNCED, ObjectKey
from test_refinement_browser import JS_SLIDERS, VIEWPORT
from test_review import (UserSession, pose_answer, review_result, run_review, synced_npz,
                         wait_until)

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
ANN_EMAIL, ANN_PASSWORD = "review-browser-annotator@example.com", "ann-password-456"
COMMENT = "The car faces the other way: turn it round (f)."

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture(scope="module")
def setup(label_studio, tmp_path_factory):
    from ls_admin.backend_process import BackendProcess
    from ls_admin.project import SetupOptions, setup_project
    from pose6d.dataset import Dataset
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("review_browser") / "data"
    make_demo_dataset(root, objects=4, seed=5, progress=False)
    dataset = Dataset(root)
    with BackendProcess(root, log_path=root.parent / "backend.log") as backend:
        client = label_studio.client()
        report = setup_project(client, SetupOptions(root, backend.url, title="review browser main",
                                                    limit=2, progress=False), label_studio.url)
        create_user(label_studio, ANN_EMAIL, ANN_PASSWORD)
        ann = UserSession(label_studio.url, ANN_EMAIL, ANN_PASSWORD)
        submitted = {}
        for _ in range(2):
            task = ann.next_task(report.project_id)
            key = task["data"]["object_key"]
            result, _ = pose_answer(dataset, key, azimuth_shift_deg=180.0)  # facing the wrong way
            submitted[key] = ann.annotate(task["id"], result)
        for key in submitted:
            wait_until(lambda: synced_npz(dataset, key), what=f"{key} synced")
        out = run_review(label_studio, "create", "--data-root", str(root), "--project-id",
                         str(report.project_id), "--review-title", "review browser",
                         "--backend-url", backend.url)
        review_id = int(out.split()[2])
        yield {"dataset": dataset, "client": client, "main": report.project_id,
               "review": review_id, "submitted": submitted, "ann": ann}


def turn_deg(angle: float) -> float:
    """An angle difference in degrees, wrapped into [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


def stored_reviews(dataset) -> list:
    store = QualityStore(default_store_url(dataset.root))
    try:
        with store.transaction() as tx:
            return tx.reviews()
    finally:
        store.close()


def test_a_rejected_pose_comes_back_to_the_annotator_with_the_reason(label_studio, setup):
    from playwright.sync_api import sync_playwright

    dataset, client = setup["dataset"], setup["client"]
    key = sorted(setup["submitted"])[0]
    task = next(t for t in client.tasks.list(project=setup["review"], fields="all")
                if t.data["object_key"] == key)
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            # 1. the reviewer (the admin) rejects the pose: reason, comment, Submit
            page = browser.new_context(viewport=VIEWPORT).new_page()
            login(page, label_studio)
            page.goto(f"{label_studio.url}/projects/{setup['review']}/data?task={task.id}")
            page.wait_for_function("() => [...document.images].filter(i => i.naturalWidth > 300)"
                                   ".length >= 2", timeout=90000)
            # a choice shows its hotkey after its name: "Reject[r]"
            choice = lambda text: page.get_by_text(re.compile("^" + re.escape(text)))  # noqa: E731
            assert not choice("bad pose").is_visible()  # the reasons show only for Reject
            choice(R.REJECT).click()
            choice("bad pose").click()
            box = page.locator("textarea").first
            box.click()
            box.fill(COMMENT)
            box.press("Shift+Enter")  # a multi-row TextArea adds its text with Shift+Enter
            wait_for(lambda: COMMENT in page.content(), 10, "the comment added", page=page)
            page.wait_for_timeout(500)
            page.screenshot(path=str(IMAGES / "qc_review_task.png"))
            page.get_by_role("button", name="Submit").click()
            # the review project's webhook brings the decision to the store
            review = wait_for(lambda: stored_reviews(dataset), 30, "the review synced",
                              page=page)[0]
            assert (review.decision, review.reasons, review.comment) == \
                ("reject", ("bad pose",), COMMENT)
            assert synced_npz(dataset, key)["review_status"] == "rejected"

            # 2. sent back
            assert "sent back: 1 new tasks" in run_review(label_studio, "sync", "--data-root",
                                                          str(dataset.root))
            note = f"Sent back by {label_studio.username}: bad pose; {COMMENT}"

            # 3. the annotator's Label All Tasks opens the object again, the note shown
            ann = browser.new_context(viewport=VIEWPORT).new_page()
            login(ann, label_studio, email=ANN_EMAIL, password=ANN_PASSWORD)
            ann.goto(f"{label_studio.url}/projects/{setup['main']}/data?labeling=1")
            ann.wait_for_selector("input[type=range][name=azimuth]", timeout=90000)
            ann.wait_for_function("() => [...document.images].some(i => i.naturalWidth > 300)",
                                  timeout=30000)
            wait_for(lambda: ann.get_by_text(note, exact=False).first.is_visible(), 30,
                     "the review note above the command box", page=ann)
            ann.wait_for_timeout(1500)
            ann.screenshot(path=str(IMAGES / "qc_review_sent_back.png"))
            regions = ann.get_by_test_id("textarea-regions").inner_text()
            assert "Sent back by" in regions, regions  # the backend's message in the command box
            # it opens at the pose sent back (the truth turned 180 deg), to be corrected
            truth = dataset.read(ObjectKey.parse(key), GROUND_TRUTH).pose.as_degrees()
            shown = ann.evaluate(JS_SLIDERS)
            assert abs(turn_deg(shown["azimuth"] - truth["azimuth"] - 180)) < 0.02, shown

            # 4. the correction: turn it round, quality and dense, submit
            command = ann.get_by_test_id("textarea-input")
            for line in ("f", "q1 dn"):
                command.click()
                command.fill(line)
                command.press("Enter")
                ann.wait_for_timeout(1500)
            command.click()
            ann.keyboard.press("Shift+Tab")
            ann.keyboard.press("Control+Enter")
            rec = wait_for(lambda: (r := synced_npz(dataset, key)) is not None
                           and r["ls_annotation_id"] != setup["submitted"][key] and r, 30,
                           "the corrected submission synced", page=ann)
            assert "review_status" not in rec and bool(rec["pose_rendered"])
            fixed = dataset.read(ObjectKey.parse(key), SYNCED).pose.as_degrees()
            assert abs(turn_deg(fixed["azimuth"] - truth["azimuth"])) < 0.02  # f turned it back
        finally:
            browser.close()

    # 5. second round: the correction accepted, the record says reviewed
    assert "imported 1" in run_review(label_studio, "create", "--data-root", str(dataset.root),
                                      "--project-id", str(setup["main"]), "--review-title",
                                      "review browser")
    new = next(t for t in client.tasks.list(project=setup["review"], fields="all")
               if t.data[R.DATA_REVIEWED] == int(rec["ls_annotation_id"]))
    client.annotations.create(id=new.id, result=review_result(R.ACCEPT))
    rec = wait_until(lambda: (r := synced_npz(dataset, key)).get("review_status") and r,
                     what="the accept synced by the webhook")
    assert rec["review_status"] == "reviewed"
    assert "sent back: 0 new tasks" in run_review(label_studio, "sync", "--data-root",
                                                  str(dataset.root))
