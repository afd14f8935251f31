"""Auto-fit at prefill (issue 11): the backend's --prefill-fit, its cache (pose6d.fitting.cache), the
fits as a pose source file, and setup_project --prefill-fit against a real Label Studio.

The reference is the demo dataset's ground truth: an object's initial record is replaced by a
known perturbation of its true pose (10 deg, 10 px, 10 % distance), and the pose the backend
shows must be back within 2 deg / 2 px of the truth.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend_helpers import make_client, numbers_of, task_for
from ls_admin.backend_process import BackendProcess
from ls_admin.prefill import FIT_VIEW_TITLE
from ml_backend.pose_source import make_pose_source
from pose6d import labeling as L
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, INITIAL, Dataset, ObjectKey, write_record
from pose6d.demo.dataset import make_demo_dataset
from pose6d.fitting.batch import fit_dataset
from pose6d.fitting.cache import FitCache
from pose6d.pose_error import pose_rotation_error

REPO = Path(__file__).resolve().parents[1]
KEY = ObjectKey.parse("car/demo_car_0009_0")  # fully visible, not dense (seed 0, 16 objects)


def perturbed(gt: Pose) -> Pose:
    """10 deg of rotation (azimuth 8, elevation -6), 10 px of centre (6, -8), 10 % distance."""
    return gt.replace(azimuth=gt.azimuth + math.radians(8.0),
                      elevation=gt.elevation - math.radians(6.0), px=gt.px + 6.0,
                      py=gt.py - 8.0, distance=gt.distance * 1.1)


def set_initial(dataset: Dataset, key: ObjectKey, pose: Pose, cad_index: int) -> None:
    """Replace an object's initial record (the model's pose) by ``pose``."""
    record = dataset.read(key)
    write_record(dataset.record_path(key, INITIAL),
                 dataclasses.replace(record, pose=pose, cad_index=cad_index))


def shown(result: list[dict], viewport: float) -> Pose:
    return Pose.from_mapping(numbers_of(result), degrees=True, viewport=viewport)


def errors(pose: Pose, gt: Pose) -> tuple[float, float]:
    return (math.degrees(pose_rotation_error(pose, gt)), math.hypot(pose.px - gt.px, pose.py - gt.py))


@pytest.fixture
def demo(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("prefill") / "data"
    make_demo_dataset(root, 16, seed=0, progress=False)
    dataset = Dataset(root)
    gt = dataset.read(KEY, GROUND_TRUTH)
    assert gt.extra["object_status"] == "status_good" and gt.extra["dense"] == "dense_no"
    set_initial(dataset, KEY, perturbed(gt.pose), gt.cad_index)
    return dataset


def predict(client, dataset: Dataset, key: ObjectKey) -> dict:
    response = client.post("/predict", json={"tasks": [task_for(dataset, key)], "project": "1.1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    (prediction,) = response.get_json()["results"]
    return prediction


def test_the_backend_shows_the_fitted_pose_and_its_score(demo):
    gt = demo.read(KEY, GROUND_TRUTH).pose
    start = demo.read(KEY).pose
    assert errors(start, gt)[0] > 9.5 and errors(start, gt)[1] == pytest.approx(10.0)

    plain = predict(make_client(demo), demo, KEY)
    assert errors(shown(plain["result"], gt.viewport), gt)[0] > 9.0  # without the option: as given

    client = make_client(demo, prefill_fit=True)
    first = predict(client, demo, KEY)
    rotation, centre = errors(shown(first["result"], gt.viewport), gt)
    assert rotation < 2.0 and centre < 2.0, (rotation, centre)
    assert first["model_version"].endswith("+fit")
    entry = json.loads(FitCache(demo.root).path(KEY).read_text())
    assert first["score"] == pytest.approx(entry["score"]) and 0.0 <= entry["initial_score"] < entry["score"] <= 1.0

    # Kept: a new backend process (another worker) reads it instead of fitting again.
    stamp = FitCache(demo.root).path(KEY).stat().st_mtime_ns
    again = predict(make_client(demo, prefill_fit=True), demo, KEY)
    assert numbers_of(again["result"]) == numbers_of(first["result"])
    assert FitCache(demo.root).path(KEY).stat().st_mtime_ns == stamp


def test_a_new_initial_pose_is_fitted_again_not_served_stale(demo):
    cache = FitCache(demo.root)
    predict(make_client(demo, prefill_fit=True), demo, KEY)
    before = json.loads(cache.path(KEY).read_text())
    gt = demo.read(KEY, GROUND_TRUTH)
    moved = gt.pose.replace(azimuth=gt.pose.azimuth - math.radians(7.0), px=gt.pose.px - 5.0)
    set_initial(demo, KEY, moved, gt.cad_index)
    after_pose = shown(predict(make_client(demo, prefill_fit=True), demo, KEY)["result"],
                       gt.pose.viewport)
    after = json.loads(cache.path(KEY).read_text())
    assert after["start"] != before["start"]
    assert errors(after_pose, gt.pose)[0] < errors(moved, gt.pose)[0] / 2  # fitted from the new one
    assert cache.get(KEY, moved, gt.cad_index) is not None
    assert cache.get(KEY, demo.read(KEY).pose.replace(px=moved.px + 1.0), gt.cad_index) is None


def test_a_blank_photo_or_a_missing_photo_is_a_clear_answer(demo):
    from pose6d.inout import read_image, write_image

    client = make_client(demo, prefill_fit=True)
    photo = read_image(demo.image_path(KEY))
    write_image(demo.image_path(KEY), photo * 0 + 128)
    blank = predict(client, demo, KEY)  # nothing to fit to: the model's pose, its own score
    start = demo.read(KEY).pose
    assert errors(shown(blank["result"], start.viewport), start)[0] < 0.5
    other = next(k for k in demo.objects() if k.category == "chair")
    task = task_for(demo, other)
    demo.image_path(other).unlink()
    response = client.post("/predict", json={"tasks": [task], "project": "1.1"})
    assert response.status_code == 200  # skipped, as without the option (logged)
    assert response.get_json()["results"] == [[]]


def test_a_cache_that_cannot_be_written_still_shows_the_fit(demo, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(FitCache, "put", refuse)
    gt = demo.read(KEY, GROUND_TRUTH).pose
    pose = shown(predict(make_client(demo, prefill_fit=True), demo, KEY)["result"], gt.viewport)
    assert errors(pose, gt)[0] < 2.0
    assert not FitCache(demo.root).path(KEY).exists()


def test_corrupt_cache_entries_are_refitted(demo):
    cache = FitCache(demo.root)
    path = cache.path(KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    gt = demo.read(KEY, GROUND_TRUTH).pose
    pose = shown(predict(make_client(demo, prefill_fit=True), demo, KEY)["result"], gt.viewport)
    assert errors(pose, gt)[0] < 2.0
    entry = json.loads(path.read_text())
    assert entry["object_key"] == str(KEY)
    record = demo.read(KEY)
    del entry["azimuth"]  # valid JSON, right start and version, but incomplete
    path.write_text(json.dumps(entry))
    assert FitCache(demo.root).get(KEY, record.pose, record.cad_index) is None


def test_auto_fit_output_is_a_pose_source(demo, tmp_path):
    keys = [KEY, next(k for k in demo.objects() if k.category == "chair")]
    demo.image_path(keys[1]).unlink()  # its line is an error: the dataset's pose is used
    out = tmp_path / "fits.jsonl"
    fit_dataset(demo.root, out, keys=[str(k) for k in keys], progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert "error" in lines[1] and "error" not in lines[0]
    source = make_pose_source(f"file:{out}", demo)
    fitted = source.initial(KEY)
    gt = demo.read(KEY, GROUND_TRUTH).pose
    assert errors(fitted.pose, gt)[0] < 2.0 and fitted.score == pytest.approx(lines[0]["score"])
    assert source.initial(keys[1]).pose == demo.read(keys[1]).pose


def test_the_backend_refuses_prefill_without_autofit(demo, tmp_path):
    """Where OpenCV is missing (the Docker image) the option fails at start, in one line."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "cv2.py").write_text("raise ImportError('No module named cv2 (test shadow)')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPO)]))
    run = subprocess.run([sys.executable, "-m", "ml_backend", "--data-root", str(demo.root),
                          "--prefill-fit"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2 and "--prefill-fit needs auto-fit" in run.stderr, run.stderr


# --- setup_project --prefill-fit against a real Label Studio ------------------------------------


@pytest.mark.live
def test_setup_prefill_fit_scores_tasks_and_sorts_a_view(label_studio, label_studio_root,
                                                         tmp_path_factory):
    root = tmp_path_factory.mktemp("prefill_setup", numbered=True) / "data"
    make_demo_dataset(root, 6, seed=5, progress=False)
    dataset = Dataset(root)
    log = tmp_path_factory.mktemp("prefill_backend") / "backend.log"
    env = dict(os.environ, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    with BackendProcess(root, log_path=log) as plain:  # no --prefill-fit: setup warns
        run = subprocess.run([sys.executable, str(REPO / "scripts/setup_project.py"), "--quiet",
                              "--data-root", str(root), "--backend-url", plain.url,
                              "--title", "prefill", "--prefill-fit", "--fit-workers", "2"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr
    assert "prefill fit: 6 objects fitted ahead, 0 could not be" in run.stdout
    assert f"{FIT_VIEW_TITLE!r}: created" in run.stdout and "WARNING: the backend does not fit" in run.stdout

    client = label_studio.client()
    project = next(p for p in client.projects.list() if p.title == "prefill")
    tasks = list(client.tasks.list(project=project.id, fields="all", page_size=100))
    cache = FitCache(root)
    for task in tasks:  # each task's score is the fit the backend will show
        key = ObjectKey.parse(task.data["object_key"])
        record = dataset.read(key)
        entry = cache.get(key, record.pose, record.cad_index)
        assert entry is not None and task.data[L.DATA_FIT_SCORE] == round(entry["score"], 4)
    views = [v for v in client.views.list(project=project.id) if v.data.get("title") == FIT_VIEW_TITLE]
    assert len(views) == 1
    in_view = [t.data[L.DATA_FIT_SCORE] for t in
               client.tasks.list(project=project.id, view=views[0].id, fields="all", page_size=100)]
    by_id = [t.data[L.DATA_FIT_SCORE] for t in sorted(tasks, key=lambda t: t.id)]
    assert by_id != sorted(by_id)  # else the check below could not tell the view sorted them
    assert len(in_view) == 6 and in_view == sorted(in_view)  # hardest (lowest score) first

    with BackendProcess(root, log_path=log, args=["--prefill-fit"]) as fitting:
        again = subprocess.run([sys.executable, str(REPO / "scripts/setup_project.py"), "--quiet",
                                "--data-root", str(root), "--backend-url", fitting.url,
                                "--title", "prefill", "--prefill-fit"],
                               capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{FIT_VIEW_TITLE!r}: present" in again.stdout and "WARNING" not in again.stdout
    assert "imported 0, already present 6" in again.stdout
