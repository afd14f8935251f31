"""Issue 21 in a real browser: pins placed in Label Studio 1.23.2 move the pose, and survive a
reload (Label Studio's draft keeps the pin points, the backend's store their model points).

Real Label Studio + the real backend on a demo dataset + headless Chromium (Playwright, Debian's
/usr/bin/chromium), as tests/test_refinement_browser.py. On one task: the overlay drawn, the pin
label chosen by its hotkey, a Ctrl+click on the overlay (the model point) and one beside it in
the photo: the centre moves by that offset (one pin), nothing else; a second pin turns theta and
scales the distance (azimuth and elevation kept); the page reloaded after the draft was saved:
the pin points come back and the next point starts pin 3 (the first four are known); a photo
point deleted by hand (Backspace) stays deleted after a command; a model point deleted by hand
removes its pin at the next pin click, and its photo point stays unused; `e=..` takes a pin
off its photo point and `solve` fits the pins again at once. Then two annotators on
one task, each in a tab of their own: B's first point before any draft of B's is refused (it
could be A's tab's) and stays, to be completed once B's draft is saved; each one's pins move
only their own pose, `pins` lists only their own, each numbers their next pin after their own,
and a reload of one tab brings back only that annotator's pins. Last, on another task: pins,
Submit, the submitted annotation reopened: the next point completes the waiting pin (the backend
takes the pins back with the annotation's undo steps).
Screenshots: docs/images/pins_*.png.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from checks import wait_for
from label_studio_server import chromium_launch_kwargs, create_user, login
from ls_admin.backend_process import BackendProcess
from ls_admin.project import SetupOptions, setup_project
from pose6d import labeling as L
from pose6d.camera import POSE_NAMES, Pose
from pose6d.dataset import Dataset, ObjectKey
from reference_camera import reference_silhouette
from test_annotator_loop_browser import annotator_on, wait_for_labeling
from test_refinement_browser import JS_ANNOTATION, Answers, Annotator

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
VIEWPORT = {"width": 1366, "height": 768}
OBJECT = "car/demo_car_0005_0"
OTHER = "mug/demo_mug_0004_0"
A_EMAIL, A_PASSWORD = "pins-a@example.com", "pins-a-password-123"  # fresh: no drafts
B_EMAIL, B_PASSWORD = "pins-b@example.com", "pins-b-password-123"

pytestmark = [pytest.mark.live, pytest.mark.browser]
JS_PIN_CHOSEN = ("() => window.dataManager.lsf.currentAnnotation.names.get('pin')"
                 ".selectedLabels.length > 0")
JS_SELECT = """id => { const a = window.dataManager.lsf.currentAnnotation;
  const r = a.regionStore.regions.find(x => x.cleanId === id);
  if (r) a.selectArea(r); return !!r; }"""
JS_TOOL = ("() => { const t = window.dataManager.lsf.currentAnnotation.names.get('image')"
           ".getToolsManager().findSelectedTool(); return t && t.control && t.control.name }")


@pytest.fixture(scope="module")
def setup(label_studio, label_studio_root, tmp_path_factory):
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("pins") / "demo"
    assert label_studio_root in root.parents
    make_demo_dataset(root, objects=8, seed=0, progress=False)
    backend = BackendProcess(root, log_path=root.parent / "backend.log").start()
    try:
        client = label_studio.client()
        keys = [ObjectKey.parse(OBJECT), ObjectKey.parse(OTHER)]
        report = setup_project(client, SetupOptions(root, backend.url, title="pose6d pins",
                                                    keys=keys, progress=False), label_studio.url)
        tasks = {t.data["object_key"]: t.id
                 for t in client.tasks.list(project=report.project_id, fields="all")}
        for email, password in ((A_EMAIL, A_PASSWORD), (B_EMAIL, B_PASSWORD)):
            create_user(label_studio, email, password)
        yield {"dataset": Dataset(root), "project": report.project_id, "key": keys[0],
               "tasks": tasks}
    finally:
        backend.stop()


class Pinner(Annotator):
    def pin_click(self, x: float, y: float) -> dict:
        """The pin tool (the smart tools' button at the toolbar's foot opens them: the first key
        point; K picks the centre's),
        the pin label (its hotkey, outside the command box; it toggles, so only when not chosen
        yet), then Ctrl+click at (x, y)."""
        self.page.get_by_text("Object quality", exact=True).click()  # leave the command box
        if self.page.evaluate(JS_TOOL) != L.PIN:
            # the smart tools' flyout (its button at the toolbar's foot), its first key point
            self.page.locator(".lsf-tool_smart").first.click()
            self.page.locator("[aria-label=key-point-tool]").first.click()
        if not self.page.evaluate(JS_PIN_CHOSEN):
            self.page.keyboard.press(L.PIN_HOTKEY)
        assert self.page.evaluate(JS_PIN_CHOSEN) and self.page.evaluate(JS_TOOL) == L.PIN
        return self.ctrl_click(x, y)

    def numbers(self) -> dict[str, float]:
        return {n: self.sliders()[n] for n in POSE_NAMES}

    def pin_points(self) -> list[dict]:
        return [r for r in self.annotation() if r.get("from_name") == L.PIN]


def note(answer: dict) -> str:
    return "\n".join(L.read_results(answer["result"]).text.get(L.COMMAND, "").splitlines())


def inside(dataset: Dataset, key: ObjectKey, cad: int, pose: Pose, width: int, height: int,
           which: int) -> tuple[int, int]:
    """A pixel well inside the silhouette (independent rasteriser): its left / right part."""
    mesh = dataset.cad.mesh(key.category, cad)
    mask = reference_silhouette(mesh.vertices, mesh.faces, pose, width, height)
    core = mask.copy()
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            core &= np.roll(np.roll(mask, dy, 0), dx, 1)
    ys, xs = np.nonzero(core)
    order = np.argsort(xs)
    i = order[len(order) // 5] if which == 0 else order[4 * len(order) // 5]
    return int(xs[i]), int(ys[i])


def open_task(page, label_studio, setup, width: int) -> None:
    page.goto(f"{label_studio.url}/projects/{setup['project']}/data?labeling=1")
    page.wait_for_selector("input[type=range][name=azimuth]", timeout=90000)
    page.wait_for_function("w => [...document.images].some(i => i.naturalWidth === w)",
                           arg=width, timeout=30000)
    page.wait_for_timeout(1000)


def first_error(text: str) -> float:
    """Pin 1's error (px) in a 'pins: 1 2.1 px, 2 waiting' line."""
    found = re.search(r"pins: 1 (\d+(?:\.\d+)?) px", text)
    assert found, text
    return float(found.group(1))


def test_pins_in_the_browser(label_studio, setup, tmp_path):
    from playwright.sync_api import sync_playwright

    dataset, key = setup["dataset"], setup["key"]
    record = dataset.read(key)
    width, height = int(record.extra["width"]), int(record.extra["height"])
    IMAGES.mkdir(parents=True, exist_ok=True)
    interactive = Answers()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("response", interactive.on_response)
            login(page, label_studio)
            open_task(page, label_studio, setup, width)
            page.get_by_test_id("bottombar-auto-annotation-toggle").check(force=True)
            page.get_by_test_id("bottombar-auto-accept-toggle").check(force=True)
            page.wait_for_timeout(800)
            me = Pinner(page, dataset, key, interactive)
            me.command(".")
            start = me.numbers()
            pose = Pose.from_degrees(**start, viewport=record.pose.viewport)
            scale = width / me.photo_box()["width"]  # image pixels per screen pixel

            # 1. One pin: a point of the overlay, then 24 px right and 14 px up of it.
            u, v = inside(dataset, key, record.cad_index, pose, width, height, 0)
            answer = me.pin_click(u, v)
            assert "pin 1: model point set" in note(answer), note(answer)
            answer = me.pin_click(u + 24, v - 14)
            moved = me.numbers()
            assert abs(moved["px"] - (start["px"] + 24)) <= 2 * scale + 0.2, (start, moved)
            assert abs(moved["py"] - (start["py"] - 14)) <= 2 * scale + 0.2, (start, moved)
            for name in ("azimuth", "elevation", "theta", "distance"):
                assert moved[name] == start[name], name
            page.screenshot(path=str(IMAGES / "pins_1_one_pin.png"))

            # 2. A second pin, its photo point further out: theta and distance change, a, e stay.
            pose = Pose.from_degrees(**moved, viewport=record.pose.viewport)
            u2, v2 = inside(dataset, key, record.cad_index, pose, width, height, 1)
            me.pin_click(u2, v2)
            me.pin_click(u2 + 30, v2 + 12)
            two = me.numbers()
            assert (two["azimuth"], two["elevation"]) == (moved["azimuth"], moved["elevation"])
            assert two["theta"] != moved["theta"] and two["distance"] < moved["distance"]
            assert len(me.pin_points()) == 4
            order = [r["id"] for r in me.pin_points()]  # creation order: m1, t1, m2, t2
            page.screenshot(path=str(IMAGES / "pins_2_two_pins.png"))
            answer = me.command("pins")
            assert "pins: 1 " in note(answer) and ", 2 " in note(answer), note(answer)

            # 3. Reload once the draft is saved: the four points come back with the values, and
            # the next point starts pin 3 (the backend knows the four by their ids).
            ids = sorted(r["id"] for r in me.pin_points())
            page.wait_for_timeout(6500)  # Label Studio's draft autosave
            page.reload()
            open_task(page, label_studio, setup, width)
            wait_for(lambda: len(me.pin_points()) == 4, 30, "the pin points after a reload",
                     page=page)
            assert sorted(r["id"] for r in me.pin_points()) == ids
            assert me.numbers() == pytest.approx(two, abs=1e-9)
            me.command(".")
            pose = Pose.from_degrees(**two, viewport=record.pose.viewport)
            u3, v3 = inside(dataset, key, record.cad_index, pose, width, height, 0)
            answer = me.pin_click(u3, v3 + 3)
            assert "pin 3: model point set" in note(answer), note(answer)
            page.screenshot(path=str(IMAGES / "pins_3_after_reload.png"))
            assert not [r for r in page.evaluate(JS_ANNOTATION)
                        if r.get("from_name") == L.OVERLAY]  # the pins' drawing is never stored
            assert math.isfinite(me.numbers()["distance"])

            # 4. Pin 2's photo point deleted by hand (selected, Backspace), then a command: its
            # answer does not put the point back (a command carries no points; the answer
            # returns the model points only, which move with the model).
            page.get_by_text("Object quality", exact=True).click()  # leave the command box
            assert page.evaluate(JS_SELECT, order[3])
            page.keyboard.press("Backspace")
            wait_for(lambda: order[3] not in [r["id"] for r in me.pin_points()], 10,
                     "the photo point deleted", page=page)
            me.command(".")
            page.wait_for_timeout(800)
            kept = [r["id"] for r in me.pin_points()]
            assert order[3] not in kept and len(kept) == 4 and set(order[:3]) <= set(kept), kept

            # 5. Pin 1's model point deleted by hand, then a click beside pin 2's model point:
            # pin 1 is removed and its photo point stays, unused; the click is pin 2's photo
            # point (its own was deleted in 4), not the start of a pin from pin 1's photo point.
            page.get_by_text("Object quality", exact=True).click()
            assert page.evaluate(JS_SELECT, order[0])
            page.keyboard.press("Backspace")
            wait_for(lambda: order[0] not in [r["id"] for r in me.pin_points()], 10,
                     "the model point deleted", page=page)
            u2, v2 = L.region_point_pixels(next(r for r in me.pin_points()
                                                if r["id"] == order[2]))
            before = me.numbers()
            answer = me.pin_click(u2 + 12, v2)
            assert "pin 1 removed" in note(answer), note(answer)
            assert order[1] in [r["id"] for r in me.pin_points()]  # pin 1's photo point stays
            listed = note(me.command("pins"))
            assert "pins: 1 " in listed and ", 2 waiting" in listed and ", 3 " not in listed, \
                listed
            after = me.numbers()
            assert abs(after["px"] - (before["px"] + 12)) <= 2 * scale + 0.2, (before, after)
            page.screenshot(path=str(tmp_path / "model_point_deleted.png"))

            # 6. Elevation set by command takes pin 1's model point off its photo point (nothing
            # solves until asked); `solve` fits the pins again at once: with one complete pin
            # the centre moves, the elevation stays as typed.
            raised = after["elevation"] + 10
            me.command(f"e={raised:g}")
            assert first_error(note(me.command("pins"))) > 1.0
            answer = me.command("solve")
            assert first_error(note(answer)) < 0.6, note(answer)
            solved = me.numbers()
            assert solved["elevation"] == pytest.approx(raised, abs=0.01)
            assert (solved["px"], solved["py"]) != (after["px"], after["py"])
            page.screenshot(path=str(tmp_path / "solve.png"))
        finally:
            browser.close()


def test_pins_in_two_annotators_tabs(label_studio, setup):
    """A and B on one task at once. B's first pin point, before Label Studio saved any draft of
    B's (the call names nobody) while A is at work: refused with what to do, A untouched, and
    the point stays in B's annotation; once B's draft is saved B's next click completes that
    pin. B's pin moves B's pose from B's own start, not A's; `pins` in each tab lists that
    annotator's pins only; each one's next pin is numbered after their own (a shared count
    would say "pin 3"); B's reload brings back B's two points only."""
    from playwright.sync_api import sync_playwright

    dataset, key = setup["dataset"], setup["key"]
    record = dataset.read(key)
    width, height = int(record.extra["width"]), int(record.extra["height"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            a = annotator_on(browser, label_studio, setup, OBJECT, A_EMAIL, A_PASSWORD,
                             kind=Pinner)
            b = annotator_on(browser, label_studio, setup, OBJECT, B_EMAIL, B_PASSWORD,
                             kind=Pinner)
            # A pin call names neither annotation nor user: the backend tells the tabs apart by
            # each one's draft (its command box id), there once Label Studio autosaved it.
            a.command(".")
            a.page.wait_for_timeout(6500)
            a.command(".")  # a call with A's draft: the backend knows A's tab is A's
            start_a, start_b = a.numbers(), b.numbers()
            assert start_b == pytest.approx(start_a, abs=1e-9)  # both the initial pose
            pose = Pose.from_degrees(**start_a, viewport=record.pose.viewport)
            scale = width / a.photo_box()["width"]
            tol = 2 * scale + 0.2

            # B's first point before any draft of B's: it could be A's tab's, so it is refused;
            # the point stays in B's annotation, and A has no pin.
            ub, vb = inside(dataset, key, record.cad_index, pose, width, height, 1)
            refused = note(b.pin_click(ub, vb))
            assert "cannot tell whose pin" in refused and "your point stays" in refused, refused
            assert len(b.pin_points()) == 1 and b.numbers() == pytest.approx(start_b, abs=1e-9)
            assert "pins: none" in note(a.command("pins"))
            b.command(".")
            b.page.wait_for_timeout(6500)

            # A's pin 1: 24 px right, 14 px up; B's pin 1 on another part (the refused point):
            # 20 px left, 10 down.
            ua, va = inside(dataset, key, record.cad_index, pose, width, height, 0)
            a.pin_click(ua, va)
            a.pin_click(ua + 24, va - 14)
            b.pin_click(ub - 20, vb + 10)
            moved_a, moved_b = a.numbers(), b.numbers()
            assert abs(moved_a["px"] - (start_a["px"] + 24)) <= tol, (start_a, moved_a)
            assert abs(moved_a["py"] - (start_a["py"] - 14)) <= tol, (start_a, moved_a)
            assert abs(moved_b["px"] - (start_b["px"] - 20)) <= tol, (start_b, moved_b)
            assert abs(moved_b["py"] - (start_b["py"] + 10)) <= tol, (start_b, moved_b)

            # `pins` in each tab: one pin each, and A's pose untouched by B's pin.
            for who in (a, b):
                text = note(who.command("pins"))
                assert "pins: 1 " in text and ", 2 " not in text, text
            assert a.numbers() == pytest.approx(moved_a, abs=1e-9)
            assert len(a.pin_points()) == 2 and len(b.pin_points()) == 2
            a.page.screenshot(path=str(IMAGES / "pins_4_two_tabs_a.png"))
            b.page.screenshot(path=str(IMAGES / "pins_5_two_tabs_b.png"))

            # A's next point starts A's pin 2.
            pose_a = Pose.from_degrees(**moved_a, viewport=record.pose.viewport)
            u2, v2 = inside(dataset, key, record.cad_index, pose_a, width, height, 1)
            assert "pin 2: model point set" in note(a.pin_click(u2, v2))

            # B reloads once the draft is saved: B's two points and pose come back, not A's
            # three, and B's next point starts B's pin 2.
            ids_b = sorted(r["id"] for r in b.pin_points())
            b.page.wait_for_timeout(6500)  # Label Studio's draft autosave
            b.page.reload()
            wait_for_labeling(b.page)
            wait_for(lambda: len(b.pin_points()) == 2, 30, "B's pin points after a reload",
                     page=b.page)
            assert sorted(r["id"] for r in b.pin_points()) == ids_b
            assert b.numbers() == pytest.approx(moved_b, abs=1e-9)
            b.command(".")
            pose_b = Pose.from_degrees(**moved_b, viewport=record.pose.viewport)
            u3, v3 = inside(dataset, key, record.cad_index, pose_b, width, height, 0)
            assert "pin 2: model point set" in note(b.pin_click(u3, v3))
            assert len(a.pin_points()) == 3
        finally:
            browser.close()


def test_a_submitted_annotation_reopened_goes_on_with_its_pins(label_studio, setup):
    """Two pins and a third's model point, Submit (the webhook ends the annotation's chain),
    the annotation reopened from the Data Manager: its five pin points come with it, the next
    point is pin 3's photo point (the backend takes the pins back: a lost chain would read the
    five again as new points), and `u` steps back through the poses from before the Submit. On
    the second task, so that the first stays without an annotation for the two tabs above."""
    from playwright.sync_api import sync_playwright

    dataset, key = setup["dataset"], ObjectKey.parse(OTHER)
    record = dataset.read(key)
    width, height = int(record.extra["width"]), int(record.extra["height"])
    task_id = setup["tasks"][OTHER]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            me = annotator_on(browser, label_studio, setup, OTHER, kind=Pinner)  # the admin
            page = me.page
            me.command(".")
            poses = [me.numbers()]
            for offset in ((18, -10), (-22, 8)):  # two pins, each solved
                pose = Pose.from_degrees(**poses[-1], viewport=record.pose.viewport)
                u, v = inside(dataset, key, record.cad_index, pose, width, height,
                              len(poses) - 1)
                me.pin_click(u, v)
                me.pin_click(u + offset[0], v + offset[1])
                poses.append(me.numbers())
            assert poses[2] != poses[1] != poses[0]
            pose = Pose.from_degrees(**poses[-1], viewport=record.pose.viewport)
            u3, v3 = inside(dataset, key, record.cad_index, pose, width, height, 0)
            answer = me.pin_click(u3, v3 + 3)
            assert "pin 3: model point set" in note(answer), note(answer)
            me.command("q1 dn")
            me.submit_from_box()
            client = label_studio.client()
            wait_for(lambda: client.annotations.list(id=task_id), 30, "the submitted annotation",
                     page=page)
            page.wait_for_timeout(1500)  # the webhook ends the chain

            page.goto(f"{label_studio.url}/projects/{setup['project']}/data?task={task_id}")
            wait_for_labeling(page)
            wait_for(lambda: len(me.pin_points()) == 5, 30, "the pin points of the annotation",
                     page=page)
            assert me.numbers() == pytest.approx(poses[-1], abs=1e-9)
            answer = me.pin_click(u3 + 20, v3 - 6)
            said = note(answer)
            assert "pins: 1 " in said and ", 3 " in said and "model point set" not in said, said
            assert me.numbers() != poses[-1]
            page.screenshot(path=str(IMAGES / "pins_7_reopened.png"))
            me.command("u")
            assert me.numbers() == pytest.approx(poses[2], abs=1e-9)
            me.command("u")  # a chain started afresh at the reopening would stop above
            assert me.numbers() == pytest.approx(poses[1], abs=1e-9)
        finally:
            browser.close()
