"""scripts/setup_project.py and ls_admin against a REAL Label Studio (the session's one) and a
real backend process: project, interactive ML backend, webhook, tasks with predictions,
idempotent re-runs, filters, one-line errors, personal access tokens."""
from __future__ import annotations

import contextlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from ls_admin.connection import AdminError, connect
from ls_admin.project import (ML_TITLE, SYNC_ACTIONS, SetupOptions, label_config, setup_project,
                              webhook_url)
from ls_admin.backend_process import BackendProcess, free_port
from pose6d.dataset import Dataset, ObjectKey
from pose6d.demo.dataset import make_demo_dataset
from pose6d import labeling as L
from pose6d.tasks import object_task

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[1]
OBJECTS = 12


@pytest.fixture(scope="module")
def data_root(label_studio_root: Path, tmp_path_factory) -> Path:
    """A demo dataset below Label Studio's document root."""
    root = tmp_path_factory.mktemp("admin_setup") / "data"
    make_demo_dataset(root, objects=OBJECTS, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def backend(data_root: Path, tmp_path_factory):
    log = tmp_path_factory.mktemp("admin_backend") / "backend.log"
    with BackendProcess(data_root, log_path=log) as proc:
        yield proc


def run_setup(url: str, key: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LABEL_STUDIO_URL=url, LABEL_STUDIO_API_KEY=key)
    return subprocess.run([sys.executable, str(REPO / "scripts/setup_project.py"), "--quiet", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def project_id_of(stdout: str) -> int:
    return int(re.search(r"^project (\d+):", stdout, re.M).group(1))


def tasks_of(client, project_id: int) -> list:
    return list(client.tasks.list(project=project_id, fields="all", page_size=100))


def options(data_root: Path, backend, title: str, **kwargs) -> SetupOptions:
    return SetupOptions(data_root=data_root, backend_url=backend.url, title=title, progress=False,
                        **kwargs)


def test_setup_creates_project_and_rerun_adds_nothing(label_studio, data_root, backend):
    args = ("--data-root", str(data_root), "--backend-url", backend.url, "--title", "setup A")
    first = run_setup(label_studio.url, label_studio.token, *args)
    assert first.returncode == 0, first.stderr
    assert f"imported {OBJECTS} in" in first.stdout and "already present 0" in first.stdout
    project_id = project_id_of(first.stdout)
    client = label_studio.client()

    tasks = tasks_of(client, project_id)
    assert sorted(t.data["object_key"] for t in tasks) == [str(k) for k in Dataset(data_root).objects()]
    # No imported prediction: Label Studio asks the backend (pose + overlay) when a task opens,
    # from the stream or the Data Manager alike; each CAD option shows its picture.
    assert all(not t.predictions for t in tasks)
    for task in tasks:
        prefix = task.data[L.DATA_IMAGE].split("images/")[0]  # the data root, as Label Studio serves it
        for option in task.data[L.DATA_CAD_OPTIONS]:
            src = re.search(r'<img src="([^"]+)"', option["html"]).group(1)
            assert src.startswith(prefix) and (data_root / unquote(src[len(prefix):])).is_file()
    assert client.projects.get(id=project_id).model_version == ML_TITLE
    (ml,) = client.ml.list(project=project_id)
    assert ml.url == backend.url and ml.is_interactive
    hooks = [h for h in client.webhooks.list(project=str(project_id)) if h.project == project_id]
    # only the actions the sync handles: TASKS_CREATED would post every imported batch
    assert [(h.url, h.send_for_all_actions, {getattr(a, "value", a) for a in h.actions})
            for h in hooks] == [(webhook_url(backend.url), False, set(SYNC_ACTIONS))]
    # the photos are served by Label Studio as local files
    image = tasks[0].data["image"]
    assert image.startswith("/data/local-files/?d=") and image.endswith(".JPEG")

    second = run_setup(label_studio.url, label_studio.token, *args)
    assert second.returncode == 0, second.stderr
    assert project_id_of(second.stdout) == project_id
    assert f"imported 0, already present {OBJECTS}, skipped 0" in second.stdout
    assert f"sync webhook {webhook_url(backend.url)}: present" in second.stdout
    assert len(tasks_of(client, project_id)) == OBJECTS
    assert len(client.ml.list(project=project_id)) == 1
    assert len([h for h in client.webhooks.list(project=str(project_id))
                if h.project == project_id]) == 1

    # a deleted sync webhook is made again
    client.webhooks.delete(id=hooks[0].id)
    report = setup_project(client, options(data_root, backend, "setup A"), label_studio.url)
    assert f"sync webhook {webhook_url(backend.url)}: created" in report.steps
    assert report.imported == 0


def test_filters_categories_keys_limit(label_studio, data_root, backend):
    client = label_studio.client()
    keys = Dataset(data_root).objects()
    cars = [k for k in keys if k.category == "car"]
    report = setup_project(client, options(data_root, backend, "filter car", categories=["car"]),
                           label_studio.url)
    assert report.imported == len(cars) > 0
    assert {t.data["category"] for t in tasks_of(client, report.project_id)} == {"car"}

    wanted = [keys[0], keys[-1], ObjectKey("car", "nothing_here", 0)]
    report = setup_project(client, options(data_root, backend, "filter keys", keys=wanted),
                           label_studio.url)
    assert report.imported == 2
    assert [key for key, _ in report.skipped] == ["car/nothing_here_0"]
    assert {t.data["object_key"] for t in tasks_of(client, report.project_id)} == \
        {str(keys[0]), str(keys[-1])}

    bare = setup_project(client, options(data_root, backend, "filter bare", limit=1,
                                         predictions=False), label_studio.url)
    (task,) = tasks_of(client, bare.project_id)
    assert task.predictions == [] and bare.imported == 1
    # without imported predictions Label Studio asks the backend (its title is the model version)
    assert client.projects.get(id=bare.project_id).model_version == ML_TITLE

    runs = [setup_project(client, options(data_root, backend, "filter limit", limit=n),
                          label_studio.url) for n in (3, 3, 5)]
    assert [(r.imported, r.present) for r in runs] == [(3, 0), (0, 3), (2, 3)]
    assert sorted(t.data["object_key"] for t in tasks_of(client, runs[0].project_id)) == \
        [str(k) for k in keys[:5]]


@pytest.mark.parametrize("case", ["wrong url", "wrong key", "missing dataset", "no url"])
def test_errors_are_one_line(label_studio, data_root, backend, tmp_path, case):
    url, key, root = label_studio.url, label_studio.token, str(data_root)
    expected = {"wrong url": "cannot reach Label Studio at http://127.0.0.1:",
                "wrong key": "Label Studio refused the API key",
                "missing dataset": "is not a dataset root",
                "no url": "no Label Studio URL: pass --url or set LABEL_STUDIO_URL"}[case]
    if case == "wrong url":
        url = f"http://127.0.0.1:{free_port()}"
    elif case == "wrong key":
        key = "0123456789abcdef0123456789abcdef01234567"
    elif case == "missing dataset":
        root = str(tmp_path / "no_such_dataset")
    elif case == "no url":
        url = ""
    run = run_setup(url, key, "--data-root", root, "--backend-url", backend.url,
                    "--title", "errors", "--retries", "1")
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], run.stderr


def test_personal_access_token_works_like_legacy_token(label_studio, data_root, backend):
    legacy = label_studio.client()
    try:
        pat = legacy.tokens.create().token  # a JWT refresh token; the SDK refreshes access tokens
    except Exception as exc:  # 409: one per user, and another test of this session made it
        pytest.fail(f"cannot create a personal access token: {exc}")
    assert pat.count(".") == 2 and pat != label_studio.token
    client = connect(label_studio.url, pat)
    assert client.users.whoami().email == label_studio.username

    run = run_setup(label_studio.url, pat, "--data-root", str(data_root), "--backend-url",
                    backend.url, "--title", "setup PAT", "--limit", "2")
    assert run.returncode == 0, run.stderr
    project_id = project_id_of(run.stdout)
    assert len(tasks_of(legacy, project_id)) == 2

    with pytest.raises(AdminError, match="refused the API key"):  # a tampered signature
        connect(label_studio.url, pat[:-4] + ("AAAA" if not pat.endswith("AAAA") else "BBBB"))


@contextlib.contextmanager
def fake_server(status: int, body: bytes, content_type: str = "text/html"):
    """A loopback HTTP server answering every GET with ``status`` and ``body``; yields (url, hits)."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_connect_retries_5xx_with_backoff_then_fails_in_one_line():
    with fake_server(503, b'{"detail": "down for maintenance"}', "application/json") as (url, hits):
        with pytest.raises(AdminError) as err:
            connect(url, "some-key", retries=2)
    assert len(hits) == 3  # first try + 2 retries (the SDK's own retries are off for the check)
    assert str(err.value).startswith(f"cannot reach Label Studio at {url} (HTTP 503")
    assert "\n" not in str(err.value)


def test_connect_to_something_else_says_so():
    with fake_server(200, b"<html>not Label Studio</html>") as (url, _):
        with pytest.raises(AdminError, match="not Label Studio's API"):
            connect(url, "some-key", retries=0)
    with pytest.raises(AdminError, match="no Label Studio API key: pass --api-key or set"):
        connect("http://127.0.0.1:1", "", retries=0)


def test_backend_with_basic_auth(label_studio, data_root, tmp_path):
    """The backend behind basic auth: setup passes the credentials to the ML backend and to the
    sync webhook (Label Studio's own webhook has none), so a submission still syncs."""
    from pose6d import labeling as L
    from pose6d.dataset import SYNCED
    from pose6d.tasks import task_object_key

    auth = {"POSE6D_BASIC_AUTH_USER": "ls", "POSE6D_BASIC_AUTH_PASSWORD": "pa55-word"}
    with BackendProcess(data_root, log_path=tmp_path / "backend.log", env=auth) as secured:
        env_args = ("--data-root", str(data_root), "--backend-url", secured.url,
                    "--title", "setup auth", "--limit", "2")
        refused = run_setup(label_studio.url, label_studio.token, *env_args,
                            "--backend-password", "wrong", "--backend-user", "ls")
        assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
        done = run_setup(label_studio.url, label_studio.token, *env_args,
                         "--backend-user", "ls", "--backend-password", "pa55-word")
        assert done.returncode == 0, done.stderr
        client = label_studio.client()
        project_id = project_id_of(done.stdout)
        task = tasks_of(client, project_id)[0]
        key = task_object_key(task.data)
        result = [{"from_name": n, "to_name": L.IMAGE, "type": "number", "value": {"number": v}}
                  for n, v in dict(azimuth=10, elevation=5, theta=0, distance=9, px=50, py=60).items()]
        result += [L.choice_result(L.QUALITY, "good"), L.choice_result(L.DENSE, "no"),
                   L.choice_result(L.CAD, str(task.data["cad_index"]))]
        client.annotations.create(id=task.id, result=result)
        path = Dataset(data_root).record_path(key, SYNCED)
        for _ in range(100):
            if path.exists():
                break
            time.sleep(0.2)
        assert path.exists(), (tmp_path / "backend.log").read_text()[-2000:]
        assert Dataset(data_root).read(key, SYNCED).pose.distance == 9


def test_a_project_made_before_the_overlay_moved_keeps_annotations_loses_old_predictions(
        label_studio, data_root, backend):
    """A project whose config still has the overlay as BrushLabels (before it became a Taxonomy
    that Label Studio never stores): setup updates the config and deletes the predictions, whose
    brush overlay the new config cannot draw; the annotations stay."""
    new = label_config()
    old = re.sub(r'<Taxonomy name="overlay".*?</Taxonomy>',
                 '<BrushLabels name="overlay" toName="image"><Label value="Mesh"/>'
                 '<Label value="Edges"/></BrushLabels>', new, flags=re.S)
    assert old != new and "BrushLabels" in old
    client = label_studio.client()
    project = client.projects.create(title="before the overlay moved", label_config=old)
    key = Dataset(data_root).objects()[0]
    task = object_task(Dataset(data_root), key)
    brush = {"id": "edges", "from_name": L.OVERLAY, "to_name": L.IMAGE, "type": "brushlabels",
             "original_width": 640, "original_height": 480, "image_rotation": 0,
             "value": {"format": "rle", "rle": [0, 0, 0], "brushlabels": ["Edges"]}}
    quality = {"from_name": L.QUALITY, "to_name": L.IMAGE, "type": "choices",
               "value": {"choices": [L.QUALITY_VALUES[0]]}}
    client.projects.import_tasks(id=project.id, request=[dict(
        task, annotations=[{"result": [brush, quality]}],
        predictions=[{"result": [brush], "model_version": "old"}])])
    (before,) = tasks_of(client, project.id)
    assert len(before.predictions) == 1 and len(before.annotations) == 1

    report = setup_project(client, options(data_root, backend, "before the overlay moved",
                                           keys=[key]), label_studio.url)
    assert any("labeling config updated; its predictions were deleted" in s for s in report.steps)
    (after,) = tasks_of(client, project.id)
    assert after.predictions == [] and len(after.annotations) == 1
    assert client.projects.get(id=project.id).label_config.strip() == new.strip()
    # a second run finds the config as it is and deletes nothing
    again = setup_project(client, options(data_root, backend, "before the overlay moved",
                                          keys=[key]), label_studio.url)
    assert f"project 'before the overlay moved': found" in again.steps
