"""Issue 12 ("bounded storage") in a real browser: what each prediction, draft and submitted
annotation adds to Label Studio's database (Label Studio 1.23.2, the real backend, the admin's
own setup, headless Chromium).

The walk: every task is opened N_OPENS times from the Data Manager (Label Studio asks the backend
only when a task has no prediction: one per task, never one per open); on one task the annotator
refines (a command, the overlay styles), Label Studio autosaves a draft, the annotator reloads
(the draft comes back without the overlay, which ``.`` draws again), then submits.

What is measured: the bytes of the JSON that Label Studio stores in its SQLite database (read
read-only from its data dir): ``prediction.result``, ``tasks_annotationdraft.result``, and
``task_completion.result`` plus ``task_completion.prediction`` (the annotations table), each as
``length(CAST(column AS BLOB))`` (UTF-8 bytes, the row's other fixed-size columns left out).
Plus the synced record ``annotations_new/<category>/<name>_<k>.npz`` on disk. The figures are
printed (README "What each object costs in storage"); the bounds are asserted.
Screenshots: artifacts/screenshots/storage_*.png.
"""
from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import pytest

from checks import wait_for
from label_studio_server import chromium_launch_kwargs, login
from ls_admin.backend_process import BackendProcess
from ls_admin.project import SetupOptions, setup_project
from pose6d import labeling as L
from pose6d.dataset import SYNCED, Dataset, ObjectKey
from test_annotator_loop_browser import open_task
from test_refinement_browser import VIEWPORT, Annotator, Answers, _numbers

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
KEYS = ("car/demo_car_0005_0", "car/demo_car_0009_0", "mug/demo_mug_0004_0")
N_OPENS = 3
MAX_ANNOTATION_BYTES = 8 * 1024  # the bound for one submitted annotation
MAX_DRAFT_BYTES = 8 * 1024  # a draft holds what a submission holds

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture(scope="module")
def project(label_studio, label_studio_root, tmp_path_factory):
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("storage") / "demo"
    make_demo_dataset(root, objects=16, seed=0, progress=False)
    backend = BackendProcess(root, log_path=root.parent / "backend.log").start()
    try:
        client = label_studio.client()
        report = setup_project(client, SetupOptions(root, backend.url, title="pose6d storage",
                                                    keys=[ObjectKey.parse(k) for k in KEYS],
                                                    progress=False), label_studio.url)
        tasks = {t.data["object_key"]: t.id
                 for t in client.tasks.list(project=report.project_id, fields="all")}
        yield {"dataset": Dataset(root), "client": client, "project": report.project_id,
               "tasks": tasks}
    finally:
        backend.stop()


class StoredBytes:
    """Label Studio's SQLite database, opened read-only for each query."""

    def __init__(self, data_dir: Path):
        self.uri = f"file:{data_dir / 'label_studio.sqlite3'}?mode=ro"

    def rows(self, sql: str, *args) -> list[tuple]:
        conn = sqlite3.connect(self.uri, uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def predictions(self, task_id: int) -> list[int]:
        """Bytes of each stored prediction's result JSON for the task."""
        return [n for (n,) in self.rows("SELECT length(CAST(result AS BLOB)) FROM prediction "
                                        "WHERE task_id = ? ORDER BY id", task_id)]

    def drafts(self, task_id: int) -> list[tuple[int, str]]:
        """(bytes, result JSON) of each stored draft of the task."""
        return self.rows("SELECT length(CAST(result AS BLOB)), result FROM tasks_annotationdraft "
                         "WHERE task_id = ? ORDER BY id", task_id)

    def annotations(self, task_id: int) -> list[tuple[int, int, str]]:
        """(result bytes, bytes of the row's ``prediction`` JSON, result JSON) of each
        annotation (table task_completion) of the task."""
        return self.rows("SELECT length(CAST(result AS BLOB)), "
                         "coalesce(length(CAST(prediction AS BLOB)), 0), result "
                         "FROM task_completion WHERE task_id = ? ORDER BY id", task_id)


def overlay_results(result_json: str) -> list[dict]:
    """The overlay's results in a stored result list (brush RLEs included)."""
    return [r for r in json.loads(result_json)
            if r.get("from_name") == L.OVERLAY or "rle" in (r.get("value") or {})]


def test_what_each_object_costs_in_label_studio(label_studio, project, capsys):
    from playwright.sync_api import sync_playwright

    db = StoredBytes(label_studio.data_dir)
    dataset, tasks = project["dataset"], project["tasks"]
    key = KEYS[0]
    task_id = tasks[key]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_kwargs())
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            answers = Answers()
            page.on("response", answers.on_response)
            login(page, label_studio)
            # Every task opened N_OPENS times: its overlay is drawn each time, from one prediction.
            for _ in range(N_OPENS):
                for other in KEYS:
                    open_task(page, label_studio, project, other)
                    me = Annotator(page, dataset, ObjectKey.parse(other), answers)
                    okey = ObjectKey.parse(other)  # the photo's other objects: drawn faintly
                    alone = [k for k in dataset.objects(categories=[okey.category])
                             if k.name == okey.name] == [okey]
                    assert {r["id"] for r in me.overlay()} == {L.MESH_REGION_ID, L.EDGES_REGION_ID} \
                        | (set() if alone else {L.NEIGHBOURS_REGION_ID,
                                                L.NEIGHBOUR_NUMBERS_REGION_ID})
            predictions = {k: db.predictions(tasks[k]) for k in KEYS}

            # Refine: the overlay follows every command (it is drawn, never serialized).
            open_task(page, label_studio, project, key)
            me = Annotator(page, dataset, ObjectKey.parse(key), answers)
            numbers, cad = _numbers(me.command("a+10"))
            me.check_shows("refined", numbers, cad)
            for style in ("tint", "solid", "off", "edges"):
                me.command(f"o={style}")
                page.screenshot(path=str(SCREENSHOTS / f"storage_1_{style}.png"))
            me.check_shows("refined", numbers, cad)
            # Label Studio autosaves the draft about 5 s after the last change. (A draft saved
            # while a command was still unanswered keeps its line in the box: the next Enter
            # after a reload would run it again, so the last change must be answered first.)
            page.wait_for_timeout(6500)
            drafts = wait_for(lambda: db.drafts(task_id), 30, "the autosaved draft", page=page)

            # A reload mid-session: the draft comes back with the values and without the overlay
            # (the overlay was never saved); "." draws it again at the values shown.
            page.reload()
            page.wait_for_selector("input[type=range][name=azimuth]", timeout=90000)
            page.wait_for_timeout(2000)
            restored = me.sliders()
            assert {n: restored[n] for n in numbers} == pytest.approx(numbers, abs=1e-9)
            after_reload = me.overlay()
            page.screenshot(path=str(SCREENSHOTS / "storage_2_reloaded.png"))
            redrawn, _ = _numbers(me.command("."))
            assert redrawn == pytest.approx(numbers, abs=1e-9)
            me.check_shows("redrawn_after_reload", numbers, cad)
            page.screenshot(path=str(SCREENSHOTS / "storage_3_redrawn.png"))

            # Submit: quality and dense from the box, Shift+Tab, Ctrl+Enter.
            me.command("q1 dn")
            me.submit_from_box()
            annotations = wait_for(lambda: db.annotations(task_id), 30, "the stored annotation",
                                   page=page)
        finally:
            browser.close()
    record = wait_for(lambda: dataset.read_optional(ObjectKey.parse(key), SYNCED), 30,
                      "the synced record")
    npz_bytes = dataset.record_path(ObjectKey.parse(key), SYNCED).stat().st_size
    sizes = [n for per_task in predictions.values() for n in per_task]
    (draft_bytes, draft_json), = drafts
    (annotation_bytes, prediction_column, annotation_json), = annotations
    with capsys.disabled():
        print(f"\n[storage] prediction result JSON: median {statistics.median(sizes):.0f} B, "
              f"max {max(sizes)} B over {len(sizes)} tasks; predictions per task after "
              f"{N_OPENS} opens: {[len(v) for v in predictions.values()]}; draft {draft_bytes} B; "
              f"submitted annotation {annotation_bytes} B (+ {prediction_column} B in its "
              f"prediction column); synced record .npz {npz_bytes} B")

    # One prediction per task however often it is opened (Label Studio asks the backend only
    # for a task without a prediction of the project's model version).
    assert all(len(v) == 1 for v in predictions.values()), predictions
    # Neither the draft nor the submission carries the overlay; the submission is bounded.
    assert not overlay_results(draft_json) and draft_bytes <= MAX_DRAFT_BYTES
    assert not overlay_results(annotation_json)
    assert annotation_bytes + prediction_column <= MAX_ANNOTATION_BYTES
    assert after_reload == []  # the documented behaviour: the overlay needs a command to return
    # ... and what the exports and the sync need is all there.
    values = L.read_results(json.loads(annotation_json))
    assert values.numbers == pytest.approx(numbers, abs=1e-9)
    assert (values.choices[L.CAD], values.choices[L.QUALITY], values.choices[L.DENSE]) == (
        str(cad), "good", "no")
    assert record.cad_index == cad and bool(record.extra["pose_rendered"]) is True
