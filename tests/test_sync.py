"""Sync of Label Studio annotation events to annotations_new/ (SQLite store; test_sync_postgres
runs every test here again on PostgreSQL by overriding the ``store_url`` fixture)."""
from __future__ import annotations

import errno
import itertools
import math
import multiprocessing
import random
import time

import numpy as np
import pytest

import ls_payloads as ls
from label_sync.engine import SyncService
from label_sync.records import MalformedEvent, SyncRejected, annotation_record
from pose6d.dataset import SYNCED, Dataset, ObjectKey, read_record
from pose6d.inout import load_npz

CAR0, CAR1, BAG = "car/img_a_1_0", "car/img_a_1_1", "punching_bag/bag_2_0"


@pytest.fixture
def store_url():
    return None  # the default: annotations_new/.sync.sqlite3 under the dataset root


@pytest.fixture
def service(tiny_dataset, store_url):
    svc = SyncService(tiny_dataset, store_url)
    yield svc
    svc.close()


def synced(dataset: Dataset, key: str) -> dict | None:
    path = dataset.record_path(ObjectKey.parse(key), SYNCED)
    return load_npz(path) if path.exists() else None


def last_journal(service: SyncService) -> dict:
    return service.journal(1)[0]


# --- create / update / record content ---


def test_create_writes_record_in_original_format(service, tiny_dataset):
    initial_bytes = tiny_dataset.record_path(ObjectKey.parse(CAR1)).read_bytes()
    result = ls.pose_result(azimuth=-150, elevation=20.5, theta=-7, distance=6.5, px=171.5, py=99,
                            quality="partially visible", dense="yes", cad="3")
    summary = service.handle_event(ls.created(11, 2, CAR1, 10, result, user=5, viewport=500))
    assert summary["status"] == "applied" and summary["written"] == [CAR1]
    rec = synced(tiny_dataset, CAR1)
    assert rec["azimuth"] == pytest.approx(math.radians(-150))
    assert rec["elevation"] == pytest.approx(math.radians(20.5))
    assert rec["theta"] == pytest.approx(math.radians(-7))
    assert (rec["distance"], rec["px"], rec["py"]) == (6.5, 171.5, 99.0)
    assert rec["cad_index"] == 3 and rec["viewport"] == 500.0
    assert rec["object_status"] == "status_partially" and rec["dense"] == "dense_yes"
    assert rec["annotator"] == "5"
    assert (rec["ls_annotation_id"], rec["ls_task_id"], rec["ls_project_id"]) == (11, 2, 1)
    assert rec["updated_at"] == "2025-03-01T12:00:10.000000+00:00"
    np.testing.assert_array_equal(rec["bbox"], [100, 80, 220, 160])
    assert (rec["width"], rec["height"]) == (320, 240)
    assert tiny_dataset.record_path(ObjectKey.parse(CAR1)).read_bytes() == initial_bytes
    assert read_record(tiny_dataset.record_path(ObjectKey.parse(CAR1), SYNCED)).cad_index == 3


def test_annotator_email_and_cad_fallback(service, tiny_dataset):
    """An expanded completed_by gives the email; no cad choice keeps the task's cad index."""
    result = ls.pose_result(cad=None)
    service.handle_event(ls.created(12, 3, BAG, 5, result, user={"id": 9, "email": "a@x.org"}))
    rec = synced(tiny_dataset, BAG)
    assert rec["annotator"] == "a@x.org" and rec["cad_index"] == 1


def test_pure_annotation_record(tiny_dataset):
    key = ObjectKey.parse(CAR0)
    event = ls.created(1, 1, CAR0, 0, ls.pose_result(azimuth=90, quality="bad quality - no object"))
    record = annotation_record(event["annotation"], event["task"], tiny_dataset.read(key),
                               tiny_dataset)
    assert record.pose.azimuth == pytest.approx(math.pi / 2)
    assert record.extra["object_status"] == "status_bad"
    bad = dict(event["annotation"], result=ls.pose_result(dense=None))
    with pytest.raises(SyncRejected, match="dense"):
        annotation_record(bad, event["task"], tiny_dataset.read(key), tiny_dataset)


def test_update_newer_replaces(service, tiny_dataset):
    service.handle_event(ls.created(1, 1, CAR0, 0, ls.pose_result(azimuth=10)))
    summary = service.handle_event(ls.updated(1, 1, CAR0, 5, ls.pose_result(azimuth=20)))
    assert summary["status"] == "applied"
    assert synced(tiny_dataset, CAR0)["azimuth"] == pytest.approx(math.radians(20))


def test_replay_changes_nothing(service, tiny_dataset):
    event = ls.created(1, 1, CAR0, 0)
    service.handle_event(event)
    path = tiny_dataset.record_path(ObjectKey.parse(CAR0), SYNCED)
    before = (path.stat().st_mtime_ns, path.stat().st_ino, path.read_bytes())
    time.sleep(0.01)
    assert service.handle_event(event)["status"] == "duplicate"
    assert service.handle_event(ls.updated(1, 1, CAR0, 0))["status"] == "duplicate"
    assert (path.stat().st_mtime_ns, path.stat().st_ino, path.read_bytes()) == before


def test_late_older_update_never_overwrites(service, tiny_dataset):
    service.handle_event(ls.updated(1, 1, CAR0, 20, ls.pose_result(azimuth=20)))
    summary = service.handle_event(ls.created(1, 1, CAR0, 10, ls.pose_result(azimuth=10)))
    assert summary["status"] == "stale" and summary["written"] == []
    assert synced(tiny_dataset, CAR0)["azimuth"] == pytest.approx(math.radians(20))


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_newest_annotation_of_object_wins_in_any_order(tiny_dataset, store_url, order):
    events = [ls.created(1, 1, CAR0, 10, ls.pose_result(azimuth=10), user=1),
              ls.created(2, 1, CAR0, 30, ls.pose_result(azimuth=30), user=2),
              ls.updated(1, 1, CAR0, 20, ls.pose_result(azimuth=20), user=1)]
    service = SyncService(tiny_dataset, store_url)
    try:
        for i in order:
            service.handle_event(events[i])
    finally:
        service.close()
    rec = synced(tiny_dataset, CAR0)
    assert rec["annotator"] == "2" and rec["azimuth"] == pytest.approx(math.radians(30))


# --- deletions and skips ---


def test_delete_reverts_then_removes(service, tiny_dataset):
    service.handle_event(ls.created(1, 1, CAR0, 10, ls.pose_result(azimuth=10)))
    service.handle_event(ls.created(2, 1, CAR0, 20, ls.pose_result(azimuth=20)))
    service.handle_event(ls.created(3, 2, CAR1, 30, ls.pose_result(cad="3")))
    summary = service.handle_event(ls.deleted(2))
    assert summary["status"] == "applied" and summary["written"] == [CAR0]
    rec = synced(tiny_dataset, CAR0)
    assert rec["ls_annotation_id"] == 1 and rec["azimuth"] == pytest.approx(math.radians(10))
    assert service.handle_event(ls.deleted(2))["status"] == "duplicate"
    summary = service.handle_event(ls.deleted(1, 3))  # the data manager deletes several at once
    assert sorted(summary["removed"]) == [CAR0, CAR1]
    assert synced(tiny_dataset, CAR0) is None and synced(tiny_dataset, CAR1) is None
    assert tiny_dataset.record_path(ObjectKey.parse(CAR0)).exists()  # initial kept


def test_delete_before_create_wins(service, tiny_dataset):
    service.handle_event(ls.deleted(5))
    assert service.handle_event(ls.created(5, 1, CAR0, 10))["status"] == "stale"
    assert synced(tiny_dataset, CAR0) is None


def test_tasks_deleted_removes_their_annotations(service, tiny_dataset):
    service.handle_event(ls.created(1, 1, CAR0, 10))
    assert service.handle_event(ls.tasks_deleted(1))["removed"] == [CAR0]


def test_skipped_annotation_never_becomes_record(service, tiny_dataset):
    skip = ls.created(9, 3, BAG, 5, [], was_cancelled=True)
    assert service.handle_event(skip)["status"] == "ignored"
    assert synced(tiny_dataset, BAG) is None
    service.handle_event(ls.created(1, 3, BAG, 10, ls.pose_result(azimuth=10)))
    newer_skip = ls.created(2, 3, BAG, 20, ls.pose_result(azimuth=99), was_cancelled=True)
    assert service.handle_event(newer_skip)["status"] == "ignored"
    assert synced(tiny_dataset, BAG)["ls_annotation_id"] == 1


# --- refusals ---

INVALID = {
    "missing quality": dict(result=ls.pose_result(quality=None)),
    "missing dense": dict(result=ls.pose_result(dense=None)),
    "unknown quality": dict(result=ls.pose_result(quality="great")),
    "missing number": dict(result=ls.pose_result(px=None)),
    "NaN": dict(result=ls.pose_result(elevation=float("nan"))),
    "NaN text": dict(result=ls.pose_result(theta="NaN")),
    "distance 0": dict(result=ls.pose_result(distance=0)),
    "distance < 0": dict(result=ls.pose_result(distance=-2)),
    "unknown cad": dict(result=ls.pose_result(cad="2")),  # car has 01 and 03 only
    "cad not a number": dict(result=ls.pose_result(cad="sedan")),
    "path traversal": dict(key="../../etc/passwd_0"),
    "traversal in name": dict(key="car/.._0"),
    "unknown object": dict(key="car/nothing_0"),
    "no k": dict(key="car/img_a_1"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_annotation_is_refused_and_journaled(service, tiny_dataset, case):
    spec = INVALID[case]
    event = ls.created(1, 1, spec.get("key", CAR0), 10, spec.get("result"))
    with pytest.raises(SyncRejected) as info:
        service.handle_event(event)
    assert info.value.reason and info.value.summary["status"] == "rejected"
    assert not list((tiny_dataset.root / SYNCED).rglob("*.npz"))
    entry = last_journal(service)
    assert entry["status"] == "rejected" and entry["reason"] == info.value.reason
    with pytest.raises(SyncRejected):  # a replay is refused again
        service.handle_event(event)


def test_invalid_update_keeps_previous_record(service, tiny_dataset):
    service.handle_event(ls.created(1, 1, CAR0, 10, ls.pose_result(azimuth=10)))
    with pytest.raises(SyncRejected, match="distance"):
        service.handle_event(ls.updated(1, 1, CAR0, 20, ls.pose_result(distance=0)))
    assert synced(tiny_dataset, CAR0)["azimuth"] == pytest.approx(math.radians(10))


@pytest.mark.parametrize("payload", [
    [], "ANNOTATION_CREATED", {}, {"action": "ANNOTATION_CREATED"},
    {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "task": {"id": 1}},
    {"action": "ANNOTATIONS_DELETED", "annotations": {"id": 1}},
    {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": "1"}]},
], ids=lambda p: str(p)[:40])
def test_malformed_payload(service, payload):
    with pytest.raises(MalformedEvent):
        service.handle_event(payload)
    assert last_journal(service)["reason"].startswith("malformed")


def test_malformed_updated_at(service):
    event = ls.created(1, 1, CAR0, 10)
    event["annotation"]["updated_at"] = "yesterday"
    with pytest.raises(MalformedEvent, match="updated_at"):
        service.handle_event(event)


def test_other_actions_are_ignored(service):
    assert service.handle_event({"action": "PROJECT_UPDATED", "project": ls.project()})[
        "status"] == "ignored"


# --- failures and retry ---


def test_failed_write_is_kept_and_retried(service, tiny_dataset, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Dataset, "write", disk_full)
    summary = service.handle_event(ls.created(1, 1, CAR0, 10))
    assert summary["status"] == "failed" and "No space" in summary["reason"]
    assert synced(tiny_dataset, CAR0) is None
    assert service.stats()["events"] == {"failed": 1}
    assert service.retry_failed() == 0  # still failing: kept
    monkeypatch.undo()
    assert service.retry_failed() == 1
    assert synced(tiny_dataset, CAR0)["ls_annotation_id"] == 1
    assert service.stats()["events"] == {"applied": 1}
    assert last_journal(service)["attempts"] == 3
    assert service.retry_failed() == 0


def test_failed_removal_is_retried(service, tiny_dataset, monkeypatch):
    service.handle_event(ls.created(1, 1, CAR0, 10))
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Dataset, "remove", read_only)
    assert service.handle_event(ls.deleted(1))["status"] == "failed"
    assert synced(tiny_dataset, CAR0) is not None  # store rolled back with the file
    monkeypatch.undo()
    assert service.retry_failed() == 1 and synced(tiny_dataset, CAR0) is None


def test_apply_annotation_and_stats(service, tiny_dataset):
    event = ls.created(4, 2, CAR1, 10, ls.pose_result(cad="3"))
    assert service.apply_annotation(event["annotation"], event["task"])["written"] == [CAR1]
    assert service.apply_annotation(event["annotation"], event["task"])["status"] == "duplicate"
    stats = service.stats()
    assert stats["events"] == {"applied": 1, "duplicate": 1} and stats["annotation_versions"] == 1


def test_bulk_created(service, tiny_dataset):
    a = ls.created(1, 1, CAR0, 10)
    b = ls.created(2, 3, BAG, 10)
    bulk = {"action": "ANNOTATIONS_CREATED", "annotation": [a["annotation"], b["annotation"]],
            "task": [a["task"], b["task"]], "project": ls.project()}
    assert sorted(service.handle_event(bulk)["written"]) == [CAR0, BAG]


# --- several backend processes at once ---

N_UPDATES, N_PROCS = 120, 4


def _concurrency_events() -> list[dict]:
    """Updates of one object by two annotations, 0.5 s apart, azimuth = index (to identify)."""
    return [ls.updated(1 + i % 2, 1, CAR0, 0.5 * i, ls.pose_result(azimuth=i, cad="3"), user=i % 2)
            for i in range(N_UPDATES)]


def service_store(store_url) -> str:
    return "postgresql" if store_url and store_url.startswith("postgres") else "sqlite"


def _worker(root: str, store_url, events: list[dict], start, errors) -> None:
    service = SyncService(Dataset(root), store_url)
    start.wait()
    try:
        for event in events:
            service.handle_event(event)
    except Exception as exc:  # reported to the parent, which fails the test
        errors.put(repr(exc))
    finally:
        service.close()


def test_concurrent_replicas_converge_to_newest(tiny_dataset, store_url, capsys):
    SyncService(tiny_dataset, store_url).close()  # schema first, as a deployment would
    events = _concurrency_events()
    sent = events + events  # every event twice: replicas also race on duplicates
    random.Random(1).shuffle(sent)
    ctx = multiprocessing.get_context("fork")
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tiny_dataset.root), store_url,
                                               sent[i::N_PROCS], start, errors))
             for i in range(N_PROCS)]
    for proc in procs:
        proc.start()
    path = tiny_dataset.record_path(ObjectKey.parse(CAR0), SYNCED)
    seen, reads, t0 = [], 0, time.perf_counter()
    start.set()
    while any(p.is_alive() for p in procs):
        if seen or path.exists():  # once written, the file is only ever replaced atomically
            seen.append(read_record(path).extra["updated_at"])  # DataError if half-written
            reads += 1
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    assert errors.empty(), errors.get()
    with capsys.disabled():
        print(f"\n[sync {service_store(store_url)}] {len(sent)} events by {N_PROCS} processes in "
              f"{elapsed:.2f} s: {len(sent) / elapsed:.0f} events/s, {reads} reads all parsed")
    assert seen == sorted(seen), "the synced record went back to an older update"
    newest = events[-1]
    expected = annotation_record(newest["annotation"], newest["task"],
                                 tiny_dataset.read(ObjectKey.parse(CAR0)), tiny_dataset)
    final = read_record(path)
    assert final.extra["updated_at"] == expected.extra["updated_at"]
    assert final.extra["ls_annotation_id"] == 2 and final.cad_index == 3
    assert final.pose == expected.pose
    service = SyncService(tiny_dataset, store_url)
    stats = service.stats()
    service.close()
    assert sum(stats["events"].values()) == len(sent) and "failed" not in stats["events"]
    assert stats["events"]["duplicate"] == N_UPDATES and stats["annotation_versions"] == N_UPDATES


def test_unreadable_initial_record_is_a_failure_to_retry(tiny_dataset, tiny_keys, store_url, monkeypatch):
    """An initial record that exists but cannot be read right now (an I/O error on NFS) is not an
    unknown object: the event fails (kept for retry) instead of being refused for good."""
    import pathlib

    service = SyncService(tiny_dataset, store_url)
    path = tiny_dataset.record_path(tiny_keys[0])
    real_read_bytes = pathlib.Path.read_bytes

    def flaky(self):
        if self == path:
            raise OSError(errno.EIO, "Input/output error")
        return real_read_bytes(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", flaky)
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    summary = service.handle_event(ls.created(71, 1, str(tiny_keys[0]), updated=1, result=ls.pose_result()))
    assert summary["status"] == "failed", summary
    monkeypatch.undo()
    assert service.retry_failed() == 1
    assert tiny_dataset.read_optional(tiny_keys[0], SYNCED) is not None
    service.close()


def test_a_skip_is_kept_as_data_not_inferred_from_text(service, tiny_dataset):
    """A skipped annotation is a flagged version with its annotator, whatever the journal says:
    exports read the flag, so clearing the journal (or rewording messages) changes nothing."""
    from ls_admin.export_source import store_labels

    summary = service.handle_event(ls.created(14, 3, BAG, 12, [], user=8, was_cancelled=True))
    assert summary["status"] == "ignored" and summary["written"] == []
    (version,) = service.versions()
    assert (version.skipped, version.valid, version.annotator) == (True, False, "8")
    with service.store.transaction() as tx:
        tx.run("DELETE FROM pose6d_sync_journal")
        tx.run("UPDATE pose6d_sync_version SET reason = 'reworded'")
    (label,) = store_labels(tiny_dataset, service.store.url)
    assert (str(label.key), label.skipped, label.annotator) == (BAG, True, "8")


def test_a_store_made_before_the_skip_column_is_migrated(tiny_dataset, tmp_path):
    """Stores written by the first version had no skipped / annotator columns: opening one adds
    them, and its skips (then only a reason text) become flagged."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE pose6d_sync_version (
        annotation_id BIGINT NOT NULL, updated_us BIGINT NOT NULL, content_hash TEXT NOT NULL,
        object_key TEXT NOT NULL, task_id BIGINT, project_id BIGINT, updated_at TEXT NOT NULL,
        valid INTEGER NOT NULL, reason TEXT, record_json TEXT, deleted INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL, PRIMARY KEY (annotation_id, updated_us, content_hash))""")
    conn.execute("INSERT INTO pose6d_sync_version VALUES (5, 1, 'h', ?, 3, 1, "
                 "'2025-01-01T00:00:00+00:00', 0, 'annotation was skipped (was_cancelled)', "
                 "NULL, 0, 'x')", (BAG,))
    conn.execute("INSERT INTO pose6d_sync_version VALUES (6, 1, 'h', ?, 4, 1, "
                 "'2025-01-01T00:00:00+00:00', 0, 'missing quality choice', NULL, 0, 'x')", (CAR0,))
    conn.commit()
    conn.close()
    service = SyncService(tiny_dataset, str(path))
    try:
        flags = {v.annotation_id: v.skipped for v in service.versions()}
    finally:
        service.close()
    assert flags == {5: True, 6: False}
