"""docker/Dockerfile built and run for real, with podman (tests/container.py: how and why).

The image is built unchanged from the repository root; the container runs as the Dockerfile's
non-root user, as docker/docker-compose.yml runs it (read-only root filesystem, a tmpfs /tmp,
basic auth, the PostgreSQL sync store), on a demo dataset mounted read-only except
annotations_new/. Checked: the image holds what the service imports and not the rest, /health,
/setup, /predict, a webhook synced into PostgreSQL and written to annotations_new/ by the
container's user, the image's HEALTHCHECK command, and a restart.

Podman missing FAILS (scripts/setup_env.sh installs it); the tests skip only where podman cannot
run a container at all. The first run builds the stand-in base image and every layer (about 3-5
minutes); later runs reuse them from $POSE6D_HOME/podman (seconds, unless the Dockerfile or the
image's requirements changed). ``-s`` shows the build, the /health answer and the record's owner.
"""
from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from checks import wait_for
from container import IMAGE, REPORT, ULIMITS, Podman, PodmanUnusable, dockerfile_base, dockerfile_user
from ls_admin.backend_process import free_port
from pose6d import labeling
from pose6d.dataset import SYNCED, Dataset, read_record

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.container
CONTAINER_PREFIX = "pose6d-test-"  # + the test process's pid
MAX_IMAGE_MB = 900  # OpenCV (auto-fit) included; 1.65 GB with every declared dependency
UNUSED = ("pandas", "IPython", "ipywidgets", "nbformat", "sklearn", "matplotlib")
IMPORTS = ("import ml_backend._wsgi, ml_backend.__main__, label_sync.engine, gunicorn.app.base; "
           "import open3d.t.geometry; from label_studio_sdk.label_interface import LabelInterface; "
           "import pose6d.fitting.fit, pose6d.fitting.turns, pose6d.fitting.cad, cv2; "
           "from ml_backend.model import autofit_installed; assert autofit_installed()")  # prefill


def say(line: str) -> None:
    """Printed (pytest -s) and repeated in the session's summary (tests/conftest.py)."""
    print(f"\n[container] {line}")
    REPORT.append(line)


@pytest.fixture(scope="module")
def podman() -> Podman:
    if os.geteuid() != 0:  # CI runs as root; rootless podman would need subuid mappings
        pytest.skip("the container tests run as root (debootstrap of the base image, chown of "
                    "annotations_new/ to the image's uid, podman's rootful storage)")
    try:
        podman = Podman()
        podman.check_usable()
    except FileNotFoundError as exc:  # not installed: setup's job, never a reason to skip
        pytest.fail(str(exc), pytrace=False)
    except PodmanUnusable as exc:
        pytest.skip(f"podman cannot run containers here: {exc}")
    return podman


@pytest.fixture(scope="module")
def image(podman: Podman) -> dict:
    """docker/Dockerfile built (layers cached in $POSE6D_HOME/podman); its inspect data."""
    try:
        say(podman.ensure_standin())
    except PodmanUnusable as exc:
        pytest.skip(str(exc))
    seconds = podman.build(IMAGE)
    info = podman.inspect_image(IMAGE)
    say(f"{IMAGE} built from docker/Dockerfile (FROM {dockerfile_base()}, "
        f"podman build --format docker) in {seconds:.0f} s: {info['Size'] / 1e6:.0f} MB")
    return info


@pytest.fixture(scope="module")
def image_user(podman: Podman, image: dict) -> tuple[int, int]:
    """(uid, gid) of the Dockerfile's USER inside the image."""
    out = podman.text("run", "--rm", *ULIMITS, "--network", "host", IMAGE, "sh", "-c", "id -u; id -g")
    uid, gid = map(int, out.split())
    assert uid != 0, "the image runs as root"
    return uid, gid


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory, image_user) -> Path:
    """make_demo_dataset's output (8 objects) with an annotations_new/ owned by the image's
    user, as docker/README.md says to prepare it. Made under umask 022, as a user's shell."""
    root = tmp_path_factory.mktemp("container") / "demo"
    subprocess.run([sys.executable, "scripts/make_demo_dataset.py", "--out", str(root),
                    "--objects", "8", "--quiet"], cwd=REPO, check=True, umask=0o022,
                   stdout=subprocess.DEVNULL)
    (root / SYNCED).mkdir()
    os.chown(root / SYNCED, *image_user)
    return root


class Backend:
    def __init__(self, podman: Podman, name: str, port: int, data: Path, auth: tuple[str, str],
                 store_url: str):
        self.podman, self.name, self.data, self.auth, self.store_url = podman, name, data, auth, store_url
        self.url = f"http://127.0.0.1:{port}"
        self.dataset = Dataset(data)

    def wait_healthy(self, timeout: float = 180) -> dict:
        def health():
            state = self.podman.text("inspect", "--format", "{{.State.Status}}", self.name)
            if state not in ("running", "created", "configured"):
                raise AssertionError(f"container {state}:\n{self.logs()}")
            try:
                res = requests.get(self.url + "/health", timeout=2)
                return res.json() if res.ok else None
            except requests.RequestException:
                return None
        try:
            return wait_for(health, timeout, "the container's /health", interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        proc = self.podman("logs", "--tail", "60", self.name, check=False)
        return (proc.stdout + proc.stderr).decode(errors="replace")

    def post(self, route: str, body: dict, **kwargs) -> requests.Response:
        return requests.post(self.url + route, json=body, auth=kwargs.pop("auth", self.auth),
                             timeout=120, **kwargs)


@pytest.fixture(scope="module")
def backend(podman: Podman, image: dict, demo_data: Path, postgres_server):
    """The image running as docker-compose.yml runs it, on loopback (--network host)."""
    store_url = postgres_server.create_database("pose6d_container")
    port, name = free_port(), f"{CONTAINER_PREFIX}{os.getpid()}"
    auth = ("labelstudio", secrets.token_hex(12))
    podman.remove_orphans(CONTAINER_PREFIX)
    podman.remove_container(name)
    podman("run", "-d", "--name", name, *ULIMITS, "--network", "host",
           "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",  # compose: read_only, tmpfs
           "-v", f"{demo_data}:/data:ro", "-v", f"{demo_data / SYNCED}:/data/{SYNCED}:rw",
           "-e", "POSE6D_HOST=127.0.0.1", "-e", f"POSE6D_PORT={port}",
           "-e", f"POSE6D_BASIC_AUTH_USER={auth[0]}", "-e", f"POSE6D_BASIC_AUTH_PASSWORD={auth[1]}",
           "-e", f"POSE6D_SYNC_STORE={store_url}", IMAGE)
    server = Backend(podman, name, port, demo_data, auth, store_url)
    try:
        health = server.wait_healthy()
        say(f"{name} ({IMAGE}, user {dockerfile_user()}) /health: {health}")
        yield server
    finally:
        podman.remove_container(name)


def test_image_holds_what_the_service_imports_and_not_the_rest(podman, image):
    out = podman.text("run", "--rm", *ULIMITS, "--network", "host", IMAGE, "python", "-c",
                      f"{IMPORTS}; import importlib.util as u; "
                      f"print([m for m in {UNUSED!r} if u.find_spec(m)])")
    assert out.splitlines()[-1] == "[]", f"unused packages in the image: {out}"
    size_mb = image["Size"] / 1e6
    say(f"image size {size_mb:.0f} MB (limit {MAX_IMAGE_MB} MB)")
    assert size_mb < MAX_IMAGE_MB, f"the image is {size_mb:.0f} MB (limit {MAX_IMAGE_MB} MB)"
    assert image["Config"]["User"] == dockerfile_user()
    assert "/health" in " ".join(image["Healthcheck"]["Test"])  # kept: --format docker


def demo_tasks(dataset: Dataset) -> list[dict]:
    from backend_helpers import task_for

    return [task_for(dataset, key, i + 1) for i, key in enumerate(dataset.objects())]


def test_health_setup_and_predict(backend):
    schema = (REPO / "labeling_config/pose6d.xml").read_text()
    res = backend.post("/setup", {"project": "1.1", "schema": schema})
    assert res.status_code == 200 and res.json()["model_version"], res.text
    no_pose = "<View><Image name='image' value='$image'/></View>"
    res = backend.post("/setup", {"project": "1.1", "schema": no_pose})
    assert res.status_code == 400 and "azimuth" in res.json()["error"]
    tasks = demo_tasks(backend.dataset)
    assert len(tasks) == 8
    assert backend.post("/predict", {"tasks": tasks[:1]}, auth=None).status_code == 401
    res = backend.post("/predict", {"tasks": tasks, "project": "1.1", "params": {"context": None}})
    assert res.status_code == 200, res.text
    results = res.json()["results"]
    assert len(results) == len(tasks) and all(r["result"] for r in results), results
    for pred in results:
        regions = {item["id"]: item for item in pred["result"] if item["from_name"] == labeling.OVERLAY}
        assert regions[labeling.MESH_REGION_ID]["value"]["rle"], "no overlay mask"
    # live refinement: a command, its state kept in the PostgreSQL store
    from backend_helpers import command_context, interactive_body, numbers_of

    shown = numbers_of(results[0]["result"])
    cad = next(r for r in results[0]["result"] if r["from_name"] == labeling.CAD)
    cad = int(cad["value"]["choices"][0])
    res = backend.post("/predict", interactive_body(tasks[0], command_context(shown, cad, "d++")))
    assert res.status_code == 200, res.text
    farther = numbers_of(res.json()["results"][0]["result"])
    assert farther["distance"] == pytest.approx(shown["distance"] + 1)
    # auto-fit runs in the image (OpenCV is in it): fit and fitaz answer with a fit note
    for command in ("fit", "fitaz"):
        res = backend.post("/predict", interactive_body(tasks[0], command_context(farther, cad,
                                                                                  command)))
        assert res.status_code == 200 and "not installed" not in res.text, res.text
        assert "fit: " in res.text, res.text
        say(f"{command} in the container: answered with a fit note")


def synced_event(backend, annotation_id: int, index: int) -> tuple[dict, Path]:
    import ls_payloads as ls

    key = backend.dataset.objects()[index]
    body = ls.created(annotation_id, index + 1, str(key), updated=annotation_id,
                      result=ls.pose_result(azimuth=40.0 + index))
    return body, backend.dataset.record_path(key, SYNCED)


def store_versions(store_url: str, object_key: str) -> int:
    import psycopg2

    conn = psycopg2.connect(store_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pose6d_sync_version WHERE object_key = %s", (object_key,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_webhook_syncs_into_postgres_and_the_record_is_the_image_users(backend, image_user):
    body, path = synced_event(backend, 101, 0)
    res = backend.post("/webhook", body)
    assert res.status_code == 201 and res.json()["status"] == "applied", res.text
    assert store_versions(backend.store_url, body["task"]["data"]["object_key"]) == 1
    assert not (backend.data / SYNCED / ".sync.sqlite3").exists()  # the store is PostgreSQL
    info = path.stat()
    say(f"synced record {path.relative_to(backend.data)}: owner uid {info.st_uid} "
        f"gid {info.st_gid} (the image's user {dockerfile_user()}: {image_user[0]}), "
        f"mode {stat.S_IMODE(info.st_mode):o}")
    assert (info.st_uid, info.st_gid) == image_user
    assert stat.S_IMODE(info.st_mode) == 0o644  # the container's umask 022, readable by all
    record = read_record(path)
    assert record.pose.as_degrees()["azimuth"] == pytest.approx(40.0)


def test_image_healthcheck_command(podman, backend):
    proc = podman("healthcheck", "run", backend.name, check=False, timeout=60)
    out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    say(f"podman healthcheck run: exit {proc.returncode} {out!r}")
    assert proc.returncode == 0, out


def test_restart_keeps_records_and_sync_state(podman, backend):
    body, path = synced_event(backend, 102, 1)
    assert backend.post("/webhook", body).status_code == 201
    podman("stop", "-t", "20", backend.name, timeout=120)
    podman("start", backend.name, timeout=120)
    health = backend.wait_healthy()
    say(f"after stop/start, /health: {health}")
    assert path.is_file() and read_record(path).pose.as_degrees()["azimuth"] == pytest.approx(41.0)
    res = backend.post("/webhook", body)  # the store (PostgreSQL) remembers it across the restart
    assert res.status_code == 201 and res.json()["status"] == "duplicate", res.text
    res = backend.post("/predict", {"tasks": demo_tasks(backend.dataset)[:2]})
    assert res.status_code == 200 and all(r["result"] for r in res.json()["results"])


def test_debian_mirror_comes_from_the_machines_apt_sources(tmp_path):
    from container import debian_mirror

    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    assert debian_mirror("bookworm", (apt,)) is None  # debootstrap's default then
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\n"
        "# a comment\nTypes: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert debian_mirror("bookworm", (apt,)) == "http://mirror.example/debian"
    (apt / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n")
    assert debian_mirror("bookworm", (apt,)) == "http://list.example/debian"
    assert debian_mirror("trixie", (apt,)) is None
