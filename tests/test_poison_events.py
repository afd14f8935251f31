"""Issue 12: poison and forged events, stale temporary files and a bounded journal, on SQLite
and PostgreSQL (the store_url fixture), through the HTTP app where Label Studio would call it.
(The same against a real Label Studio and reconcile: test_forged_events_live.py; crashes:
test_crash.py.)"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

import ls_payloads as ls
from backend_helpers import interactive_body, make_client, task_for
from label_sync import engine as engine_module
from label_sync.engine import SyncService
from label_sync.records import annotation_record, file_matches, record_fields
from label_sync.store import default_store_url
from ml_backend import model as model_module
from pose6d import labeling as L
from pose6d.dataset import SYNCED, Dataset, ObjectKey
from pose6d.inout import load_npz

CAR0, CAR1, BAG0 = "car/img_a_1_0", "car/img_a_1_1", "punching_bag/bag_2_0"
ORIGINAL_WRITE = Dataset.write
POISON = "car/x_" + "9" * 5000  # k with 5000 digits: int() refuses it with a plain ValueError


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tiny_dataset) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return default_store_url(tiny_dataset.root)


def synced(dataset: Dataset, key: str) -> dict | None:
    path = dataset.record_path(ObjectKey.parse(key), SYNCED)
    return load_npz(path) if path.exists() else None


def journal_by_id(sync: SyncService) -> dict[int, dict]:
    return {row["id"]: row for row in sync.journal(1000)}


def app_client(dataset: Dataset, store_url: str):
    client = make_client(dataset, sync_store=store_url)
    return client, client.application.extensions["pose6d_model"]


# --- 1. poison events ---


def test_poison_object_key_end_to_end(tiny_dataset, store_url, monkeypatch, tiny_keys):
    """The probe's scenario: a poison event, then a failed one, then a good one. Nothing answers
    500, the poison row is finished as rejected, the retry goes past it and applies the failed
    event. Also with the original ObjectKey.parse (a plain ValueError) put back."""
    client, model = app_client(tiny_dataset, store_url)
    monkeypatch.setattr(model_module, "RETRY_FAILED_S", 0.0)  # retry on every event
    task = task_for(tiny_dataset, tiny_keys[0])
    poison_task = dict(task, data=dict(task["data"], object_key=POISON))

    # as main parses it now: a DataError -> rejected
    r = client.post("/webhook", json=ls.created(1, 1, POISON, 10))
    assert r.status_code == 422, r.json
    # the original parser: ValueError out of int() for 5000 digits
    original = ObjectKey.parse.__func__

    def old_parse(cls, text):
        if isinstance(text, str) and "_" in text:
            int(text.rsplit("_", 1)[1])  # raises ValueError past 4300 digits
        return original(cls, text)

    monkeypatch.setattr(ObjectKey, "parse", classmethod(old_parse))
    r = client.post("/webhook", json=ls.created(2, 1, POISON, 11))
    assert r.status_code == 422, r.json
    r = client.post("/predict", json={"tasks": [poison_task, task]})
    assert r.status_code == 200, r.json
    assert r.json["results"][0] == [] and r.json["results"][1]["result"]  # the good task still predicted
    r = client.post("/predict", json=interactive_body(poison_task, [
        {"from_name": "azimuth", "to_name": "image", "type": "number", "value": {"number": 3}}]))
    assert r.status_code == 200 and r.json["results"][0]["result"] == []

    sync = model.sync
    rows = journal_by_id(sync)
    assert [rows[i]["status"] for i in sorted(rows)] == ["rejected", "rejected"]
    assert "cannot be applied: ValueError" in rows[max(rows)]["reason"]

    # a crash left a poison row 'received' (as before the fix): the retry must finish it
    with sync.store.transaction() as tx:
        stuck = tx.journal_add("ANNOTATION_CREATED", json.dumps(ls.created(3, 1, POISON, 12)))
    monkeypatch.setattr(engine_module, "STUCK_AFTER", engine_module.dt.timedelta(0))

    # a failed write (disk full), kept for retry
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Dataset, "write", disk_full)
    model._last_retry = time.monotonic() + 3600  # no retry during this event
    r = client.post("/webhook", json=ls.created(4, 2, CAR1, 13))
    assert r.status_code == 503
    monkeypatch.setattr(Dataset, "write", ORIGINAL_WRITE)  # the disk has room again
    model._last_retry = 0.0

    # a later good event: applied, and the retry behind it gets past the poison row
    r = client.post("/webhook", json=ls.created(5, 3, BAG0, 14))
    assert r.status_code == 201, r.json
    rows = journal_by_id(sync)
    assert rows[stuck]["status"] == "rejected"
    assert all(row["status"] != "failed" and row["status"] != "received" for row in rows.values())
    assert synced(tiny_dataset, CAR1)["ls_annotation_id"] == 4
    assert synced(tiny_dataset, BAG0)["ls_annotation_id"] == 5
    assert sync.pending_events() == []


def test_key_part_over_200_characters_is_rejected_not_retried(tiny_dataset, store_url):
    client, model = app_client(tiny_dataset, store_url)
    long_key = "car/" + "a" * 201 + "_0"  # 201 + ".npz" and a temp suffix: over no file limit,
    r = client.post("/webhook", json=ls.created(1, 1, long_key, 10))  # but refused by the key rule
    assert r.status_code == 422
    row = model.sync.journal(1)[0]
    assert row["status"] == "rejected" and "at most 200" in row["reason"]
    assert model.sync.pending_events() == []
    assert model.sync.retry_failed() == 0
    assert model.sync.journal(1)[0]["attempts"] == 1  # not tried again


def test_a_name_too_long_for_the_file_system_is_refused_for_good(tiny_dataset, store_url,
                                                                  monkeypatch):
    """Should a name ever pass the key rule and still be too long (another file system's limit),
    reading its initial record fails with ENAMETOOLONG: refused, never retried forever."""
    sync = SyncService(tiny_dataset, store_url)

    def too_long(self, *args, **kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long")

    monkeypatch.setattr(Path, "read_bytes", too_long)
    monkeypatch.setattr(Dataset, "read", lambda *a, **k: (_ for _ in ()).throw(
        engine_module.DataError("cannot read")))
    with pytest.raises(engine_module.SyncRejected):
        sync.handle_event(ls.created(1, 1, CAR0, 10))
    assert sync.journal(1)[0]["status"] == "rejected"
    assert sync.pending_events() == []


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
@pytest.mark.parametrize("route", ["/webhook", "/predict", "/setup"])
def test_deeply_nested_json_is_400(tiny_dataset, depth, route):
    client = make_client(tiny_dataset)
    body = '{"action": "ANNOTATION_CREATED", "tasks": ' + "[" * depth + "]" * depth + "}"
    r = client.post(route, data=body, content_type="application/json")
    assert r.status_code == 400, (r.status_code, r.json)
    assert "nested" in r.json["error"]
    shallow = '{"action": "PROJECT_UPDATED", "x": ' + "[" * 60 + "]" * 60 + "}"
    assert client.post("/webhook", data=shallow, content_type="application/json").status_code == 201


# --- 2. forged deletions ---


def test_forged_deletion_deletes_nothing_of_another_or_no_project(tiny_dataset, store_url):
    client, model = app_client(tiny_dataset, store_url)
    for aid, key in ((1, CAR0), (2, CAR1), (3, BAG0)):
        assert client.post("/webhook", json=ls.created(aid, aid, key, 10)).status_code == 201
    before = {k: synced(tiny_dataset, k)["ls_annotation_id"] for k in (CAR0, CAR1, BAG0)}

    no_project = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": i} for i in range(1, 200)]}
    r = client.post("/webhook", json=no_project)
    assert r.status_code == 201 and r.json["status"] == "ignored" and "project" in r.json["reason"]
    other = dict(ls.deleted(*range(1, 200)), project=ls.project(2))
    r = client.post("/webhook", json=other)
    # ids 1-3 are project 1's: not deleted; the others are unknown, tombstoned for project 2
    # only (a deletion may arrive before its creation), which no project-1 annotation heeds
    assert r.status_code == 201 and r.json["removed"] == [] and r.json["written"] == [], r.json
    assert r.json["reason"].count("is not of project 2") == 3
    tasks_gone = {"action": "TASKS_DELETED", "tasks": [{"id": 1}, {"id": 2}]}
    assert client.post("/webhook", json=tasks_gone).json["status"] == "ignored"
    tasks_other = dict(tasks_gone, project=ls.project(2))
    assert client.post("/webhook", json=tasks_other).json["status"] == "ignored"
    assert {k: synced(tiny_dataset, k)["ls_annotation_id"] for k in before} == before == {
        CAR0: 1, CAR1: 2, BAG0: 3}
    assert model.sync.deleted_annotations() == set(range(4, 200))
    assert sorted(v.annotation_id for v in model.sync.versions(1)) == [1, 2, 3]

    # ids no stored annotation has, forged for project 2: a later real annotation of project 1
    # with such an id is still synced
    r = client.post("/webhook", json=ls.updated(1, 1, CAR0, 20, ls.pose_result(azimuth=50)))
    assert r.status_code == 201 and r.json["status"] == "applied", r.json
    assert np.isclose(np.degrees(synced(tiny_dataset, CAR0)["azimuth"]), 50)

    r = client.post("/webhook", json=ls.created(150, 150, CAR1, 30, ls.pose_result(azimuth=60)))
    assert r.status_code == 201 and r.json["status"] == "applied", r.json  # id 150: project 1
    assert synced(tiny_dataset, CAR1)["ls_annotation_id"] == 150
    r = client.post("/webhook", json=ls.deleted(150))  # a real deletion of the project deletes
    assert r.json["status"] == "applied" and r.json["written"] == [CAR1]  # back to annotation 2
    # a real deletion of the project still deletes
    r = client.post("/webhook", json=ls.deleted(2))
    assert r.json["status"] == "applied" and r.json["removed"] == [CAR1]


def test_restore_annotation_lifts_a_forged_tombstone(tiny_dataset, store_url):
    sync = SyncService(tiny_dataset, store_url)
    event = ls.created(1, 1, CAR0, 10, ls.pose_result(azimuth=40))
    sync.handle_event(event)
    sync.handle_event(ls.deleted(1))  # forged, within the project
    assert synced(tiny_dataset, CAR0) is None and sync.deleted_annotations() == {1}
    summary = sync.restore_annotation(event["annotation"], event["task"])
    assert summary["restored"] is True and summary["written"] == [CAR0]
    assert sync.deleted_annotations() == set()
    assert np.isclose(np.degrees(synced(tiny_dataset, CAR0)["azimuth"]), 40)
    again = sync.restore_annotation(event["annotation"], event["task"])
    assert again["restored"] is False and again["written"] == [] and again["status"] == "duplicate"


# --- 3. stale temporary files ---


def test_stale_temp_files_are_removed_at_start(tiny_dataset, store_url):
    folder = tiny_dataset.root / SYNCED / "car"
    folder.mkdir(parents=True)
    old = folder / ".img_a_1_0.npz.0a1b2c3d.tmp"
    young = folder / ".img_a_1_1.npz.deadbeef.tmp"
    other = folder / ".notes.tmp"  # not the atomic-write pattern: someone else's
    for path in (old, young, other):
        path.write_bytes(b"PK\x03\x04 half")
    past = time.time() - 120
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    sync = SyncService(tiny_dataset, store_url)
    assert not old.exists() and young.exists() and other.exists()
    os.utime(young, (past, past))
    assert sync.remove_stale_temp_files() == [str(young)]
    assert not young.exists() and other.exists()


# --- 5. a bounded journal ---


def realistic_event(client, dataset: Dataset, aid: int, key: ObjectKey, updated: float,
                    action: str = "ANNOTATION_CREATED") -> dict:
    """A submitted annotation at its largest: the prediction's regions (the overlay's Mesh and
    Edges brushes, which Label Studio 1.23.2 no longer stores with our config but an older
    project's annotations carry, the box) plus the numbers and choices."""
    task = task_for(dataset, key, task_id=aid)
    prediction = client.post("/predict", json={"tasks": [task]}).json["results"][0]["result"]
    regions = [item for item in prediction if item["type"] not in ("number", "choices")]
    result = ls.pose_result(azimuth=30 + aid % 50, cad=str(task["data"]["cad_index"])) + regions
    event = ls.annotation_event(action, aid, aid, str(key), updated, result)
    event["task"]["data"] = dict(event["task"]["data"], **task["data"])
    return event


def store_bytes(store_url: str, dataset: Dataset) -> int:
    """The store's size on disk: SQLite file + WAL after a checkpoint; PostgreSQL tables."""
    if store_url.startswith("postgres"):
        import psycopg2

        with psycopg2.connect(store_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                        "WHERE c.relkind = 'r' AND c.relname LIKE 'pose6d_sync_%'")
            return int(cur.fetchone()[0])
    path = Path(store_url)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_store_grows_at_most_2kb_per_realistic_event(tiny_dataset, store_url, tiny_keys, capsys):
    events = 200
    client, model = app_client(tiny_dataset, store_url)
    sample = realistic_event(client, tiny_dataset, 1, tiny_keys[0], 0)
    body_size = len(json.dumps(sample))
    assert any(item["from_name"] == L.OVERLAY for item in sample["annotation"]["result"])
    warm_up = 40  # first pages, free-space maps: once per table, not per event
    start = None
    for i in range(-warm_up, events):
        if i == 0:
            start = store_bytes(store_url, tiny_dataset)
        key = tiny_keys[i % len(tiny_keys)]
        action = "ANNOTATION_CREATED" if i < -warm_up + 3 else "ANNOTATION_UPDATED"
        aid = i % 3 + 1  # three annotations, each updated again and again
        event = realistic_event(client, tiny_dataset, aid, key, float(i + warm_up), action)
        r = client.post("/webhook", json=event)
        assert r.status_code == 201, r.json
    per_event = (store_bytes(store_url, tiny_dataset) - start) / events
    with capsys.disabled():
        print(f"\n[journal {'postgresql' if store_url.startswith('postgres') else 'sqlite'}] "
              f"{per_event:.0f} bytes/event over {events} events (after {warm_up}; webhook "
              f"body {body_size} bytes)")
    assert per_event <= 2048, per_event


def test_a_retried_event_gives_the_record_of_the_full_event(tiny_dataset, store_url, tiny_keys,
                                                           monkeypatch):
    client, model = app_client(tiny_dataset, store_url)
    event = realistic_event(client, tiny_dataset, 7, tiny_keys[1], 5.0)
    event["annotation"]["completed_by"] = {"id": 7, "email": "ann@example.org", "first_name": "A"}
    expected = record_fields(annotation_record(event["annotation"], event["task"],
                                               tiny_dataset.read(tiny_keys[1]), tiny_dataset))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Dataset, "write", disk_full)
    sync = model.sync
    assert sync.handle_event(event)["status"] == "failed"
    journaled = json.loads(sync.journal(1)[0]["payload"])
    assert '"rle"' not in json.dumps(journaled) and "label_config" not in json.dumps(journaled)
    monkeypatch.undo()
    assert sync.retry_failed() == 1
    assert file_matches(tiny_dataset.record_path(tiny_keys[1], SYNCED), expected)
    assert synced(tiny_dataset, str(tiny_keys[1]))["annotator"] == "ann@example.org"


def test_compaction_keeps_only_what_a_retry_needs(tiny_dataset, store_url, monkeypatch):
    sync = SyncService(tiny_dataset, store_url)
    sync.handle_event(ls.created(1, 1, CAR0, 10))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Dataset, "write", disk_full)
    sync.handle_event(ls.created(2, 2, CAR1, 10))
    monkeypatch.undo()
    assert sync.compact_journal(days=7) == 0  # nothing old enough
    assert sync.compact_journal(days=0) == 1  # the applied one
    rows = {r["status"]: r for r in sync.journal()}
    assert rows["applied"]["payload"] == "" and rows["failed"]["payload"] != ""
    assert sync.retry_failed() == 1
    assert synced(tiny_dataset, CAR1)["ls_annotation_id"] == 2
