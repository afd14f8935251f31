"""pose6d-qualify against a REAL Label Studio (the session's one) and a real backend process:
the qualification project from a demo dataset's ground truth, maximum_annotations as Label
Studio returns it, two annotators answering as themselves (their own API tokens), scoring
checked against errors computed here with an independent formula, idempotent re-runs, an
annotator who fails then passes, and test answers never synced as dataset records."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from label_sync.quality_store import QUALIFICATION, QualityStore, QualityTx
from label_sync.store import default_store_url
from ls_admin.backend_process import BackendProcess
from ls_admin.qualify import score_qualification
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, SYNCED, Dataset, ObjectKey
from pose6d.demo.dataset import make_demo_dataset
from pose6d import labeling as L
from pose6d.labels import quality_value, dense_value
import ls_payloads as P
from label_studio_server import create_user

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[1]
OBJECTS = 12
TITLE = "qualification T"


# --- An independent oracle: the rotation of docs/camera.md, and the chordal form of the
# geodesic angle (||R1 - R2||_F = 2 sqrt(2) sin(angle / 2)), not the code's trace formula. ---

def _rx(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _rz(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def rotation_deg(a, e, t) -> np.ndarray:
    """Rip(theta) Rx(e - pi/2) Rz(-a), angles in degrees."""
    a, e, t = np.radians([a, e, t])
    rip = np.array([[np.cos(t), np.sin(t), 0], [-np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return rip @ _rx(e - np.pi / 2) @ _rz(-a)


def angle_between(r1, r2) -> float:
    chord = np.linalg.norm(r1 - r2) / (2 * math.sqrt(2))
    return math.degrees(2 * math.asin(min(1.0, chord)))


# --- Fixtures and helpers. ---


@pytest.fixture(scope="module")
def data_root(label_studio_root: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qualify") / "data"
    make_demo_dataset(root, objects=OBJECTS, seed=11, progress=False)
    return root


@pytest.fixture(scope="module")
def backend(data_root: Path, tmp_path_factory):
    log = tmp_path_factory.mktemp("qualify_backend") / "backend.log"
    with BackendProcess(data_root, log_path=log) as proc:
        yield proc


CREATE = ("create", "--title", TITLE, "--annotators", "50")


@pytest.fixture(scope="module")
def created(label_studio, data_root, backend) -> tuple[int, str]:
    """The qualification project made by pose6d-qualify create: (project id, its output)."""
    first = run_qualify(label_studio, *CREATE, "--data-root", str(data_root), "--backend-url",
                        backend.url)
    assert first.returncode == 0, first.stderr
    return project_id_of(first.stdout), first.stdout


def run_qualify(server, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY=server.token)
    return subprocess.run([sys.executable, str(REPO / "scripts/qualify.py"), *args, "--quiet"],
                          capture_output=True, text=True, timeout=300, env=env)


def user_token(server, email: str) -> str:
    """The user's legacy API token, read (made if missing) with Label Studio's own Django."""
    from ls_admin.server import find_binary

    python = Path(find_binary()).parent / "python"
    code = ("import os, sys, label_studio; sys.path.insert(0, os.path.dirname(label_studio.__file__)); "
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'core.settings.label_studio'; "
            "import django; django.setup(); from users.models import User; "
            "from rest_framework.authtoken.models import Token; "
            f"print(Token.objects.get_or_create(user=User.objects.get(email={email!r}))[0].key)")
    run = subprocess.run([str(python), "-c", code], env=dict(os.environ, **server.env()),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    return run.stdout.strip().splitlines()[-1]


def annotator(server, email: str):
    from label_studio_sdk import LabelStudio

    create_user(server, email, "pw-" + email.split("@")[0] + "-123")
    client = LabelStudio(base_url=server.url, api_key=user_token(server, email))
    me = client.users.whoami()
    assert me.email == email
    return client, me.id


def gt_records(data_root: Path) -> dict[str, dict]:
    """Ground truth read straight from the npz files (radians)."""
    out = {}
    for path in sorted((data_root / GROUND_TRUTH).rglob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            out[f"{path.parent.name}/{path.stem}"] = {k: z[k].item() if z[k].ndim == 0 else z[k]
                                                      for k in z.files}
    return out


def answer(gt: dict, d_azimuth: float, d_px: float = 0.0, d_py: float = 0.0,
           cad: int | None = None, quality: str | None = None) -> list[dict]:
    """A submitted result: the reference pose moved by the offsets (degrees, pixels)."""
    pose = Pose(gt["azimuth"] + math.radians(d_azimuth), gt["elevation"], gt["theta"],
                gt["distance"], gt["px"] + d_px, gt["py"] + d_py, gt["viewport"])
    return [*L.pose_results(pose), L.choice_result(L.CAD, str(cad or int(gt["cad_index"]))),
            L.choice_result(L.QUALITY, quality or quality_value(str(gt["object_status"]))),
            L.choice_result(L.DENSE, dense_value(str(gt["dense"])))]


def expected(results: dict[str, list[dict]], gts: dict[str, dict]) -> dict:
    """The figures a scoring must give, from the submitted values and the npz ground truth."""
    rot, centre, cad, quality = [], [], [], []
    for key, result in results.items():
        gt = gts[key]
        values = {r["from_name"]: r["value"] for r in result}
        n = {name: values[name]["number"] for name in ("azimuth", "elevation", "theta", "px", "py")}
        rot.append(angle_between(rotation_deg(*np.degrees([gt["azimuth"], gt["elevation"],
                                                           gt["theta"]])),
                                 rotation_deg(n["azimuth"], n["elevation"], n["theta"])))
        centre.append(math.hypot(n["px"] - gt["px"], n["py"] - gt["py"]))
        cad.append(int(values[L.CAD]["choices"][0]) == int(gt["cad_index"]))
        quality.append(values[L.QUALITY]["choices"][0] == quality_value(str(gt["object_status"])))
    return {"objects": len(rot), "median_deg": float(np.median(rot)),
            "acc_pi6": float(np.mean(np.array(rot) < 30.0)),
            "centre_median_px": float(np.median(centre)), "cad_agreement": float(np.mean(cad)),
            "quality_agreement": float(np.mean(quality)), "errors": rot}


def store_rows(data_root: Path, table: str) -> list[tuple]:
    store = QualityStore(default_store_url(data_root))
    try:
        with store.transaction() as tx:
            return [tuple(r) for r in tx.run(f"SELECT * FROM {table} ORDER BY 1")]
    finally:
        store.close()


def qualification_of(data_root: Path, user_id: int):
    store = QualityStore(default_store_url(data_root))
    try:
        with store.transaction() as tx:
            return tx.qualification(str(user_id))
    finally:
        store.close()


def project_id_of(stdout: str) -> int:
    return int(re.search(r"^project (\d+):", stdout, re.M).group(1))


# --- The tests. ---


def test_qualification_create_score_fail_then_pass(label_studio, data_root, backend, created,
                                                   tmp_path, monkeypatch):
    qp, first = created
    assert f"imported {OBJECTS} in" in first, first
    admin = label_studio.client()

    # Label Studio keeps maximum_annotations, and every task got it as its overlap.
    assert admin.projects.get(id=qp).maximum_annotations == 50
    tasks = list(admin.tasks.list(project=qp, fields="all", page_size=100))
    assert sorted(t.data["object_key"] for t in tasks) == sorted(gt_records(data_root))
    assert {t.overlap for t in tasks} == {50}
    # The store knows it as a qualification project, with a copy of the ground truth.
    gts = gt_records(data_root)
    store = QualityStore(default_store_url(data_root))
    with store.transaction() as tx:
        qc = tx.project(qp)
    store.close()
    assert qc.kind == QUALIFICATION and qc.title == TITLE
    assert qc.settings["pass_rule"] == {"min_objects": 10, "max_median_deg": 10.0, "min_acc": 0.8}
    assert set(qc.settings["references"]) == set(gts)
    for key, ref in qc.settings["references"].items():
        for name in ("azimuth", "elevation", "theta", "distance", "px", "py", "cad_index"):
            assert ref[name] == pytest.approx(float(gts[key][name]), abs=1e-12), (key, name)
        assert ref["object_status"] == str(gts[key]["object_status"])

    again = run_qualify(label_studio, *CREATE, "--data-root", str(data_root), "--backend-url",
                        backend.url)
    assert again.returncode == 0, again.stderr
    assert project_id_of(again.stdout) == qp
    assert f"imported 0, already present {OBJECTS}, skipped 0" in again.stdout
    assert len(list(admin.tasks.list(project=qp, page_size=100))) == OBJECTS

    # Two annotators answer as themselves.
    bob, bob_id = annotator(label_studio, "bob.q@example.com")
    carol, carol_id = annotator(label_studio, "carol.q@example.com")
    by_key = {t.data["object_key"]: t.id for t in tasks}
    keys = sorted(by_key)
    cads = Dataset(data_root).cad
    close_offsets = [2, 4, 6, 3, 5, 1, 7, 2, 4, 6, 3, 45]  # one far answer
    bob_results = {}
    for i, key in enumerate(keys):
        other_cad = None
        if i in (1, 4):  # two other CAD picks
            other_cad = next(c for c in cads.indices(key.split("/")[0])
                             if c != int(gts[key]["cad_index"]))
        bob_results[key] = answer(gts[key], close_offsets[i], d_px=3, d_py=-4, cad=other_cad)
    far_offsets = [40, 40, 3, 40, 40, 3, 40, 40, 3, 40, 40, 3]
    carol_results = {k: answer(gts[k], far_offsets[i], quality="good")
                     for i, k in enumerate(keys)}
    carol_ids = {}
    for key in keys:
        bob.annotations.create(id=by_key[key], result=bob_results[key], lead_time=10.0)
        carol_ids[key] = carol.annotations.create(id=by_key[key], result=carol_results[key],
                                                  lead_time=10.0).id
    assert {a.completed_by for a in admin.annotations.list(id=by_key[keys[0]])} == {bob_id, carol_id}

    # A scoring killed after its first row is written leaves the store as it was.
    real = QualityTx.set_qualification
    calls = []

    def dies_after_one(tx, q):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(q.annotator)
        real(tx, q)

    monkeypatch.setattr(QualityTx, "set_qualification", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        score_qualification(admin, Dataset(data_root), qp, release=False)
    monkeypatch.undo()
    assert calls and store_rows(data_root, "pose6d_qc_qualification") == []

    out_html = tmp_path / "q.html"
    scored = run_qualify(label_studio, "score", "--data-root", str(data_root), "--title", TITLE,
                         "--html", str(out_html))
    assert scored.returncode == 0, scored.stderr
    assert "1 of 2 annotators passed; 2 results changed" in scored.stdout, scored.stdout
    want_bob, want_carol = expected(bob_results, gts), expected(carol_results, gts)
    # the hand-made offsets are what the oracle sees (rounded to the UI's 2 decimals)
    assert want_bob["errors"] == pytest.approx(close_offsets, abs=0.01)
    assert want_bob["centre_median_px"] == pytest.approx(5.0, abs=0.1)
    assert want_bob["cad_agreement"] == pytest.approx(10 / 12)
    assert want_carol["acc_pi6"] == pytest.approx(4 / 12)
    for user_id, want, passed in ((bob_id, want_bob, True), (carol_id, want_carol, False)):
        q = qualification_of(data_root, user_id)
        assert q is not None and q.passed is passed and q.project_id == qp
        f = q.figures
        assert f["objects"] == want["objects"] == OBJECTS
        for name in ("median_deg", "acc_pi6", "centre_median_px", "cad_agreement",
                     "quality_agreement"):
            assert f[name] == pytest.approx(want[name], abs=2e-3), (user_id, name)
    assert qualification_of(data_root, bob_id).email == "bob.q@example.com"
    page = out_html.read_text()
    assert "bob.q@example.com" in page and "carol.q@example.com" in page
    assert "Acc@pi/6 0.33 &lt; 0.8" in page or "Acc@pi/6 0.33 < 0.8" in page

    # Nothing changed: re-running changes nothing in the store.
    before = store_rows(data_root, "pose6d_qc_qualification")
    rerun = run_qualify(label_studio, "score", "--data-root", str(data_root), "--title", TITLE)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 results changed" in rerun.stdout
    assert store_rows(data_root, "pose6d_qc_qualification") == before

    # Carol corrects her answers (updates them) and passes.
    carol_fixed = {k: answer(gts[k], 2.0) for k in keys}
    for key in keys:
        carol.annotations.update(id=carol_ids[key], result=carol_fixed[key])
    fixed = run_qualify(label_studio, "score", "--data-root", str(data_root), "--title", TITLE)
    assert fixed.returncode == 0, fixed.stderr
    assert "2 of 2 annotators passed; 1 results changed" in fixed.stdout, fixed.stdout
    q = qualification_of(data_root, carol_id)
    assert q.passed and q.figures["median_deg"] == pytest.approx(
        expected(carol_fixed, gts)["median_deg"], abs=2e-3)

    status = run_qualify(label_studio, "status", "--data-root", str(data_root))
    assert status.returncode == 0, status.stderr
    assert re.search(r"carol\.q@example\.com\s+PASS", status.stdout), status.stdout

    # pose6d-report shows the results, a row per annotator.
    report_html = tmp_path / "report.html"
    rep = subprocess.run([sys.executable, str(REPO / "scripts/report.py"), "--data-root",
                          str(data_root), "--out", str(report_html)], capture_output=True,
                         text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    assert "2 of 2 annotators passed" in rep.stdout
    text = report_html.read_text()
    assert "<h2>Qualification test</h2>" in text and "carol.q@example.com" in text

    # Label Studio sent every answer to the backend's /webhook: none became a dataset record.
    time.sleep(2)
    assert not list((data_root / SYNCED).rglob("*.npz"))


def test_qualification_answers_are_not_synced(label_studio, data_root, backend, created):
    """A webhook event of the qualification project is journaled, never written as a record."""
    store = QualityStore(default_store_url(data_root))
    with store.transaction() as tx:
        qc = tx.project(created[0])
    store.close()
    key = sorted(qc.settings["references"])[0]
    event = {"action": "ANNOTATION_CREATED",
             "annotation": P.annotation(990001, 990001, P.pose_result(cad="1"), 10.0,
                                        project_id=qc.project_id),
             "task": P.task(990001, key, project_id=qc.project_id),
             "project": P.project(qc.project_id)}
    reply = requests.post(backend.url + "/webhook", json=event, timeout=30)
    assert reply.status_code in (200, 201), reply.text
    assert reply.json()["status"] == "ignored" and "qualification project" in reply.json()["reason"]
    assert not Dataset(data_root).record_path(ObjectKey.parse(key), SYNCED).exists()
    assert not list((data_root / SYNCED).rglob("*.npz"))


def test_references_from_synced_records_are_a_copy(label_studio, data_root, backend):
    """--from synced --keys: the synced records of those objects are the test; a later edit of
    a synced record does not change it; a missing record is a one-line error."""
    dataset = Dataset(data_root)
    keys = dataset.objects()[:3]
    synced_dir = data_root / SYNCED
    try:
        for key in keys:
            dataset.write(key, dataset.read(key, GROUND_TRUTH), SYNCED)
        args = ("create", "--data-root", str(data_root), "--backend-url", backend.url, "--title",
                "qualification S", "--from", "synced", "--keys", ",".join(map(str, keys)),
                "--min-objects", "2")
        first = run_qualify(label_studio, *args)
        assert first.returncode == 0, first.stderr
        assert "3 test objects (synced)" in first.stdout
        assert "pass: median rotation error <= 10 deg and Acc@pi/6 >= 0.8 on at least 2" \
            in first.stdout
        qp = project_id_of(first.stdout)
        before = [r for r in store_rows(data_root, "pose6d_qc_project") if r[0] == qp]
        moved = dataset.read(keys[0], SYNCED)
        dataset.write(keys[0], type(moved)(Pose(moved.pose.azimuth + 1.0, moved.pose.elevation,
                                                moved.pose.theta, moved.pose.distance,
                                                moved.pose.px, moved.pose.py,
                                                moved.pose.viewport), moved.cad_index,
                                           moved.extra), SYNCED)
        again = run_qualify(label_studio, *args)
        assert again.returncode == 0, again.stderr
        after = [r for r in store_rows(data_root, "pose6d_qc_project") if r[0] == qp]
        assert after == before
        missing = run_qualify(label_studio, "create", "--data-root", str(data_root),
                              "--backend-url", backend.url, "--title", "qualification S2",
                              "--from", "synced", "--keys", "car/nothing_0")
        assert missing.returncode == 2
        assert missing.stderr.count("\n") == 1 and "no synced record" in missing.stderr
    finally:
        for key in keys:
            dataset.record_path(key, SYNCED).unlink(missing_ok=True)
