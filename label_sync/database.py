"""SQL storage shared by every worker and replica: SQLite (a file) or PostgreSQL (a URL).

The SQL is written once with ``?`` placeholders; the PostgreSQL dialect rewrites them to ``%s``.
A ``Database`` creates its schema on open and hands out transactions (one connection per
thread). Writers serialise per object with ``Tx.lock``: SQLite takes the database write lock
(BEGIN IMMEDIATE, waiting up to ``busy_timeout``), PostgreSQL transaction-scoped advisory locks.
Driver errors leave this module as ``StoreFailure`` (pose6d.errors), with the URL redacted.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from pose6d.errors import BadInput, StoreFailure

LOCK_SCHEMA = 0  # lock space of schema changes; stores number their own spaces from 1


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): equal values give equal text and hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def lock_id(text: str) -> int:
    """A signed 32-bit hash for pg_advisory_xact_lock(int, int); collisions only over-serialise."""
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def redact_url(url: str | None) -> str:
    """A store URL fit for messages and logs: any password replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url or "")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path`` URL or a plain path."""
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") - 1:]  # keep the leading "/" of an absolute path
    if url in ("", ":memory:"):
        raise BadInput("the store needs a file (replicas share it), not :memory:")
    return Path(url)


class _SQLite:
    name, param, errors = "sqlite", "?", (sqlite3.Error,)
    serial = "INTEGER"  # an INTEGER PRIMARY KEY is the rowid: auto-assigned
    blob = "BLOB"

    def __init__(self, path: Path, busy_timeout: float):
        self.path, self.busy_timeout = Path(path), busy_timeout

    def connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def begin(self, cur) -> None:
        cur.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write

    def lock(self, cur, space: int, key: int) -> None:
        pass  # BEGIN IMMEDIATE already serialises every writer

    def columns(self, cur, table: str) -> set[str]:
        cur.execute(f"PRAGMA table_info({table})")  # table: a constant name
        return {row[1] for row in cur.fetchall()}


class _Postgres:
    name, param, serial, blob = "postgresql", "%s", "BIGSERIAL", "BYTEA"

    def __init__(self, url: str):
        import psycopg2

        self.url, self.errors, self._psycopg2 = url, (psycopg2.Error,), psycopg2

    def connect(self):
        conn = self._psycopg2.connect(self.url)
        conn.autocommit = True  # explicit BEGIN/COMMIT, the same statements as for SQLite
        return conn

    def begin(self, cur) -> None:
        cur.execute("BEGIN")

    def lock(self, cur, space: int, key: int) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (space, key))

    def columns(self, cur, table: str) -> set[str]:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                    (table,))
        return {row[0] for row in cur.fetchall()}


def open_dialect(url: str, busy_timeout: float = 60.0):
    """``postgresql://...`` / ``postgres://...``, ``sqlite:///path`` or a plain file path."""
    if is_postgres_url(url):
        return _Postgres(url)
    return _SQLite(sqlite_path(url), busy_timeout)


class Tx:
    """One transaction: ``run`` SQL (``?`` placeholders) and take per-key locks."""

    def __init__(self, cur, dialect):
        self.cur, self.dialect = cur, dialect

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.cur.execute(sql.replace("?", self.dialect.param), params)
        return self.cur.fetchall() if self.cur.description else []

    def lock(self, space: int, key: str) -> None:
        """Hold a lock on ``key`` in ``space`` until the transaction ends."""
        self.dialect.lock(self.cur, space, lock_id(key))

    def columns(self, table: str) -> set[str]:
        return self.dialect.columns(self.cur, table)

    def count(self, table: str) -> int:
        return int(self.run(f"SELECT COUNT(*) FROM {table}")[0][0])  # table: a constant name


class Database:
    """Connections (one per thread) and transactions over one store URL.

    schema: CREATE statements (``{serial}`` stands for the dialect's auto-increment type,
    ``{blob}`` for its bytes type), run
    once on open under a lock; ``migrate(tx)`` then brings older tables up to date.
    """

    tx_class: type[Tx] = Tx
    schema: Sequence[str] = ()

    def __init__(self, url: str, busy_timeout: float = 60.0):
        self.url = url
        self.dialect = open_dialect(url, busy_timeout)
        self._local = threading.local()
        self._conns: list = []
        self._conns_lock = threading.Lock()
        with self.transaction() as tx:
            self.dialect.lock(tx.cur, LOCK_SCHEMA, 0)  # concurrent CREATE TABLE races in PostgreSQL
            for statement in self.schema:
                tx.run(statement.format(serial=self.dialect.serial, blob=self.dialect.blob))
            self.migrate(tx)

    def migrate(self, tx: Tx) -> None:
        """Bring tables made by an older version up to date (nothing by default)."""

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.dialect.connect()
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def _failure(self, exc: Exception) -> StoreFailure:
        return StoreFailure(f"the store {redact_url(self.url)} failed: {type(exc).__name__}: "
                            f"{str(exc).strip()[:300]}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """BEGIN ... COMMIT; ROLLBACK on any exception, which propagates (driver errors as
        StoreFailure).

        A connection that broke (a restarted PostgreSQL) is replaced once at BEGIN; one that
        breaks inside a transaction fails that transaction and is replaced at the next BEGIN.
        """
        errors = self.dialect.errors
        try:
            try:
                cur = self._conn().cursor()
                self.dialect.begin(cur)
            except errors:
                self._drop_conn()
                cur = self._conn().cursor()
                self.dialect.begin(cur)
        except (*errors, OSError) as exc:
            raise self._failure(exc) from exc
        try:
            yield self.tx_class(cur, self.dialect)
            cur.execute("COMMIT")
        except errors as exc:
            with contextlib.suppress(*errors):
                cur.execute("ROLLBACK")
            raise self._failure(exc) from exc
        except BaseException:
            with contextlib.suppress(*errors):
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()
