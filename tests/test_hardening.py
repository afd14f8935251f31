"""Hardening: credentials, path traversal, size limits, restarts, file-system failures and
corrupt data. (The basic contract, malformed bodies and the plain corrupt-mesh batch are in
test_backend_contract.py; this file goes further.)"""
from __future__ import annotations

import base64
import errno
import io
import logging
import os
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import requests

import ls_payloads as ls
from backend_helpers import command_context, interactive_body, make_client, numbers_of, task_for
from conftest import REPO
from ls_admin.backend_process import BackendProcess
from pose6d import labeling
from pose6d.dataset import SYNCED

USER, PASSWORD, TOKEN = "ls-user", "pw-9f27c1-never-log-me", "tok-5d1e0b-never-log-me"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width`` x ``height``, with a tiny IDAT: a
    decompression bomb's header, without the bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


class Capture(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs():
    root, handler = logging.getLogger(), Capture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# --- basic auth ---


def test_basic_auth_refusals_and_constant_time_compare(tiny_dataset, monkeypatch):
    import ml_backend._wsgi as wsgi

    client = make_client(tiny_dataset, basic_auth_user=USER, basic_auth_password=PASSWORD)
    refused = [{}, basic(USER, "wrong"), basic("wrong", PASSWORD), basic(USER, PASSWORD + "x"),
               basic(USER, ""), {"Authorization": f"Bearer {PASSWORD}"},
               {"Authorization": "Basic !!!not-base64"}, basic(USER.upper(), PASSWORD)]
    for headers in refused:
        for path in ("/predict", "/setup", "/webhook", "/metrics"):
            res = client.open(path, method="GET" if path == "/metrics" else "POST", json={},
                              headers=headers)
            assert res.status_code == 401, (path, headers)
            assert res.headers["WWW-Authenticate"].startswith("Basic")
    assert client.post("/setup", json={}, headers=basic(USER, PASSWORD)).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/cad/car/1.png").status_code == 200
    calls = []
    real = wsgi.hmac.compare_digest
    monkeypatch.setattr(wsgi.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    client.post("/setup", json={}, headers=basic("wrong", "wrong"))
    assert len(calls) == 2  # user and password both compared: no early exit on a wrong user


def test_secrets_never_reach_the_logs(tiny_dataset, captured_logs):
    client = make_client(tiny_dataset, basic_auth_user=USER, basic_auth_password=PASSWORD)
    schema = (REPO / "labeling_config/pose6d.xml").read_text()
    good, bad = basic(USER, PASSWORD), basic(USER, PASSWORD[::-1])
    setup = {"project": "1.1", "schema": schema, "hostname": "http://ls:8080", "access_token": TOKEN}
    assert client.post("/setup", json=setup, headers=good).status_code == 200
    assert client.post("/setup", json=dict(setup, schema="<View/>"), headers=good).status_code == 400
    assert client.post("/setup", json=dict(setup, schema=7), headers=good).status_code == 400
    assert client.post("/setup", json=setup, headers=bad).status_code == 401
    client.post("/predict", json={"tasks": [{"data": {"object_key": "x"}}], "access_token": TOKEN},
                headers=good)
    client.post("/webhook", json={"action": TOKEN[:3], "access_token": TOKEN}, headers=good)
    text = "\n".join(captured_logs.lines)
    assert captured_logs.lines, "nothing was logged: the capture is not working"
    for secret in (PASSWORD, TOKEN, good["Authorization"].split()[1], PASSWORD[::-1]):
        assert secret not in text


# --- path traversal ---

HOSTILE_KEYS = ["car/../../etc/passwd_0", "../x_0", "/etc/passwd_0", "../../outside/secret_0",
                "%2e%2e/%2e%2e/outside/secret_0", "car/%2e%2e%2f%2e%2e%2foutside%2fsecret_0",
                "car/..%2F..%2Foutside_0", "car/....//secret_0", "car\\..\\..\\outside\\secret_0",
                "car/secret\x00_0", "C:\\outside\\secret_0", "~/secret_0", "car/\uff0e\uff0e_0",
                "outside/secret_0", "../outside/secret_0", "car/.secret_0", ".._0"]


class OpenAudit:
    """Records every path the process opens or lists (sys.audit events) while active."""

    events: list[str] | None = None
    installed = False

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.events is not None and event in ("open", "os.listdir", "os.scandir") and args:
            if isinstance(args[0], (str, bytes, os.PathLike)):
                cls.events.append(os.fsdecode(args[0]))

    def __enter__(self) -> list[str]:
        if not OpenAudit.installed:  # audit hooks cannot be removed: install once, toggle
            sys.addaudithook(OpenAudit.hook)
            OpenAudit.installed = True
        OpenAudit.events = []
        return OpenAudit.events

    def __exit__(self, *exc) -> None:
        OpenAudit.events = None


@pytest.fixture
def walled_dataset(tiny_dataset):
    """The tiny dataset plus, beside its root, an ``outside`` folder with a complete object
    (photo, record, CAD) that a traversal would find."""
    from conftest import make_tiny_dataset

    outside = tiny_dataset.root.parent / "outside"
    make_tiny_dataset(outside)
    (outside / "secret.txt").write_text("sentinel")
    return tiny_dataset, outside


def assert_stayed_inside(opened: list[str], root: Path, outside: Path) -> None:
    tmp = root.parent
    for path in opened:
        resolved = Path(os.path.abspath(path))
        if tmp in resolved.parents:
            assert root in resolved.parents or resolved == root, f"opened {path} outside the root"
        assert outside not in resolved.parents and resolved != outside, f"opened {path}"


def test_hostile_object_keys_never_leave_the_data_root(walled_dataset, tiny_keys):
    dataset, outside = walled_dataset
    client = make_client(dataset)
    good = task_for(dataset, tiny_keys[0], 1)
    before = snapshot(dataset.root.parent)
    with OpenAudit() as opened:
        for i, key in enumerate(HOSTILE_KEYS):
            hostile = dict(good, id=100 + i, data=dict(good["data"], object_key=key,
                                                       image=f"/data/local-files/?d={key}"))
            res = client.post("/predict", json={"tasks": [hostile, good]})
            assert res.status_code == 200 and res.json["results"][0] == [] and res.json["results"][1]
            numbers = numbers_of(res.json["results"][1]["result"])
            res = client.post("/predict", json=interactive_body(hostile, command_context(numbers, 1, "a+")))
            assert res.status_code == 200 and labeling.COMMAND in str(res.json)
            assert numbers_of(res.json["results"][0]["result"]) == {}  # an error message only
            res = client.post("/webhook", json=ls.created(500 + i, 100 + i, key, updated=10))
            assert res.status_code in (400, 422), (key, res.json)
        for path in ("/cad/..%2F..%2Foutside%2FCAD%2Fcar/1.png", "/cad/%2e%2e/1.png", "/cad/../1.png",
                     "/cad/..%5Coutside/1.png", "/cad/.../1.png", "/cad/%00/1.png"):
            assert client.get(path).status_code == 404, path
    assert_stayed_inside(opened, dataset.root, outside)
    assert any(str(dataset.root) in p for p in opened)  # the audit did see the real reads
    assert snapshot(dataset.root.parent) - before <= {str(dataset.root / "annotations_new")}


def snapshot(folder: Path) -> set[str]:
    """Top-level-ish view of what exists: every file and folder path under ``folder`` outside
    annotations_new/ (which the sync store creates), plus that folder itself."""
    out = set()
    for path in folder.rglob("*"):
        text = str(path)
        out.add(text.split("/annotations_new", 1)[0] + "/annotations_new" if "/annotations_new" in text else text)
    return out


# --- size limits ---


def test_request_body_limits(tiny_dataset):
    client = make_client(tiny_dataset, max_request_mb=0.05)
    big = b'{"tasks": [], "pad": "' + b"x" * 100_000 + b'"}'
    for path in ("/predict", "/webhook", "/setup"):
        assert client.post(path, data=big, content_type="application/json").status_code == 413
    stream = io.BytesIO(big)  # no Content-Length: a streamed (chunked) body
    res = client.post("/predict", input_stream=stream, content_type="application/json",
                      headers={"Transfer-Encoding": "chunked"},  # as gunicorn presents it
                      environ_overrides={"wsgi.input_terminated": True})
    assert res.status_code == 413
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("size", [(100_000, 100_000), (12_000, 12_000), (60_000, 1_000)])
def test_oversized_image_header_fails_its_task_only(tiny_dataset, tiny_keys, size, captured_logs):
    """A forged header (10 Gpx, 144 Mpx just under PIL's hard limit, 60 Mpx in a wide strip) is a
    task error with a clear message; nothing large is allocated and the batch goes on."""
    key = tiny_keys[2]
    tiny_dataset.image_path(key).unlink()
    (tiny_dataset.root / "images" / key.category / f"{key.name}.png").write_bytes(png_header(*size))
    client = make_client(tiny_dataset)
    tasks = [task_for(tiny_dataset, tiny_keys[0], 1), {"id": 2, "data": {"object_key": str(key)}}]
    tracemalloc.start()
    try:
        res = client.post("/predict", json={"tasks": tasks})
        numbers = {"azimuth": 0, "elevation": 10, "theta": 0, "distance": 5, "px": 10, "py": 10}
        inter = client.post("/predict", json=interactive_body(tasks[1], command_context(numbers, 1, "a+")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.status_code == 200 and res.json["results"][0]["result"] and res.json["results"][1] == []
    message = inter.json["results"][0]["result"][0]["value"]["text"][0]
    assert inter.status_code == 200 and "cannot be rendered" in message
    assert "too large" in message or "decompression bomb" in message
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB allocated for a refused image"
    assert any("task 2 skipped" in line for line in captured_logs.lines)


# --- a real backend restarted mid-session; chunked bodies over HTTP ---


def test_backend_restart_mid_session(tiny_dataset, tiny_keys, tmp_path):
    log = tmp_path / "backend.log"
    env = {"POSE6D_BASIC_AUTH_USER": USER, "POSE6D_BASIC_AUTH_PASSWORD": PASSWORD,
           "POSE6D_LOG_LEVEL": "DEBUG"}
    backend = BackendProcess(tiny_dataset.root, log_path=log, env=env,
                             args=["--workers", "1", "--threads", "2", "--max-request-mb", "1"])
    http = requests.Session()
    http.auth = (USER, PASSWORD)
    task = task_for(tiny_dataset, tiny_keys[0], 7)

    def command(numbers: dict, text: str) -> dict:
        res = http.post(backend.url + "/predict", timeout=30,
                        json=interactive_body(task, command_context(numbers, 1, text)))
        assert res.status_code == 200, res.text
        return numbers_of(res.json()["results"][0]["result"])

    with backend:
        first = numbers_of(http.post(backend.url + "/predict", json={"tasks": [task]},
                                     timeout=30).json()["results"][0]["result"])
        turned = command(first, "a++")
        assert turned["azimuth"] == pytest.approx(first["azimuth"] + 30)
        http.post(backend.url + "/setup", json={"access_token": TOKEN, "schema": ""}, timeout=30)
        chunks = (b" " * 65536 for _ in range(40))  # 2.5 MB streamed without Content-Length
        assert http.post(backend.url + "/predict", data=chunks, timeout=30).status_code == 413
    backend.start()  # same port, fresh process: the session state is in the sync store
    try:
        moved = command(turned, "d+")  # the pose comes back from the Numbers in the context
        assert moved["azimuth"] == pytest.approx(turned["azimuth"])
        assert moved["distance"] == pytest.approx(turned["distance"] + 0.2)
        undone = command(moved, "u")  # undoes the step made since the restart...
        assert undone == turned
        assert command(undone, "u") == first  # ...and the one before it: the history outlived the process
        assert requests.post(backend.url + "/predict", json={"tasks": [task]},
                             timeout=30).status_code == 401
    finally:
        backend.stop()
    text = log.read_text(errors="replace")
    assert "Booting worker" in text or "Listening at" in text
    for secret in (PASSWORD, TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in text


# --- disk full / read-only dataset during sync ---


def fail_fsync(code: int):
    def fsync(fd):
        raise OSError(code, os.strerror(code))
    return fsync


def fail_mkstemp(code: int):
    def mkstemp(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return mkstemp


@pytest.mark.parametrize("failure", ["ENOSPC-fsync", "EROFS-mkstemp"])
def test_sync_survives_disk_full_and_read_only(tiny_dataset, tiny_keys, monkeypatch, failure):
    import pose6d.inout as inout

    client = make_client(tiny_dataset)
    model = client.application.extensions["pose6d_model"]
    key = str(tiny_keys[1])
    event = ls.created(31, 3, key, updated=10, result=ls.pose_result(azimuth=77.0, cad="3"))
    name, where = failure.split("-")
    code = getattr(errno, name)
    if where == "fsync":
        monkeypatch.setattr(inout.os, "fsync", fail_fsync(code))
    else:
        monkeypatch.setattr(inout, "_create_temp", fail_mkstemp(code))
    res = client.post("/webhook", json=event)
    assert res.status_code == 503 and res.json["status"] == "failed"
    assert os.strerror(code) in res.json["reason"]
    assert client.get("/health").status_code == 200
    assert client.post("/predict", json={"tasks": [task_for(tiny_dataset, tiny_keys[0])]}).status_code == 200
    synced = tiny_dataset.root / SYNCED
    assert tiny_dataset.read_optional(tiny_keys[1], SYNCED) is None
    assert not [p for p in synced.rglob("*") if p.is_file() and p.suffix == ".tmp"]  # no debris
    assert model.sync.stats()["events"] == {"failed": 1}
    monkeypatch.undo()
    assert model.sync.retry_failed() == 1  # a later retry (or the next delivery) applies it
    record = tiny_dataset.read(tiny_keys[1], SYNCED)
    assert record.pose.azimuth == pytest.approx(np.radians(77.0)) and record.cad_index == 3
    assert client.post("/webhook", json=event).json["status"] == "duplicate"
    assert "failed" not in model.sync.stats()["events"]


# --- corrupt data: that task fails, the others go on ---


CORRUPT_MESHES = {
    "nan vertex": "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n",
    "face out of range": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
    "binary": "\x00\x01\x02OFF",
    "empty": "",
}


@pytest.mark.parametrize("corruption", sorted(CORRUPT_MESHES))
def test_corrupt_mesh_in_interactive_calls_and_thumbnails(tiny_dataset, tiny_keys, corruption):
    (tiny_dataset.root / "CAD/punching_bag/01.off").write_text(CORRUPT_MESHES[corruption])
    client = make_client(tiny_dataset)
    bag, car = task_for(tiny_dataset, tiny_keys[2], 1), task_for(tiny_dataset, tiny_keys[0], 2)
    numbers = {k: round(v, 2) for k, v in tiny_dataset.read(tiny_keys[2]).pose.as_degrees().items()}
    res = client.post("/predict", json=interactive_body(bag, command_context(numbers, 1, "a+")))
    assert res.status_code == 200
    assert res.json["results"][0]["result"][0]["value"]["text"][0].startswith("\u26a0")
    assert client.get("/cad/punching_bag/1.png").status_code == 404
    res = client.post("/predict", json={"tasks": [bag, car]})
    assert res.json["results"][0] == [] and res.json["results"][1]["result"]
    assert client.post("/webhook", json=ls.created(1, 2, str(tiny_keys[0]), 10)).status_code == 201


@pytest.mark.parametrize("corruption", ["garbage image", "truncated record", "record of junk"])
def test_corrupt_image_or_record_fails_its_task_only(tiny_dataset, tiny_keys, corruption):
    key = tiny_keys[2]
    if corruption == "garbage image":
        tiny_dataset.image_path(key).write_bytes(b"\xff\xd8\xff not really a jpeg" * 10)
    elif corruption == "truncated record":
        path = tiny_dataset.record_path(key)
        path.write_bytes(path.read_bytes()[:100])
    else:
        tiny_dataset.record_path(key).write_bytes(os.urandom(4096))
    client = make_client(tiny_dataset)
    tasks = [task_for(tiny_dataset, tiny_keys[0], 1), {"id": 3, "data": {"object_key": str(key)}}]
    res = client.post("/predict", json={"tasks": tasks})
    assert res.status_code == 200 and res.json["results"][0]["result"] and res.json["results"][1] == []
    numbers = {"azimuth": 0, "elevation": 10, "theta": 0, "distance": 5, "px": 10, "py": 10}
    res = client.post("/predict", json=interactive_body(tasks[1], command_context(numbers, 1, "a+")))
    assert res.status_code == 200 and "cannot be rendered" in str(res.json)
    res = client.post("/webhook", json=ls.created(2, 3, str(key), updated=10))
    if corruption == "garbage image":  # the sync needs the record, not the photo
        assert res.status_code == 201
    else:
        assert res.status_code == 422 and "no initial record" in res.json["error"]
    assert client.post("/webhook", json=ls.created(3, 1, str(tiny_keys[0]), 10)).status_code == 201
