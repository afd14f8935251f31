"""Issue 12 against a REAL Label Studio (the session's one): a poison task and a forged deletion
within the project, then ls_admin.reconcile and scripts/reconcile.py repair everything from
what Label Studio has; a second run changes nothing."""
from __future__ import annotations

import json

import pytest

import test_reconcile as TR
from label_sync import engine as engine_module
from label_sync.engine import SyncService
from ls_admin import reconcile as R
from ls_admin.project import ensure_project
from pose6d.dataset import Dataset
from pose6d.demo.dataset import make_demo_dataset
from pose6d.tasks import object_task

pytestmark = pytest.mark.live
POISON = "car/x_" + "9" * 5000


def expected_records(client, project_id: int) -> dict[str, float]:
    """What annotations_new/ must hold: test_reconcile's rule, without the poison task (no
    object of the dataset can be named by its key)."""
    return {k: v for k, v in TR.expected_azimuths(client, project_id).items() if k != POISON}


def test_poison_task_and_forged_deletion_are_repaired_by_reconcile(label_studio, tmp_path,
                                                                   monkeypatch):
    root = tmp_path / "data"
    make_demo_dataset(root, objects=6, seed=11, progress=False)
    TR.DATA[:] = [root]
    dataset = Dataset(root)
    client = label_studio.client()
    project, _ = ensure_project(client, "forged events")
    keys = sorted(dataset.objects())[:5]
    tasks_json = [object_task(dataset, k) for k in keys]
    poison_task = json.loads(json.dumps(tasks_json[0]))
    poison_task["data"]["object_key"] = POISON
    client.projects.import_tasks(id=project.id, request=tasks_json + [poison_task])
    tasks = list(client.tasks.list(project=project.id, include="id,data"))
    real = sorted((t for t in tasks if t.data["object_key"] != POISON),
                  key=lambda t: t.data["object_key"])
    poison = next(t for t in tasks if t.data["object_key"] == POISON)
    made = [client.annotations.create(id=t.id, result=TR.result(t, 10.0 + i))
            for i, t in enumerate(real)]
    client.annotations.create(id=poison.id, result=TR.result(real[0], 99.0))

    first = R.reconcile(client, dataset, project.id, progress=False)
    expected = expected_records(client, project.id)
    assert len(expected) == len(real)
    assert TR.synced_azimuths(root) == expected, first.lines()
    assert any("not synced" in line and "object_key" in line for line in first.lines())

    # the old failure: the poison event left 'received' by a crash, a failed write behind it
    sync = SyncService(dataset)
    (poison_ann, poison_t), = [(a, t) for a, t in R.fetch_annotations(client, project.id)
                               if t["id"] == poison.id]
    with sync.store.transaction() as tx:
        stuck = tx.journal_add("RECONCILE", json.dumps(
            {"action": "RECONCILE", "annotation": poison_ann, "task": poison_t}))
    later = client.annotations.update(id=made[1].id, result=TR.result(real[1], 42.0))
    (ann1, task1), = [(a, t) for a, t in R.fetch_annotations(client, project.id)
                      if a["id"] == made[1].id]
    with monkeypatch.context() as m:
        m.setattr(Dataset, "write", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
        assert sync.apply_annotation(ann1, task1)["status"] == "failed"

    # a forged deletion within the project: ids of real annotations
    forged = sync.handle_event({"action": "ANNOTATIONS_DELETED", "project": {"id": project.id},
                                "annotations": [{"id": a.id} for a in made]})
    assert forged["status"] == "applied" and len(forged["removed"]) == len(real)
    assert TR.synced_azimuths(root) == {}
    sync.close()

    monkeypatch.setattr(engine_module, "STUCK_AFTER", engine_module.dt.timedelta(0))
    fixed = R.reconcile(client, dataset, project.id, progress=False)
    lines = fixed.lines()
    assert fixed.retried == 2 and fixed.retry_ok == 2, lines  # the poison one refused for good
    restored = [line for line in lines if "restored annotation" in line]
    assert len(restored) == len(real), lines
    assert later.id == made[1].id
    expected = expected_records(client, project.id)
    assert expected[real[1].data["object_key"]] == 42.0
    assert TR.synced_azimuths(root) == expected, lines
    sync = SyncService(dataset)
    rows = {r["id"]: r for r in sync.journal(1000)}
    assert rows[stuck]["status"] == "rejected" and sync.pending_events() == []
    assert sync.deleted_annotations() == set()
    sync.close()

    again = TR.run_reconcile(label_studio, root, project.id)  # the script: exit 0
    assert f"{len(real) + 1} annotation(s) in Label Studio; no changes" in again.stdout, again.stdout
    assert TR.synced_azimuths(root) == expected
