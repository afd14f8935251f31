"""Every sync test of test_sync.py again, with the store in a real PostgreSQL server.

tests/postgres_server.py starts a throwaway cluster (initdb in a temp dir, loopback port) once
per session and gives each test a fresh database. Missing server binaries FAIL these tests.
"""
from __future__ import annotations

import pytest

from postgres_server import postgres_server, postgres_url  # noqa: F401  (fixtures)
from test_sync import *  # noqa: F401,F403  (the tests, collected here a second time)


@pytest.fixture
def store_url(postgres_url):  # noqa: F811  (overrides test_sync's SQLite default)
    return postgres_url


def test_store_is_postgres(tiny_dataset, store_url):
    from ml_backend.sync import SyncService

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
