"""Every sync test of test_sync.py again, with the store in a real PostgreSQL server.

tests/postgres_server.py starts a throwaway cluster (initdb in a temp dir, loopback port) once
per session and gives each test a fresh database. Missing server binaries FAIL these tests.
"""
from __future__ import annotations

import pytest

from test_sync import *  # noqa: F401,F403  (the tests, collected here a second time)


@pytest.fixture
def store_url(postgres_url):  # overrides test_sync's SQLite default
    return postgres_url


def test_store_is_postgres(tiny_dataset, store_url):
    from label_sync.engine import SyncService

    service = SyncService(tiny_dataset, store_url)
    try:
        assert service.store.dialect.name == "postgresql"
        assert not (tiny_dataset.root / "annotations_new/.sync.sqlite3").exists()
    finally:
        service.close()


def test_missing_server_binaries_are_reported(monkeypatch):
    import postgres_server as pg

    monkeypatch.setenv("POSE6D_PG_BIN", "/nonexistent")
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pg.shutil, "which", lambda name: None)
    with pytest.raises(pg.PostgresMissing, match="apt-get install postgresql"):
        pg.find_pg_bin()


def test_interactive_sessions_in_postgres(tiny_dataset, tiny_keys, store_url):
    """Live refinement's shared session state works on PostgreSQL: two workers, one chain."""
    from backend_helpers import command_context, interactive_body, make_client, numbers_of, task_for

    worker_a, worker_b = (make_client(tiny_dataset, sync_store=store_url) for _ in range(2))
    task = task_for(tiny_dataset, tiny_keys[0], 5)
    numbers = {k: round(v, 2) for k, v in tiny_dataset.read(tiny_keys[0]).pose.as_degrees().items()}
    res = worker_a.post("/predict", json=interactive_body(task, command_context(numbers, 1, "d++")))
    farther = numbers_of(res.json["results"][0]["result"])
    assert farther["distance"] == numbers["distance"] + 1.0
    res = worker_b.post("/predict", json=interactive_body(task, command_context(farther, 1, "u")))
    assert numbers_of(res.json["results"][0]["result"]) == numbers
    app = worker_a.application.extensions["pose6d_model"]
    assert app.sync.store.dialect.name == "postgresql"


def test_sync_survives_a_postgres_restart(tiny_dataset, tiny_keys, store_url):
    """Connections that PostgreSQL dropped (a restart, a failover) are replaced, not kept broken."""
    import psycopg2

    import ls_payloads as ls
    from label_sync.engine import SyncService
    from pose6d.dataset import SYNCED

    service = SyncService(tiny_dataset, store_url)
    try:
        service.handle_event(ls.created(61, 1, str(tiny_keys[0]), updated=1, result=ls.pose_result()))
        admin = psycopg2.connect(store_url)
        admin.autocommit = True
        with admin.cursor() as cur:  # what a server restart does to every open connection
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        admin.close()
        summary = service.handle_event(ls.created(62, 2, str(tiny_keys[1]), updated=2,
                                                  result=ls.pose_result(cad="3")))
        assert summary["status"] == "applied", summary
        assert tiny_dataset.read_optional(tiny_keys[1], SYNCED) is not None
    finally:
        service.close()
