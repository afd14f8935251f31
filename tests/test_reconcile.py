"""Webhook sync and scripts/reconcile.py against a REAL Label Studio (the session's one) and a
real backend process: annotations reach annotations_new/ while the backend runs; changes made
while it is down are repaired by reconcile; a second reconcile changes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks import wait_for
from ls_admin.project import SetupOptions, setup_project
from ls_admin.backend_process import BackendProcess
from label_sync.engine import SyncService
from pose6d import labeling as L
from pose6d.camera import POSE_NAMES
from pose6d.dataset import SYNCED, Dataset, ObjectKey
from pose6d.demo.dataset import make_demo_dataset

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[1]
WEBHOOK_WAIT_S = 15.0


def result(task, azimuth: float, quality: str | None = "good") -> list[dict]:
    """A submitted result: the task's initial pose with another azimuth, CAD, quality, dense."""
    record = Dataset(DATA[0]).read(ObjectKey.parse(task.data["object_key"]))
    numbers = dict(record.pose.as_degrees(), azimuth=azimuth)
    out = [{"from_name": n, "to_name": L.IMAGE, "type": "number", "value": {"number": round(numbers[n], 2)}}
           for n in POSE_NAMES]
    out.append(L.choice_result(L.CAD, str(task.data["cad_index"])))
    if quality:
        out.append(L.choice_result(L.QUALITY, quality))
    out.append(L.choice_result(L.DENSE, L.DENSE_VALUES[0]))
    return out


DATA: list[Path] = []  # the module's data root, for result()


@pytest.fixture(scope="module")
def data_root(label_studio_root: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reconcile") / "data"
    make_demo_dataset(root, objects=6, seed=5, progress=False)
    DATA[:] = [root]
    return root


@pytest.fixture(scope="module")
def backend(data_root: Path, tmp_path_factory):
    proc = BackendProcess(data_root, log_path=tmp_path_factory.mktemp("reconcile_log") / "backend.log")
    yield proc.start()
    proc.stop()


def synced_azimuths(root: Path) -> dict[str, float]:
    dataset = Dataset(root)
    return {str(k): round(dataset.read(k, SYNCED).pose.as_degrees()["azimuth"], 2)
            for k in dataset.objects(SYNCED)}


def expected_azimuths(client, project_id: int) -> dict[str, float]:
    """What annotations_new/ must hold: one record per object with a valid annotation."""
    out = {}
    for task in client.tasks.list(project=project_id, fields="all", page_size=100):
        for annotation in task.annotations or []:
            values = L.read_results(annotation["result"])
            if L.QUALITY in values.choices and not annotation["was_cancelled"]:
                out[task.data["object_key"]] = round(values.numbers["azimuth"], 2)
    return out


def seconds_until(predicate, timeout: float = WEBHOOK_WAIT_S) -> float:
    """How long until ``predicate`` holds (AssertionError after ``timeout`` s)."""
    start = time.monotonic()
    wait_for(predicate, timeout, "the webhook sync", interval=0.1)
    return time.monotonic() - start


def run_reconcile(server, root: Path, project_id: int, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY=server.token)
    run = subprocess.run([sys.executable, str(REPO / "scripts/reconcile.py"), "--quiet",
                          "--data-root", str(root), "--project-id", str(project_id), *extra],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    return run


def test_webhook_sync_then_reconcile_after_downtime(label_studio, data_root, backend):
    client = label_studio.client()
    report = setup_project(client, SetupOptions(data_root, backend.url, title="reconcile",
                                                progress=False), label_studio.url)
    project_id = report.project_id
    tasks = sorted(client.tasks.list(project=project_id, include="id,data"),
                   key=lambda t: t.data["object_key"])
    keys = [t.data["object_key"] for t in tasks]

    # backend up: annotations reach annotations_new/ through Label Studio's webhook
    first = client.annotations.create(id=tasks[0].id, result=result(tasks[0], 10.0))
    doomed = client.annotations.create(id=tasks[1].id, result=result(tasks[1], 11.0))
    seconds = seconds_until(lambda: synced_azimuths(data_root) == {keys[0]: 10.0, keys[1]: 11.0})
    print(f"webhook sync of 2 annotations took {seconds:.2f} s")

    # backend down: create, update, delete, and an invalid one (no quality) - no webhooks arrive
    backend.stop()
    client.annotations.create(id=tasks[2].id, result=result(tasks[2], 12.0))
    client.annotations.update(id=first.id, result=result(tasks[0], 20.0))
    client.annotations.delete(id=doomed.id)
    invalid = client.annotations.create(id=tasks[3].id, result=result(tasks[3], 13.0, quality=None))
    assert synced_azimuths(data_root) == {keys[0]: 10.0, keys[1]: 11.0}
    backend.start()

    plan = run_reconcile(label_studio, data_root, project_id, "--dry-run")
    assert "would change 3 thing(s)" in plan.stdout, plan.stdout
    assert synced_azimuths(data_root) == {keys[0]: 10.0, keys[1]: 11.0}  # dry run: untouched

    fixed = run_reconcile(label_studio, data_root, project_id)
    assert "changed 3 thing(s)" in fixed.stdout, fixed.stdout
    assert f"applied annotation {first.id} ({keys[0]})" in fixed.stdout
    assert f"deleted annotation {doomed.id} ({keys[1]}): removed {keys[1]}" in fixed.stdout
    assert f"not synced: annotation {invalid.id} ({keys[3]}): missing quality choice" in fixed.stdout
    assert synced_azimuths(data_root) == expected_azimuths(client, project_id) == \
        {keys[0]: 20.0, keys[2]: 12.0}

    again = run_reconcile(label_studio, data_root, project_id)
    assert "3 annotation(s) in Label Studio; no changes" in again.stdout, again.stdout

    # a synced file lost or edited by hand is repaired too
    Dataset(data_root).remove(ObjectKey.parse(keys[2]), SYNCED)
    repaired = run_reconcile(label_studio, data_root, project_id)
    assert "changed 1 thing(s)" in repaired.stdout, repaired.stdout
    assert synced_azimuths(data_root) == {keys[0]: 20.0, keys[2]: 12.0}


# --- A task the snapshot misses is not taken for deleted. ---


def tombstoned(root: Path) -> set[int]:
    sync = SyncService(Dataset(root))
    try:
        with sync.store.transaction() as tx:
            return {int(r[0]) for r in tx.run("SELECT annotation_id FROM pose6d_sync_deleted")}
    finally:
        sync.close()


def test_a_task_missing_from_the_snapshot_is_not_tombstoned(label_studio, label_studio_root,
                                                            tmp_path, monkeypatch):
    from label_studio_sdk.core.api_error import ApiError

    from ls_admin import reconcile as R
    from ls_admin.project import ensure_project
    from pose6d.tasks import object_task

    root = tmp_path / "data"
    make_demo_dataset(root, objects=5, seed=7, progress=False)
    DATA[:] = [root]  # for result()
    dataset = Dataset(root)
    client = label_studio.client()
    project, _ = ensure_project(client, "reconcile snapshot gaps")
    keys = sorted(dataset.objects())[:4]
    client.projects.import_tasks(id=project.id, request=[object_task(dataset, k) for k in keys])
    tasks = sorted(client.tasks.list(project=project.id, include="id,data"),
                   key=lambda t: t.data["object_key"])
    names = [t.data["object_key"] for t in tasks]
    kept = client.annotations.create(id=tasks[0].id, result=result(tasks[0], 10.0))
    doomed = client.annotations.create(id=tasks[1].id, result=result(tasks[1], 11.0))
    first = R.reconcile(client, dataset, project.id, progress=False)
    assert len(first.changes) == 2 and synced_azimuths(root) == {names[0]: 10.0, names[1]: 11.0}

    # a failed webhook write, journaled: reconcile retries it first
    late = client.annotations.create(id=tasks[2].id, result=result(tasks[2], 12.0))
    (ann, task), = [(a, t) for a, t in R.fetch_annotations(client, project.id)
                    if t["id"] == tasks[2].id]
    sync = SyncService(dataset)
    with monkeypatch.context() as m:
        m.setattr(Dataset, "write", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
        assert sync.apply_annotation(ann, task)["status"] == "failed"
    sync.close()

    # while annotators work: annotation 1 is deleted, a new annotation on task 3 arrives, and
    # the snapshot misses tasks 0 and 3 (as it would annotations made while it is built)
    client.annotations.delete(id=doomed.id)
    fresh = client.annotations.create(id=tasks[3].id, result=result(tasks[3], 13.0))
    snapshot = R.fetch_annotations
    dropped = {tasks[0].id, tasks[3].id}
    monkeypatch.setattr(R, "fetch_annotations", lambda c, p: (
        (a, t) for a, t in snapshot(c, p) if t["id"] not in dropped))

    # Label Studio cannot confirm a deletion (500): nothing is tombstoned, it is reported
    get = client.annotations.get

    def failing_get(id, **kw):
        raise ApiError(status_code=500, body={"detail": "server error"})

    monkeypatch.setattr(client.annotations, "get", failing_get)
    unsure = R.reconcile(client, dataset, project.id, progress=False)
    assert tombstoned(root) == set(), unsure.lines()
    assert unsure.retried == 1 and unsure.retry_ok == 1, unsure.lines()
    assert "retried 1 failed webhook event(s), 1 now applied" in unsure.lines()[0]
    for aid in (doomed.id, kept.id):
        assert any(f"not deleted: annotation {aid}: could not confirm" in line
                   for line in unsure.lines()), unsure.lines()
    assert unsure.annotations == 1  # task 2's; task 3's new one waits for the next run
    assert synced_azimuths(root) == {names[0]: 10.0, names[1]: 11.0, names[2]: 12.0}

    # Label Studio answers 404 for the deleted one only: only it is tombstoned; the synced
    # annotation the snapshot missed is found through its task, not taken for deleted
    monkeypatch.setattr(client.annotations, "get", get)
    dropped.discard(tasks[3].id)
    done = R.reconcile(client, dataset, project.id, progress=False)
    assert tombstoned(root) == {doomed.id}, done.lines()
    assert not done.unconfirmed and done.retried == 0
    assert done.annotations == 3, done.lines()
    assert synced_azimuths(root) == {names[0]: 10.0, names[2]: 12.0, names[3]: 13.0}
    assert {kept.id, late.id, fresh.id}.isdisjoint(tombstoned(root))
