"""scripts/demo.py --no-wait against the session's REAL Label Studio (--label-studio-url, so the
suite starts one Label Studio only) with its own backend: dataset, project, tasks with
predictions; a second run reuses all of it. (Starting a Label Studio of its own is
LabelStudioServer's code path, tested with the session fixture.)"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ls_admin.backend_process import free_port

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[1]
OBJECTS = 5


def run_demo(server, folder: Path) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts/demo.py"), "--no-wait", "--dir", str(folder),
         "--objects", str(OBJECTS), "--backend-port", str(free_port()),
         "--label-studio-url", server.url, "--api-key", server.token],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run


def test_demo_sets_up_and_reruns(label_studio, label_studio_root, tmp_path):
    folder = tmp_path / "demo_data"
    first = run_demo(label_studio, folder)
    assert "pose6d demo is ready" in first.stdout
    assert f"imported {OBJECTS} in" in first.stdout
    for n in range(1, 5):  # progress: every step announced
        assert f"[{n}/4]" in first.stderr
    project_id = int(re.search(r"^project (\d+):", first.stdout, re.M).group(1))
    assert f"{label_studio.url}/projects/{project_id}/data" in first.stdout

    client = label_studio.client()
    project = client.projects.get(id=project_id)
    assert project.title == "pose6d demo"
    tasks = list(client.tasks.list(project=project_id, fields="all"))
    assert len(tasks) == OBJECTS
    assert all(not t.predictions for t in tasks)  # the backend predicts when a task opens
    assert [m.is_interactive for m in client.ml.list(project=project_id)] == [True]

    second = run_demo(label_studio, folder)
    assert "reusing" in second.stderr
    assert int(re.search(r"^project (\d+):", second.stdout, re.M).group(1)) == project_id
    assert f"imported 0, already present {OBJECTS}" in second.stdout
    # the backend of the second run has another port: it is connected beside the first one
    assert len(list(client.tasks.list(project=project_id))) == OBJECTS
