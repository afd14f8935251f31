"""scripts/demo.py against the session's REAL Label Studio (--label-studio-url, so the
suite starts one Label Studio only) with its own backend: dataset, project, tasks with
predictions; a second run reuses all of it. (Starting a Label Studio of its own is
LabelStudioServer's code path, tested with the session fixture.) Waiting, as a user runs it:
a backend killed (its gunicorn master, SIGKILL) is restarted on the same port and said so;
one that cannot come back ends the demo with exit code 1 and the reason; SIGTERM stops the
backend and says so, like Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text() if path.exists() else ""
        if text in found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {path.name} (exit code {proc.poll()}):\n"
                         + (path.read_text() if path.exists() else ""))


def _health(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
    except requests.RequestException:
        return False


def start_waiting_demo(server, folder: Path, port: int) -> tuple[subprocess.Popen, Path, Path]:
    """The demo as a user runs it (waiting), against the session's Label Studio; stdout and
    stderr go to files (read while it runs)."""
    folder.mkdir(parents=True)
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts/demo.py"), "--dir", str(folder / "demo"),
         "--objects", "3", "--backend-port", str(port), "--label-studio-url", server.url,
         "--api-key", server.token], stdout=out.open("w"), stderr=err.open("w"), text=True)
    _wait_for_text(out, "pose6d demo is ready", proc, 300)
    assert _health(port)
    return proc, out, err


def test_demo_restarts_a_dead_backend_and_stops_on_sigterm(label_studio, label_studio_root,
                                                          tmp_path):
    port = free_port()
    proc, out, err = start_waiting_demo(label_studio, tmp_path / "restart", port)
    try:
        (leader,) = _children(proc.pid)  # the backend (Label Studio is the session's)
        os.kill(leader, signal.SIGKILL)  # the gunicorn master, as in the issue
        text = _wait_for_text(err, "backend restarted on port", proc, 90)
        assert f"backend exited with code -{signal.SIGKILL}: restarting it on port {port}" in text
        assert _health(port)  # the project's backend URL answers again
        (new_leader,) = _children(proc.pid)
        assert new_leader != leader
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert "SIGTERM: stopping the backend" in text and "stopped the backend" in text, text
    assert not _health(port)
    assert not [pid for pid in _children(proc.pid)]


def test_demo_exits_with_the_reason_when_the_backend_cannot_come_back(label_studio,
                                                                      label_studio_root, tmp_path):
    port = free_port()
    folder = tmp_path / "gives_up"
    proc, out, err = start_waiting_demo(label_studio, folder, port)
    try:
        (leader,) = _children(proc.pid)
        (folder / "demo" / "dataset").rename(folder / "demo" / "moved")  # a restart must fail
        os.killpg(leader, signal.SIGKILL)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert code == 1, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: the backend exited with code -9 and could not be restarted"), \
        text
    assert not _health(port)
