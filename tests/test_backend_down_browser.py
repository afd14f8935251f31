"""Issue 23 in a real browser (Label Studio 1.23.2, the real backend, headless Chromium): the
annotator sees at once when the backend is not answering, nothing typed is lost, and the page
does not jump.

The backend's main process is killed mid-task: the lines typed next stay in the command box,
each marked "not answered yet" (the page's rule: a typed line holds no line break, the
backend's messages always do); a reload keeps them (Label Studio's draft); a task opened while
the backend is down says that no pose came (its sliders are Label Studio's placeholders); once
the backend is back, the next Enter applies every kept line. The photo's box, the six values
and the CAD gallery stay in place whatever the message area shows, at 1366x768 and 1920x1080,
and the gallery is in view. Screenshots: artifacts/screenshots/backend_down_*.png.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from checks import wait_for
from label_studio_server import chromium_launch_kwargs, login
from ls_admin.backend_process import BackendProcess, free_port
from ls_admin.project import SetupOptions, setup_project
from pose6d import labeling as L
from pose6d import labeling_config as LC
from pose6d.camera import POSE_NAMES
from pose6d.dataset import Dataset, ObjectKey
from test_annotator_loop_browser import open_task
from test_refinement_browser import Annotator, Answers, _numbers

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
FIRST, FRESH = "car/demo_car_0005_0", "mug/demo_mug_0004_0"
SIZES = ({"width": 1366, "height": 768}, {"width": 1920, "height": 1080})

pytestmark = [pytest.mark.live, pytest.mark.browser]

# Where the things the annotator works with are: the photo, the command box, the azimuth
# slider (the six values), the CAD gallery's first picture (top and bottom).
JS_PLACES = """() => { const top = s => { const e = document.querySelector(s);
    return e ? Math.round(e.getBoundingClientRect().top) : null; };
  const pics = [...document.querySelectorAll('img')].filter(i => i.src.includes('cad_thumbnails'));
  const photo = [...document.images].sort((a, b) => b.width - a.width)[0];
  return {photo: Math.round(photo.getBoundingClientRect().top),
          box: top('[data-testid=textarea-input]'), values: top('input[name=azimuth]'),
          gallery: pics.length ? Math.round(pics[0].getBoundingClientRect().top) : null,
          gallery_bottom: pics.length ? Math.round(pics[0].getBoundingClientRect().bottom) : null};
}"""
# Each line of the command box: its text, and the page's note under it (shown or not).
JS_LINES = """() => [...document.querySelectorAll('[data-testid=htx-textbox-content]')].map(e => {
  const after = getComputedStyle(e, '::after');
  return {text: e.innerText.trim(), note: after.content,
          shown: after.content !== 'none' && after.visibility === 'visible'}; })"""
JS_SHOWN = ("id => { const e = document.getElementById(id);"
            " return !!e && getComputedStyle(e).display !== 'none'; }")


@pytest.fixture(scope="module")
def project(label_studio, label_studio_root, tmp_path_factory):
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("down") / "demo"
    make_demo_dataset(root, objects=8, seed=0, progress=False)
    port = free_port()  # the restarted backend takes the same port: the project's URL
    backend = BackendProcess(root, port=port, log_path=root.parent / "backend.log").start()
    try:
        client = label_studio.client()
        keys = [ObjectKey.parse(k) for k in (FIRST, FRESH)]
        report = setup_project(client, SetupOptions(root, backend.url, title="pose6d backend down",
                                                    keys=keys, progress=False), label_studio.url)
        tasks = {t.data["object_key"]: t.id
                 for t in client.tasks.list(project=report.project_id, fields="all")}
        yield {"dataset": Dataset(root), "project": report.project_id, "tasks": tasks,
               "backend": backend, "root": root, "client": client}
    finally:
        backend.stop()


def type_line(page, text: str) -> None:
    box = page.get_by_test_id("textarea-input")
    box.click()
    box.type(text)
    page.keyboard.press("Enter")


def lines(page) -> list[dict]:
    return page.evaluate(JS_LINES)


def test_backend_killed_mid_task(label_studio, project):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    backend = project["backend"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_context(viewport=SIZES[0]).new_page()
            answers = Answers()
            page.on("response", answers.on_response)
            login(page, label_studio)
            # The Data Manager's first tab (made at setup) hides cad_options (raw HTML there).
            (view,) = project["client"].views.list(project=project["project"])
            assert "tasks:data.cad_options" in view.data["hiddenColumns"]["explore"]
            page.goto(f"{label_studio.url}/projects/{project['project']}/data")
            page.wait_for_selector("text=object_key", timeout=60000)  # the table's headers
            assert page.get_by_text("cad_options", exact=True).count() == 0
            open_task(page, label_studio, project, FIRST)
            me = Annotator(page, project["dataset"], ObjectKey.parse(FIRST), answers)
            assert not page.evaluate(JS_SHOWN, LC.NO_POSE_ID)  # the backend's pose is shown
            places = page.evaluate(JS_PLACES)
            assert places["gallery_bottom"] <= SIZES[0]["height"], places  # gallery in view

            # The backend's own messages are never marked "not answered", and move nothing.
            me.command("zz")
            assert [line["shown"] for line in lines(page)] == [False]
            assert page.evaluate(JS_PLACES) == places
            me.command("?")
            page.wait_for_timeout(LC.UNANSWERED_S * 1000 + 500)
            assert [line["shown"] for line in lines(page)] == [False]
            assert page.evaluate(JS_PLACES) == places
            page.screenshot(path=str(SCREENSHOTS / "backend_down_1_help_1366.png"))
            before, _ = _numbers(me.command("a+"))

            # The backend's main process dies (as a crash would: no goodbye).
            os.kill(backend.proc.pid, signal.SIGKILL)
            wait_for(lambda: not backend.healthy(timeout=0.5), 30, "the backend gone")
            type_line(page, "a+")
            type_line(page, "e+")
            shown = wait_for(lambda: (lambda ls: ls if len(ls) == 2 and all(
                line["shown"] for line in ls) else None)(lines(page)), 10,
                "both lines marked as not answered", page=page)
            assert [line["text"] for line in shown] == ["a+", "e+"]
            assert all("not answered yet" in line["note"] for line in shown)
            assert {n: me.sliders()[n] for n in POSE_NAMES} == pytest.approx(before, abs=1e-9)
            assert page.evaluate(JS_PLACES) == places  # the message area has a fixed height
            page.screenshot(path=str(SCREENSHOTS / "backend_down_2_not_answered_1366.png"))

            # A reload keeps them: Label Studio's draft (saved ~5 s after a change) has the box.
            page.wait_for_timeout(7000)
            open_task(page, label_studio, project, FIRST)
            assert [line["text"] for line in lines(page)] == ["a+", "e+"]

            # A task opened while the backend is down says that no pose came.
            open_task(page, label_studio, project, FRESH)
            assert page.evaluate(JS_SHOWN, LC.NO_POSE_ID)
            assert not page.evaluate(JS_SHOWN, LC.HINT_ID)
            assert "No answer from the backend" in page.locator(f"#{LC.NO_POSE_ID}").inner_text()
            assert page.evaluate(JS_PLACES)["values"] == places["values"]  # same height as the hint
            page.screenshot(path=str(SCREENSHOTS / "backend_down_3_no_pose_1366.png"))

            # The backend is back (same port): the next Enter applies every line kept.
            backend.start()
            open_task(page, label_studio, project, FIRST)
            numbers, _ = _numbers(me.command("t+"))
            expected = dict(before, azimuth=before["azimuth"] + 1,
                            elevation=before["elevation"] + 1, theta=before["theta"] + 1)
            assert numbers == pytest.approx({n: round(v, L.NUMBER_SPECS[n].decimals)
                                             for n, v in expected.items()}, abs=1e-9)
            assert lines(page) == []  # the box is cleared: nothing waits
            assert page.evaluate(JS_PLACES) == places

            # 1920x1080: the same page, nothing moves either, the gallery in view.
            page.set_viewport_size(SIZES[1])
            open_task(page, label_studio, project, FIRST)  # opened at that size (a re-layout)
            large = page.evaluate(JS_PLACES)
            assert large["gallery_bottom"] <= SIZES[1]["height"], large
            me.command("?")
            assert page.evaluate(JS_PLACES) == large
            page.screenshot(path=str(SCREENSHOTS / "backend_down_4_help_1920.png"))
        finally:
            browser.close()
