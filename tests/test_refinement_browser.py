"""Issue 4 in a real browser: an annotator refines a pose inside Label Studio 1.23.2.

Real Label Studio (session fixture) + the real backend (ls_admin.backend_process.BackendProcess on a
demo dataset under the local-files root, connected with is_interactive=True) + headless
Chromium (Playwright, Debian's /usr/bin/chromium). On one task of the "Label All Tasks" page:
the prefilled overlay; a coarse azimuth step; a CAD switch; a centre click (smart key point);
a box fit (smart rectangle); undo; reset; two fast Enters, and the line Label Studio drops when
an answer lands between an Enter and its call; a typed value; an error line; Submit. After every
action: the six values in the DOM are the ones the backend answered, the overlay region in the
page's annotation is a render at exactly those values (IoU against an independent render), the
drawn key point / box did not pile up and the overlay regions kept their fixed ids. After
Submit: the stored annotation is the last shown pose plus CAD, quality and dense, and the
webhook's sync wrote it to annotations_new/. Screenshots: artifacts/screenshots/refinement_*.png.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from checks import decode_brush, edges_agree_with_silhouette, wait_for
from label_studio_server import chromium_launch_kwargs, login
from ls_admin.project import SetupOptions, setup_project
from ls_admin.backend_process import BackendProcess
from pose6d import labeling as L
from pose6d.camera import POSE_NAMES, Pose, wrap_angle
from pose6d.dataset import GROUND_TRUTH, SYNCED, Dataset, ObjectKey
from pose6d.labeling import shown_pose
from ml_backend.commands import ERROR_MARK
from ml_backend.refinement import LINE_LOST
from reference_camera import reference_pixels, reference_silhouette

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}
# A whole, large car whose model guessed the wrong CAD (1; the truth is 2): "n" fixes it.
OBJECT = "car/demo_car_0005_0"
OTHER = "mug/demo_mug_0004_0"  # a second task, so the queue does not end at the first
MIN_OUTLINE, MIN_INSIDE = 0.95, 0.99  # edges_agree_with_silhouette against that render

pytestmark = [pytest.mark.live, pytest.mark.browser]

# The current annotation as Label Studio would submit it (its own serializer).
JS_ANNOTATION = "() => window.dataManager.lsf.currentAnnotation.serializeAnnotation()"
# The overlay regions drawn on the page (never in the serialized annotation): id and RLE.
JS_OVERLAY = """name => window.dataManager.lsf.currentAnnotation.regionStore.regions
  .filter(r => r.results.some(x => x.from_name.name === name))
  .map(r => ({id: r.cleanId, from_name: name, value: {rle: Array.from(r.rle || [])}}))"""
JS_SLIDERS = ("() => Object.fromEntries([...document.querySelectorAll('input[type=range]')]"
              ".map(e => [e.name, +e.value]))")
INTERACTIVE = re.compile(r"/api/ml/\d+/interactive-annotating")
# From now on, timers set with no delay run ``ms`` later (0: as set): a busy page's timers.
JS_LATE_TIMERS = """ms => { const w = window;
  if (!w.pose6dSetTimeout) {
    w.pose6dSetTimeout = w.setTimeout;
    w.setTimeout = (fn, delay, ...rest) =>
      w.pose6dSetTimeout.call(w, fn, !delay && w.pose6dLate ? w.pose6dLate : delay, ...rest);
  }
  w.pose6dLate = ms; }"""
JS_BOX = ("() => [...document.querySelectorAll('[data-testid=htx-textbox-content]')]"
          ".map(e => e.innerText).join('|')")
JS_PHOTO = """w => { const imgs = [...document.images].filter(i => i.naturalWidth === w);
  const r = imgs.map(i => i.getBoundingClientRect()).sort((a, b) => b.width - a.width)[0];
  return r && {x: r.x, y: r.y, width: r.width, height: r.height}; }"""


class Answers:
    """The answers of /api/ml/<id>/interactive-annotating, in order (parsed when read: no
    Playwright call inside an event handler)."""

    def __init__(self):
        self._responses: list = []
        self._parsed: list[dict] = []
        self.sent: list[dict] = []  # what each call carried: azimuth and the box's entries

    def on_request(self, request) -> None:
        if INTERACTIVE.search(request.url):
            values = L.read_results(json.loads(request.post_data)["context"]["result"])
            self.sent.append({"azimuth": values.numbers.get("azimuth"),
                              "box": values.entries.get(L.COMMAND)})

    def on_response(self, response) -> None:
        if INTERACTIVE.search(response.url):
            self._responses.append(response)

    def all(self) -> list[dict]:
        for response in self._responses[len(self._parsed):]:
            try:
                self._parsed.append(response.json()["data"])
            except Exception:  # noqa: BLE001 - an error answer: recorded as such
                self._parsed.append({"error": response.status})
        return list(self._parsed)

    def __len__(self) -> int:
        return len(self._responses)


@pytest.fixture(scope="module")
def setup(label_studio, label_studio_root, tmp_path_factory):
    """Demo dataset under the local-files root, the backend, a project with two tasks whose
    predictions (pose, CAD, overlay) come from the backend."""
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("refine") / "demo"
    assert label_studio_root in root.parents
    make_demo_dataset(root, objects=8, seed=0, progress=False)
    dataset = Dataset(root)
    backend = BackendProcess(root, log_path=root.parent / "backend.log").start()
    try:
        client = label_studio.client()
        keys = [ObjectKey.parse(OBJECT), ObjectKey.parse(OTHER)]
        # The admin's own setup: tasks imported with the pretrained pose, the interactive backend
        # connected; opening a task asks the backend for its prediction (pose + overlay).
        report = setup_project(client, SetupOptions(root, backend.url, title="pose6d refinement",
                                                    keys=keys, progress=False), label_studio.url)
        project = client.projects.get(id=report.project_id)
        tasks = list(client.tasks.list(project=project.id, fields="all"))
        task = next(t for t in tasks if t.data["object_key"] == OBJECT)
        yield {"dataset": dataset, "backend": backend, "project": project.id, "task": task,
               "key": keys[0], "client": client}
    finally:
        backend.stop()


class Annotator:
    """Drives the labeling page like a person and checks what the page shows after each step."""

    def __init__(self, page, dataset: Dataset, key: ObjectKey, interactive: Answers):
        self.page, self.dataset, self.key = page, dataset, key
        self.record = dataset.read(key)
        self.width, self.height = int(self.record.extra["width"]), int(self.record.extra["height"])
        self.interactive = interactive  # answers of /api/ml/<id>/interactive-annotating
        self.steps: list[str] = []

    # --- what the page shows ---

    def sliders(self) -> dict[str, float]:
        return self.page.evaluate(JS_SLIDERS)

    def annotation(self) -> list[dict]:
        return self.page.evaluate(JS_ANNOTATION)

    def overlay(self) -> list[dict]:
        """The overlay regions drawn on the page ({"id", "value": {"rle"}} each)."""
        return self.page.evaluate(JS_OVERLAY, L.OVERLAY)

    def shown(self) -> tuple[dict[str, float], int, list[dict]]:
        """(six values in the DOM, CAD chosen in the annotation, the annotation's regions with
        the overlay drawn on the page). The overlay is never in what Label Studio would save."""
        result = self.annotation()
        assert not [r for r in result if r.get("from_name") == L.OVERLAY], "overlay serialized"
        values = L.read_results(result)
        return ({n: self.sliders()[n] for n in POSE_NAMES}, int(values.choices[L.CAD]),
                values.regions + self.overlay())

    def photo_box(self) -> dict:
        return self.page.evaluate(JS_PHOTO, self.width)

    def client_xy(self, x: float, y: float) -> tuple[float, float]:
        """Screen position of image pixel (x, y) (pixel centres are integers)."""
        box = self.photo_box()
        return (box["x"] + (x + 0.5) * box["width"] / self.width,
                box["y"] + (y + 0.5) * box["height"] / self.height)

    # --- actions ---

    def _answered(self, action) -> dict:
        """Run ``action``; wait for the backend's answer and for the page to show it."""
        before = len(self.interactive)
        action()
        # Label Studio may also fire calls with an empty context (answered with no result).
        answer = wait_for(lambda: next((a for a in reversed(self.interactive.all()[before:])
                                        if a.get("result") or "error" in a), None),
                          30, "the interactive answer", page=self.page)
        assert "error" not in answer, answer
        values = L.read_results(answer.get("result", []))
        if len(values.numbers) == len(POSE_NAMES):
            expected = {n: values.numbers[n] for n in POSE_NAMES}
            self.page.wait_for_function(
                "exp => { const s = Object.fromEntries([...document.querySelectorAll("
                "'input[type=range]')].map(e => [e.name, +e.value]));"
                " return Object.entries(exp).every(([k, v]) => Math.abs(s[k] - v) < 1e-9); }",
                arg=expected, timeout=15000)
        self.page.wait_for_timeout(400)  # let the canvas redraw the overlay before screenshots
        return answer

    def command(self, text: str) -> dict:
        box = self.page.get_by_test_id("textarea-input")

        def run():
            box.click()
            box.type(text)
            self.page.keyboard.press("Enter")

        answer = self._answered(run)
        focused = self.page.evaluate("() => document.activeElement?.getAttribute('name')")
        assert focused == L.COMMAND, "the command box lost the focus"
        return answer

    def submit_from_box(self) -> None:
        """Submit as the README says, from the command box: Shift+Tab (to a toolbar button:
        Label Studio's hotkeys work there), Ctrl+Enter."""
        self.page.get_by_test_id("textarea-input").click()
        self.page.keyboard.press("Shift+Tab")
        self.page.keyboard.press("Control+Enter")

    def _tool(self, key: str) -> None:
        self.page.get_by_text("Object quality", exact=True).click()  # leave the command box
        self.page.keyboard.press(key)

    def centre_click(self, x: float, y: float) -> dict:
        """K (smart key point), then Ctrl+click: a plain click on the overlay selects it."""
        self._tool("k")
        return self.ctrl_click(x, y)

    def ctrl_click(self, x: float, y: float) -> dict:
        """Ctrl+click at image pixel (x, y) with the tool chosen; the backend's answer."""
        cx, cy = self.client_xy(x, y)

        def run():
            self.page.keyboard.down("Control")
            self.page.mouse.click(cx, cy)
            self.page.keyboard.up("Control")

        return self._answered(run)

    def box_drag(self, x1: float, y1: float, x2: float, y2: float) -> dict:
        """R (smart rectangle), then Ctrl+drag from (x1, y1) to (x2, y2) (image pixels)."""
        self._tool("r")
        (ax, ay), (bx, by) = self.client_xy(x1, y1), self.client_xy(x2, y2)

        def run():
            self.page.keyboard.down("Control")
            self.page.mouse.move(ax, ay)
            self.page.mouse.down()
            self.page.mouse.move(bx, by, steps=8)
            self.page.mouse.up()
            self.page.keyboard.up("Control")

        return self._answered(run)

    # --- checks ---

    def check_shows(self, step: str, numbers: dict[str, float], cad: int) -> Pose:
        """The page shows exactly ``numbers`` and ``cad``, with one overlay (fixed ids) that is a
        render at that pose, no leftover drawn key point or box; screenshot."""
        shown, shown_cad, regions = self.shown()
        assert shown == pytest.approx(numbers, abs=1e-9), step
        assert shown_cad == cad, step
        ids = sorted(r["id"] for r in regions)
        assert ids == sorted([L.MESH_REGION_ID, L.EDGES_REGION_ID, L.BOX_REGION_ID]), (step, ids)
        pose = Pose.from_degrees(**numbers, viewport=self.record.pose.viewport)
        by_id = {r["id"]: r for r in regions}
        mesh = self.dataset.cad.mesh(self.key.category, cad)
        truth = reference_silhouette(mesh.vertices, mesh.faces, pose, self.width, self.height)
        # The default overlay: the mesh's edges drawn, no fill over the object.
        fill = decode_brush(by_id[L.MESH_REGION_ID]["value"]["rle"], self.width, self.height)
        edges = decode_brush(by_id[L.EDGES_REGION_ID]["value"]["rle"], self.width, self.height)
        covered, inside = edges_agree_with_silhouette(edges, truth)
        assert truth.any() and not fill.any(), step
        assert covered >= MIN_OUTLINE and inside >= MIN_INSIDE, (step, covered, inside)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.steps.append(step)
        number = len(self.steps) + (len(self.steps) > 8)  # 9: the error line (no pose)
        self.page.screenshot(path=str(SCREENSHOTS / f"refinement_{number:02d}_{step}.png"))
        return pose


def _numbers(answer: dict) -> tuple[dict[str, float], int]:
    values = L.read_results(answer["result"])
    return {n: values.numbers[n] for n in POSE_NAMES}, int(values.choices[L.CAD])


def _projected_box(dataset: Dataset, key: ObjectKey, cad: int, pose: Pose) -> np.ndarray:
    uv = reference_pixels(dataset.cad.mesh(key.category, cad).vertices, pose)
    return np.concatenate([uv.min(axis=0), uv.max(axis=0)])


def test_refine_a_pose_in_the_browser(label_studio, setup):
    from playwright.sync_api import sync_playwright

    dataset, key, task, client = setup["dataset"], setup["key"], setup["task"], setup["client"]
    record, truth = dataset.read(key), dataset.read(key, GROUND_TRUTH)
    cads = dataset.cad.indices(key.category)
    for old in SCREENSHOTS.glob("refinement_*.png"):
        old.unlink()
    interactive = Answers()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("response", interactive.on_response)
            page.on("request", interactive.on_request)
            login(page, label_studio)
            page.goto(f"{label_studio.url}/projects/{setup['project']}/data?labeling=1")
            page.wait_for_selector("input[type=range][name=azimuth]", timeout=90000)
            page.wait_for_function("w => [...document.images].some(i => i.naturalWidth === w)",
                                   arg=int(record.extra["width"]), timeout=30000)
            # Once per browser: Auto-Annotation (shows the smart tools and the Auto-Accept
            # toggle), then Auto-Accept; Label Studio keeps both in localStorage.
            page.get_by_test_id("bottombar-auto-annotation-toggle").check(force=True)
            page.get_by_test_id("bottombar-auto-accept-toggle").check(force=True)
            stored = page.evaluate("() => [localStorage.getItem('autoAnnotation'),"
                                   " localStorage.getItem('autoAcceptSuggestions')]")
            assert stored == ["true", "true"]
            page.wait_for_timeout(1000)
            me = Annotator(page, dataset, key, interactive)

            # 0. The task opens with the model's pose and its overlay.
            initial = {n: round(v, L.NUMBER_SPECS[n].decimals)
                       for n, v in shown_pose(record.pose).as_degrees().items()}
            me.check_shows("opened", initial, record.cad_index)
            assert not any(a.get("result") for a in interactive.all())  # nothing on opening

            # 1. Coarse azimuth step: exactly +30 deg, nothing else moves.
            numbers, cad = _numbers(me.command("a++"))
            expected = dict(initial, azimuth=wrap_angle(initial["azimuth"] + 30, 180.0))
            assert numbers == pytest.approx(expected, abs=1e-9) and cad == record.cad_index
            me.check_shows("azimuth_coarse", numbers, cad)

            # 2. Next CAD model (1 -> 2, the true one): same pose, the other mesh.
            numbers, cad = _numbers(me.command("n"))
            assert cad == cads[(cads.index(record.cad_index) + 1) % len(cads)] == truth.cad_index
            assert numbers == pytest.approx(expected, abs=1e-9)
            me.check_shows("next_cad", numbers, cad)

            # 3. Centre click on the object's true centre (on top of the overlay: Ctrl).
            target = (truth.pose.px + 20.0, truth.pose.py - 10.0)
            numbers, cad = _numbers(me.centre_click(*target))
            scale = record.extra["width"] / me.photo_box()["width"]
            assert abs(numbers["px"] - target[0]) <= scale + 0.1
            assert abs(numbers["py"] - target[1]) <= scale + 0.1
            rotation = {n: expected[n] for n in ("azimuth", "elevation", "theta", "distance")}
            assert {n: numbers[n] for n in rotation} == pytest.approx(rotation, abs=1e-9)
            before_box = dict(numbers)
            me.check_shows("centre_click", numbers, cad)

            # 4. Box fit: drag the object's visible box; rotation kept, distance and centre
            # fitted so that the projected mesh spans the drawn box.
            x1, y1, x2, y2 = (float(v) for v in record.bbox)  # the visible object's box
            numbers, cad = _numbers(me.box_drag(x1, y1, x2 - 1, y2 - 1))
            assert {n: numbers[n] for n in ("azimuth", "elevation", "theta")} == pytest.approx(
                {n: before_box[n] for n in ("azimuth", "elevation", "theta")}, abs=1e-9)
            assert numbers["distance"] != before_box["distance"]
            pose = me.check_shows("box_fit", numbers, cad)
            # the projected mesh's box has the drawn box's centre and diagonal (its aspect is
            # the rotation's, which the fit keeps)
            lo_x, lo_y, hi_x, hi_y = _projected_box(dataset, key, cad, pose)
            drawn = np.array([x1 + 0.5, y1 + 0.5, x2 - 0.5, y2 - 0.5])
            assert ((lo_x + hi_x) / 2, (lo_y + hi_y) / 2) == pytest.approx(
                ((drawn[0] + drawn[2]) / 2, (drawn[1] + drawn[3]) / 2), abs=2 * scale + 0.5)
            assert math.hypot(hi_x - lo_x, hi_y - lo_y) == pytest.approx(
                math.hypot(drawn[2] - drawn[0], drawn[3] - drawn[1]), rel=0.02)

            # 5. Undo: back to the pose before the box fit.
            numbers, cad = _numbers(me.command("u"))
            assert numbers == pytest.approx(before_box, abs=1e-9)
            me.check_shows("undo", numbers, cad)

            # 6. Reset: the model's initial pose and CAD.
            numbers, cad = _numbers(me.command("r"))
            assert numbers == pytest.approx(initial, abs=1e-9) and cad == record.cad_index
            me.check_shows("reset", numbers, cad)

            # 7. Two Enters faster than the answers. Label Studio applies only the newest answer;
            # its call carried both lines when the first answer came after the second Enter
            # (+2). If the first answer lands between the second Enter and that call (step 7b),
            # the line is lost, and the box says so: typed again, it runs.
            box = page.get_by_test_id("textarea-input")
            sent_before = len(interactive.sent)
            for _ in range(2):
                box.type("a+")
                page.keyboard.press("Enter")
            twice = dict(initial, azimuth=round(initial["azimuth"] + 2, 2))
            try:
                page.wait_for_function(
                    "([exp, lost]) => Math.abs(+document.querySelector('input[name=azimuth]')"
                    ".value - exp) < 1e-9 || document.body.innerText.includes(lost)",
                    arg=[twice["azimuth"], LINE_LOST], timeout=15000)
                page.wait_for_timeout(1500)  # both answers are in
                if LINE_LOST in page.evaluate(JS_BOX):
                    assert me.sliders()["azimuth"] == pytest.approx(twice["azimuth"] - 1)
                    me.command("a+")
            except Exception as exc:  # say what the page shows instead (a timing-dependent step)
                raise AssertionError(f"azimuth {me.sliders()['azimuth']} after two fast 'a+', "
                                     f"expected {twice['azimuth']}; the calls sent "
                                     f"{interactive.sent[sent_before:]}, the box "
                                     f"{page.evaluate(JS_BOX)!r}") from exc
            me.check_shows("two_fast_enters", twice, record.cad_index)

            # 7b. That race made certain: the first call is held until the second Enter, whose
            # call Label Studio sends from a timer that a busy page runs late (6 s here:
            # the first answer comes well before).
            held: list = []
            page.route(INTERACTIVE, lambda route: held.append(route))
            answers_before, sent_before = len(interactive), len(interactive.sent)
            box.type("a+")
            page.keyboard.press("Enter")
            wait_for(lambda: held, 30, "the first call", page=page)
            page.evaluate(JS_LATE_TIMERS, 6000)
            box.type("a+")
            page.keyboard.press("Enter")
            page.wait_for_timeout(200)
            page.evaluate(JS_LATE_TIMERS, 0)
            held[0].continue_()
            page.unroute(INTERACTIVE)
            wait_for(lambda: len(interactive.all()) >= answers_before + 2, 30, "both answers",
                     page=page)
            page.wait_for_timeout(400)
            sent = interactive.sent[sent_before:]
            assert [c["box"] for c in sent] == [["a+"], []], sent  # the second line never sent
            assert me.sliders()["azimuth"] == pytest.approx(twice["azimuth"] + 1)
            shown = page.evaluate(JS_BOX)
            assert shown.strip() == f"{ERROR_MARK} {LINE_LOST}", shown
            page.screenshot(path=str(SCREENSHOTS / "refinement_08b_line_lost.png"))
            numbers, _ = _numbers(me.command("a+"))  # typed again, it runs
            assert numbers["azimuth"] == pytest.approx(twice["azimuth"] + 2)

            # 8. A typo changes nothing and says why in the box; the next command still runs.
            answer = me.command("a+ zz")
            assert not L.read_results(answer["result"]).numbers
            error_text = page.get_by_test_id("textarea-regions").inner_text()
            assert "zz" in error_text
            page.screenshot(path=str(SCREENSHOTS / "refinement_09_error_in_the_box.png"))
            # 9. Typed values, flip and fine steps in one line; then the true CAD by number.
            numbers, cad = _numbers(me.command(f"c{truth.cad_index} a=10 f e- t+ d+ x+ y--"))
            final = {"azimuth": wrap_angle(10 + 180, 180.0), "elevation": initial["elevation"] - 1,
                     "theta": initial["theta"] + 1, "distance": initial["distance"] + 0.2,
                     "px": initial["px"] + 5, "py": initial["py"] - 30}
            final = {n: round(v, L.NUMBER_SPECS[n].decimals) for n, v in final.items()}
            assert numbers == pytest.approx(final, abs=1e-9) and cad == truth.cad_index
            assert page.get_by_test_id("textarea-regions").count() == 0  # box cleared
            me.check_shows("typed_values", numbers, cad)

            # 10. Quality and dense by their hotkeys (outside the command box), then Submit.
            page.get_by_text("Object quality", exact=True).click()
            page.keyboard.press(L.QUALITY_HOTKEYS["good"])
            page.keyboard.press(L.DENSE_HOTKEYS["no"])
            page.wait_for_timeout(300)
            me.check_shows("ready_to_submit", final, truth.cad_index)
            page.get_by_test_id("bottombar-submit-button").click()
            annotation = wait_for(lambda: client.annotations.list(id=task.id), 30,
                                  "the submitted annotation", page=page)[0]
            answers = interactive.all()
            page.wait_for_timeout(1500)
        finally:
            browser.close()

    # What was submitted: the last shown pose, the CAD, quality, dense; the box, and no overlay
    # (drawn at that pose on the page, step 10, but never stored: it is rendered from the values).
    values = L.read_results(annotation.result)
    assert values.numbers == pytest.approx(final, abs=1e-9)
    assert {k: values.choices[k] for k in (L.CAD, L.QUALITY, L.DENSE)} == {
        L.CAD: str(truth.cad_index), L.QUALITY: "good", L.DENSE: "no"}
    assert [r["id"] for r in values.regions] == [L.BOX_REGION_ID]
    assert not [r for r in annotation.result if r["from_name"] == L.OVERLAY]

    # The webhook's sync: annotations_new/ holds exactly that pose (radians), CAD and labels.
    path = dataset.record_path(key, SYNCED)
    wait_for(path.exists, 30, f"{path} written by the sync")
    synced = dataset.read(key, SYNCED)
    for name in POSE_NAMES:
        value = math.radians(final[name]) if name in ("azimuth", "elevation", "theta") else final[name]
        assert getattr(synced.pose, name) == pytest.approx(value, abs=1e-9), name
    assert synced.cad_index == truth.cad_index
    assert synced.extra["object_status"] == "status_good" and synced.extra["dense"] == "dense_no"
    shots = sorted(p.name for p in SCREENSHOTS.glob("refinement_*.png"))
    assert len(shots) == 12, shots
    (SCREENSHOTS / "refinement_answers.json").write_text(json.dumps(
        [{k: v for k, v in a.items() if k != "result"} | {"numbers": L.read_results(
            a.get("result", [])).numbers} for a in answers], indent=1))
