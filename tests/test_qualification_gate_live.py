"""--require-qualification against a real Label Studio and a real backend process: a label
submitted by an annotator who has not passed is held (journaled, no record), the refinement
tells them why, and once they pass reconcile applies it; a second reconcile changes nothing."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio

from checks import wait_for
from label_studio_server import create_user
from label_sync.engine import SyncService
from label_sync.quality_store import Qualification, QualityStore
from label_sync.store import default_store_url
from ls_admin.backend_process import BackendProcess
from ls_admin.project import SetupOptions, setup_project
from ls_admin.reconcile import reconcile
from pose6d import labeling as L
from pose6d.camera import POSE_NAMES
from pose6d.dataset import SYNCED, Dataset, ObjectKey
from pose6d.demo.dataset import make_demo_dataset

pytestmark = pytest.mark.live
EMAIL, PASSWORD = "newcomer@lab.org", "newcomer-pass-1"


@pytest.fixture(scope="module")
def data_root(label_studio_root: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gate") / "data"
    make_demo_dataset(root, objects=3, seed=11, progress=False)
    return root


@pytest.fixture(scope="module")
def backend(data_root: Path, tmp_path_factory):
    proc = BackendProcess(data_root, log_path=tmp_path_factory.mktemp("gate_log") / "backend.log",
                          args=["--require-qualification"])
    yield proc.start()
    proc.stop()


def result(record, azimuth: float) -> list[dict]:
    numbers = dict(record.pose.as_degrees(), azimuth=azimuth)
    out = [{"from_name": n, "to_name": L.IMAGE, "type": "number",
            "value": {"number": round(numbers[n], 2)}} for n in POSE_NAMES]
    return out + [L.choice_result(L.CAD, str(record.cad_index)),
                  L.choice_result(L.QUALITY, "good"), L.choice_result(L.DENSE, L.DENSE_VALUES[0])]


def test_a_newcomers_label_waits_for_their_qualification(label_studio, data_root, backend):
    admin = label_studio.client()
    setup = setup_project(admin, SetupOptions(data_root=data_root, backend_url=backend.url,
                                              title="gate", progress=False), label_studio.url)
    token = create_user(label_studio, EMAIL, PASSWORD)
    newcomer = LabelStudio(base_url=label_studio.url, api_key=token)
    user_id = newcomer.users.whoami().id
    task = next(iter(admin.tasks.list(project=setup.project_id, page_size=10)))
    key = ObjectKey.parse(task.data["object_key"])
    dataset = Dataset(data_root)
    azimuth = round(dataset.read(key).pose.as_degrees()["azimuth"] + 33.0, 2)
    created = newcomer.annotations.create(id=task.id, result=result(dataset.read(key), azimuth))

    sync = SyncService(dataset)  # follows the backend's rule, kept in the store
    assert sync.require_qualification
    wait_for(lambda: any(e["status"] == "held" for e in sync.journal(20)), 15, "the held event")
    held = [e for e in sync.journal(20) if e["status"] == "held"][0]
    assert str(user_id) in held["reason"] and "not taken" in held["reason"]
    time.sleep(1.0)
    assert not dataset.record_path(key, SYNCED).exists()

    first = reconcile(admin, dataset, setup.project_id, progress=False)
    assert len(first.held) == 1 and not dataset.record_path(key, SYNCED).exists()

    with QualityStore(default_store_url(data_root)).transaction() as tx:
        tx.set_qualification(Qualification(str(user_id), EMAIL, True, {}, None,
                                           "2026-12-06T00:00:00+00:00"))
    second = reconcile(admin, dataset, setup.project_id, progress=False)
    assert any("held event" in line for line in second.changes), second.lines()
    record = dataset.read(key, SYNCED)
    assert record.pose.as_degrees()["azimuth"] == pytest.approx(azimuth, abs=0.01)
    assert record.extra["ls_annotation_id"] == created.id
    third = reconcile(admin, dataset, setup.project_id, progress=False)
    assert not third.changes and not third.held, third.lines()
