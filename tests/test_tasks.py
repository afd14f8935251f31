"""pose6d.tasks and scripts/make_tasks.py on the tiny dataset (offline, no Label Studio)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from pose6d import labeling as L
from pose6d.camera import POSE_NAMES
from pose6d.dataset import ObjectKey
from pose6d.labels import CATEGORY_INSTRUCTIONS
from pose6d.tasks import TaskError, iter_tasks, object_task, task_object_key

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_tasks.py"
CONFIG = REPO / "labeling_config" / "pose6d.xml"


def run_make_tasks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--quiet", *args], capture_output=True,
                          text=True, timeout=120)


def make(dataset, tmp_path, *extra: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    out = tmp_path / "tasks.json"
    run = run_make_tasks("--data-root", str(dataset.root), "--out", str(out), *extra)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text()), run


def test_one_task_per_object(tiny_dataset, tiny_keys, tmp_path):
    tasks, run = make(tiny_dataset, tmp_path)
    assert [t["data"]["object_key"] for t in tasks] == [str(k) for k in tiny_keys]
    assert "wrote 3 tasks" in run.stderr and "skipped 0" in run.stderr
    for task, key in zip(tasks, tiny_keys):
        data = task["data"]
        record = tiny_dataset.read(key)
        assert data[L.DATA_IMAGE] == f"/data/local-files/?d={tiny_dataset.image_relpath(key)}"
        assert data["category"] == key.category
        assert data["bbox"] == [100.0, 80.0, 220.0, 160.0]
        assert (data["width"], data["height"]) == (320, 240)
        assert data["viewport"] == 500.0 and data["cad_index"] == record.cad_index
        assert [o["value"] for o in data[L.DATA_CAD_OPTIONS]] == [
            str(i) for i in tiny_dataset.cad.indices(key.category)]
        assert data[L.DATA_INSTRUCTIONS] == CATEGORY_INSTRUCTIONS.get(key.category, "")
        assert task_object_key(task) == key
        assert "predictions" not in task  # Label Studio asks the backend when the task opens


def test_cad_options_show_pictures_served_like_the_photos(tiny_dataset, tiny_keys, tmp_path):
    """Each option's <img> is a local-files URL of a PNG written under the data root: the
    model's picture (a render of its mesh: ink inside, white around)."""
    from PIL import Image

    tasks, _ = make(tiny_dataset, tmp_path)
    for task in tasks:
        category = task["data"]["category"]
        options = task["data"][L.DATA_CAD_OPTIONS]
        assert [o["value"] for o in options] == [str(i) for i in tiny_dataset.cad.indices(category)]
        for option in options:
            (src,) = re.findall(r'<img src="([^"]+)"', option["html"])
            assert src.startswith("/data/local-files/?d=") and f"model {option['value']}" in option["html"]
            path = tiny_dataset.root / unquote(src.split("?d=", 1)[1])
            assert path.is_file() and tiny_dataset.root in path.resolve().parents
            with Image.open(path) as im:
                assert im.format == "PNG" and im.size == (120, 120)
                pixels = np.asarray(im.convert("L"))
            ink = pixels < 250
            assert 0.02 < ink.mean() < 0.9 and not ink[0].any() and not ink[:, 0].any()


def test_prediction_is_the_initial_pose(tiny_dataset, tiny_keys, tmp_path):
    tasks, _ = make(tiny_dataset, tmp_path, "--predictions")
    interface = LabelInterface(CONFIG.read_text())
    for task, key in zip(tasks, tiny_keys):
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "initial-annotation" and prediction["score"] == 1.0
        assert interface.validate_prediction(prediction, return_errors=True) == []
        values = L.read_results(prediction["result"])
        expected = tiny_dataset.read(key).pose.as_degrees()
        for name in POSE_NAMES:
            assert values.numbers[name] == pytest.approx(expected[name], abs=0.01), name
        assert values.choices[L.CAD] == str(tiny_dataset.read(key).cad_index)
        (box,) = values.regions
        assert box["id"] == L.BOX_REGION_ID
        # The box's borders (100, 80, 220, 160) in continuous image coordinates, read back in the
        # camera's pixel coordinates, where pixel centres are integers: half a pixel less.
        assert L.region_box_pixels(box) == pytest.approx((99.5, 79.5, 219.5, 159.5))
        assert not any(r["from_name"] == L.OVERLAY for r in prediction["result"])


def test_missing_and_unreadable_images_are_skipped(tiny_dataset, tmp_path):
    (tiny_dataset.root / "images/car/img_a_1.JPEG").unlink()
    tasks, run = make(tiny_dataset, tmp_path)
    assert [t["data"]["object_key"] for t in tasks] == ["punching_bag/bag_2_0"]
    assert "skipped car/img_a_1_0: image not found" in run.stderr
    assert "skipped 2 object(s)" in run.stderr
    (tiny_dataset.root / "images/punching_bag/bag_2.JPEG").write_bytes(b"not a jpeg")
    tasks, run = make(tiny_dataset, tmp_path)
    assert tasks == [] and "cannot read image" in run.stderr and "skipped 3" in run.stderr


def test_missing_cad_is_skipped(tiny_dataset, tmp_path):
    shutil.rmtree(tiny_dataset.root / "CAD/punching_bag")
    (tiny_dataset.root / "CAD/car/03.off").unlink()
    tasks, run = make(tiny_dataset, tmp_path)
    assert [t["data"]["object_key"] for t in tasks] == ["car/img_a_1_0"]
    assert "no CAD models for category 'punching_bag'" in run.stderr
    assert "CAD model 3 missing" in run.stderr


def test_options(tiny_dataset, tmp_path):
    tasks, _ = make(tiny_dataset, tmp_path, "--categories", "car", "--limit", "1",
                    "--image-url-prefix", "http://img.example/x/")
    (task,) = tasks
    assert "predictions" not in task
    assert task["data"][L.DATA_IMAGE] == "http://img.example/x/images/car/img_a_1.JPEG"
    first = task["data"][L.DATA_CAD_OPTIONS][0]
    assert first["value"] == "1" and first["hotkey"] == L.CAD_HOTKEYS[0]
    assert '<img src="http://img.example/x/cad_thumbnails/car/01.png"' in first["html"]
    assert "model 1" in first["html"]


def test_cad_options_text_only_without_pictures(tiny_dataset):
    task = object_task(tiny_dataset, ObjectKey("car", "img_a_1", 1), pictures=False)
    assert task["data"][L.DATA_CAD_OPTIONS] == [
        {"value": "1", "html": "model 1", "hotkey": L.CAD_HOTKEYS[0]},
        {"value": "3", "html": "model 3", "hotkey": L.CAD_HOTKEYS[1]}]
    assert task["data"]["cad_index"] == 3


def test_object_task_errors_and_iter_tasks(tiny_dataset, tiny_keys):
    (tiny_dataset.root / "images/car/img_a_1.JPEG").unlink()
    with pytest.raises(TaskError, match="car/img_a_1_0"):
        object_task(tiny_dataset, tiny_keys[0])
    skipped = []
    tasks = list(iter_tasks(tiny_dataset, on_skip=lambda k, m: skipped.append((k, m))))
    assert [k for k, _ in skipped] == tiny_keys[:2] and len(tasks) == 1
    assert list(iter_tasks(tiny_dataset, limit=0)) == []
    assert len(list(iter_tasks(tiny_dataset, keys=[tiny_keys[2]], predictions=False))) == 1


def test_script_errors(tmp_path):
    run = run_make_tasks("--data-root", str(tmp_path / "nope"), "--out", str(tmp_path / "t.json"))
    assert run.returncode == 2 and run.stderr.startswith("error:")
    assert len(run.stderr.strip().splitlines()) == 1
    (tmp_path / "empty/annotations").mkdir(parents=True)
    run = run_make_tasks("--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "t.json"))
    assert run.returncode == 1 and "no objects" in run.stderr
    assert not (tmp_path / "t.json").exists()
    help_text = run_make_tasks("--help").stdout
    assert "--no-pictures" in help_text and "examples:" in help_text
