"""pose6d-evaluate in a real browser (Label Studio 1.23.2, headless Chromium): a rater who is
not the admin opens two A/B tasks from the Data Manager, sees both pictures, picks a side with
the mouse on one and with a hotkey on the other, submits; the ratings are pulled and the
report's "Blind A/B evaluation" section shows B's win rate as this test counts it.
Screenshots: docs/images/qc_evaluation_task.png, docs/images/qc_evaluation_report.png.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from checks import wait_for
from label_studio_server import chromium_launch_kwargs, create_user, login
from label_sync import evaluation as E
from label_sync.quality_store import QualityStore

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
RATER, RATER_PASSWORD = "rater@example.com", "rater-password-123"
VIEWPORT = {"width": 1366, "height": 800}
# The task's two pictures as shown (the Data Manager's list beside it has thumbnails of them).
# Label Studio shows an Image tag's picture from a blob: URL of the file it fetched.
BIG_PICTURES = ("[...document.images].filter(i => i.complete && i.naturalWidth > 100 "
                "&& i.getBoundingClientRect().width > 200)")

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture(scope="module")
def evaluation(label_studio, tmp_path_factory):
    from ls_admin.evaluate import CreateOptions, create
    from pose6d.dataset import GROUND_TRUTH, SYNCED, Dataset
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("evaluate_browser") / "demo"
    make_demo_dataset(root, objects=10, seed=6, progress=False)
    dataset = Dataset(root)
    for key in dataset.objects(GROUND_TRUTH)[:4]:
        dataset.write(key, dataset.read(key, GROUND_TRUTH), SYNCED)
    client = label_studio.client()
    store_url = str(root / "annotations_new/.sync.sqlite3")
    report = create(client, CreateOptions(root, store_url, title="eval browser", seed=1,
                                          progress=False), label_studio.url)
    assert report.made == 4 and report.imported == 4, report.lines()
    create_user(label_studio, RATER, RATER_PASSWORD)
    store = QualityStore(store_url)
    with store.transaction() as tx:
        pairs = {p.pair_id: p for p in tx.pairs("eval browser")}
    store.close()
    tasks = sorted(client.tasks.list(project=report.project_id, fields="all"), key=lambda t: t.id)
    return {"dataset": dataset, "client": client, "project": report.project_id, "tasks": tasks,
            "pairs": pairs, "store_url": store_url}


def open_task(page, server, project_id: int, task_id: int) -> None:
    page.goto(f"{server.url}/projects/{project_id}/data?task={task_id}")
    page.wait_for_function(f"() => {BIG_PICTURES}.length >= 2", timeout=90000)
    page.wait_for_timeout(800)


def b_side(pair) -> str:
    return E.LEFT if pair.left_source == "synced" else E.RIGHT


def test_a_rater_completes_ab_tasks_and_the_report_shows_the_win_rate(label_studio, evaluation):
    from playwright.sync_api import sync_playwright

    client, tasks, pairs = evaluation["client"], evaluation["tasks"], evaluation["pairs"]
    first, second = tasks[0], tasks[1]
    want_first = b_side(pairs[first.data[E.DATA_PAIR]])  # B is better here: B wins
    b_second = b_side(pairs[second.data[E.DATA_PAIR]])
    want_second = E.LEFT if b_second == E.RIGHT else E.RIGHT  # A is better here: A wins
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            login(page, label_studio, email=RATER, password=RATER_PASSWORD)

            # Task 1: both pictures side by side, the choice by mouse, Submit.
            open_task(page, label_studio, evaluation["project"], first.id)
            shown = page.evaluate("() => " + BIG_PICTURES + ".map(i => { const r = "
                                  "i.getBoundingClientRect(); return [r.left, r.top, r.width, "
                                  "r.height]; })")
            assert len(shown) == 2
            (lx, ly, lw, lh), (rx, ry, rw, rh) = sorted(shown)
            assert lx + lw <= rx + 1 and abs(ly - ry) < 2  # side by side, same height
            assert min(lw, rw) > 250 and abs(lw - rw) < 2  # big enough to judge, same size
            # The verdict is required: Submit without one makes no annotation.
            page.get_by_test_id("bottombar-submit-button").click()
            page.get_by_text(f'"{E.VERDICT}" is required').wait_for(timeout=10000)
            page.get_by_role("button", name="OK").click()
            assert not client.annotations.list(id=first.id)
            page.locator("label", has_text=E.CHOICES[want_first]).click()  # its hotkey hint too
            page.wait_for_timeout(300)
            page.screenshot(path=str(IMAGES / "qc_evaluation_task.png"))
            page.get_by_test_id("bottombar-submit-button").click()
            one = wait_for(lambda: client.annotations.list(id=first.id), 30,
                           "the first rating", page=page)[0]

            # Task 2: the hotkey of the choice, then Ctrl+Enter.
            open_task(page, label_studio, evaluation["project"], second.id)
            page.keyboard.press(E.HOTKEYS[want_second])
            page.wait_for_timeout(300)
            page.keyboard.press("Control+Enter")
            two = wait_for(lambda: client.annotations.list(id=second.id), 30,
                           "the second rating", page=page)[0]
        finally:
            browser.close()

    for ann, task, want in ((one, first, want_first), (two, second, want_second)):
        rating = E.rating_from_annotation(ann.model_dump(mode="json"),
                                          {"id": task.id, "data": task.data}, evaluation["project"])
        assert rating.choice == want
        assert rating.rater != str(label_studio.username)

    # Pull and report: B won one, A one: B's win rate 0.5, Wilson 95% (0.0945, 0.9055) by hand:
    # centre 0.5, half 1.95996 / 2.92073 * sqrt(0.125 + 0.24009) = 0.40545.
    root = evaluation["dataset"].root
    env = dict(os.environ, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    pulled = subprocess.run([sys.executable, str(REPO / "scripts/evaluate.py"), "results",
                             "--data-root", str(root), "--title", "eval browser", "--quiet"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "2 ratings stored" in pulled.stdout
    out = root.parent / "report.html"
    made = subprocess.run([sys.executable, str(REPO / "scripts/report.py"), "--data-root",
                           str(root), "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert made.returncode == 0, made.stderr
    page_html = out.read_text()
    section = page_html[page_html.index("<h2>Blind A/B evaluation</h2>"):]
    section = section[:section.index("<h2>", 5)]
    first_row = section[section.index("<td>all</td>"):].split("</tr>")[0]
    cells = [c.split("</td>")[0] for c in first_row.split("<td>")[1:]]
    assert cells == ["all", "2", "1", "1", "0", "0.500", "0.095", "0.905"], cells
    wanted_a = pairs[second.data[E.DATA_PAIR]].object_key
    assert f"<td>{wanted_a}</td>" in section  # the object where A won, to review

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 700}).new_page()
            page.goto(out.as_uri())
            page.get_by_text("Blind A/B evaluation", exact=True).scroll_into_view_if_needed()
            page.evaluate("() => [...document.querySelectorAll('h2')].find(h => h.textContent"
                          " === 'Blind A/B evaluation').scrollIntoView()")
            page.screenshot(path=str(IMAGES / "qc_evaluation_report.png"))
        finally:
            browser.close()
