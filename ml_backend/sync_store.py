"""Sync state: every annotation version seen, deleted annotations and an event journal.

SQLite (default, a file) or PostgreSQL (a ``postgresql://`` URL, psycopg2). The SQL is written
once with ``?`` placeholders; the PostgreSQL dialect rewrites them to ``%s``. Transactions that
change an object serialise per object: SQLite takes the database write lock (BEGIN IMMEDIATE,
waiting up to ``busy_timeout``), PostgreSQL takes transaction-scoped advisory locks on a hash of
the annotation id and of the object key (always in that order, so two writers cannot deadlock).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pose6d_sync_version (
        annotation_id BIGINT NOT NULL, updated_us BIGINT NOT NULL, content_hash TEXT NOT NULL,
        object_key TEXT NOT NULL, task_id BIGINT, project_id BIGINT, updated_at TEXT NOT NULL,
        valid INTEGER NOT NULL, reason TEXT, record_json TEXT, deleted INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL,
        PRIMARY KEY (annotation_id, updated_us, content_hash))""",
    "CREATE INDEX IF NOT EXISTS pose6d_sync_version_object ON pose6d_sync_version (object_key)",
    "CREATE INDEX IF NOT EXISTS pose6d_sync_version_task ON pose6d_sync_version (task_id)",
    """CREATE TABLE IF NOT EXISTS pose6d_sync_deleted (
        annotation_id BIGINT PRIMARY KEY, deleted_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pose6d_sync_journal (
        id {serial} PRIMARY KEY, received_at TEXT NOT NULL, action TEXT NOT NULL,
        payload TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL,
        finished_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS pose6d_sync_journal_status ON pose6d_sync_journal (status)",
    # Live refinement: the chain of poses shown per task (for undo and for smart-tool calls,
    # which carry no Numbers), shared by every worker and replica.
    """CREATE TABLE IF NOT EXISTS pose6d_interactive (
        task_id TEXT PRIMARY KEY, states TEXT NOT NULL, updated_at TEXT NOT NULL)""",
)
LOCK_ANNOTATION, LOCK_OBJECT, LOCK_SCHEMA, LOCK_SESSION = 1, 2, 3, 4


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): equal values give equal text and hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def lock_id(text: str) -> int:
    """A signed 32-bit hash for pg_advisory_xact_lock(int, int); collisions only over-serialise."""
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclasses.dataclass(frozen=True)
class Version:
    """One version of one annotation as the sync saw it."""

    annotation_id: int
    updated_us: int  # updated_at as microseconds since the epoch: the ordering key
    content_hash: str
    object_key: str
    task_id: int | None
    project_id: int | None
    updated_at: str
    valid: bool
    reason: str | None
    record: dict | None  # the record's npz fields (JSON-able) when valid

    @property
    def order(self) -> tuple[int, int, str]:
        """Newest wins; ties broken deterministically so replicas agree whatever the order."""
        return self.updated_us, self.annotation_id, self.content_hash


class _SQLite:
    name, param, errors = "sqlite", "?", (sqlite3.Error,)
    serial = "INTEGER"  # an INTEGER PRIMARY KEY is the rowid: auto-assigned

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


class _Postgres:
    name, param, serial = "postgresql", "%s", "BIGSERIAL"

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


class Tx:
    """One transaction: SQL helpers and the store's queries."""

    def __init__(self, cur, dialect):
        self.cur, self.dialect = cur, dialect

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.cur.execute(sql.replace("?", self.dialect.param), params)
        return self.cur.fetchall() if self.cur.description else []

    def lock_annotation(self, annotation_id: int) -> None:
        self.dialect.lock(self.cur, LOCK_ANNOTATION, lock_id(str(annotation_id)))

    def lock_objects(self, object_keys) -> None:
        for key in sorted(set(object_keys)):  # sorted: a fixed order between replicas
            self.dialect.lock(self.cur, LOCK_OBJECT, lock_id(key))

    # --- interactive sessions ---

    def lock_session(self, task_id: str) -> None:
        self.dialect.lock(self.cur, LOCK_SESSION, lock_id(task_id))

    def session_states(self, task_id: str) -> str | None:
        rows = self.run("SELECT states FROM pose6d_interactive WHERE task_id = ?", (task_id,))
        return rows[0][0] if rows else None

    def delete_session(self, task_id: str) -> None:
        self.run("DELETE FROM pose6d_interactive WHERE task_id = ?", (task_id,))

    def save_session(self, task_id: str, states: str) -> None:
        self.run("INSERT INTO pose6d_interactive (task_id, states, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (task_id) DO UPDATE SET states = excluded.states, "
                 "updated_at = excluded.updated_at", (task_id, states, utc_now()))

    # --- annotation versions ---

    def insert_version(self, v: Version) -> None:
        self.run("INSERT INTO pose6d_sync_version (annotation_id, updated_us, content_hash, "
                 "object_key, task_id, project_id, updated_at, valid, reason, record_json, "
                 "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (v.annotation_id, v.updated_us, v.content_hash, v.object_key, v.task_id,
                  v.project_id, v.updated_at, int(v.valid), v.reason,
                  None if v.record is None else canonical_json(v.record), utc_now()))

    def version_keys(self, annotation_id: int) -> list[tuple[int, str]]:
        """(updated_us, content_hash) of every stored version of one annotation."""
        return [tuple(r) for r in self.run(
            "SELECT updated_us, content_hash FROM pose6d_sync_version WHERE annotation_id = ?",
            (annotation_id,))]

    def winner(self, object_key: str) -> Version | None:
        """The newest valid version of a not-deleted annotation of this object, or None."""
        rows = self.run(
            "SELECT annotation_id, updated_us, content_hash, object_key, task_id, project_id, "
            "updated_at, valid, reason, record_json FROM pose6d_sync_version "
            "WHERE object_key = ? AND valid = 1 AND deleted = 0 "
            "ORDER BY updated_us DESC, annotation_id DESC, content_hash DESC LIMIT 1",
            (object_key,))
        if not rows:
            return None
        r = rows[0]
        return Version(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8],
                       json.loads(r[9]))

    def object_keys_of(self, annotation_id: int) -> list[str]:
        return sorted(r[0] for r in self.run(
            "SELECT DISTINCT object_key FROM pose6d_sync_version WHERE annotation_id = ?",
            (annotation_id,)))

    def annotations_of_task(self, task_id: int) -> list[int]:
        return sorted(int(r[0]) for r in self.run(
            "SELECT DISTINCT annotation_id FROM pose6d_sync_version WHERE task_id = ?",
            (task_id,)))

    def is_deleted(self, annotation_id: int) -> bool:
        return bool(self.run("SELECT 1 FROM pose6d_sync_deleted WHERE annotation_id = ?",
                             (annotation_id,)))

    def mark_deleted(self, annotation_id: int) -> bool:
        """Tombstone an annotation (also before any version arrived). True if it is new."""
        fresh = not self.is_deleted(annotation_id)
        if fresh:
            self.run("INSERT INTO pose6d_sync_deleted (annotation_id, deleted_at) VALUES (?, ?)",
                     (annotation_id, utc_now()))
        self.run("UPDATE pose6d_sync_version SET deleted = 1 WHERE annotation_id = ?",
                 (annotation_id,))
        return fresh

    # --- event journal ---

    def journal_add(self, action: str, payload: str, status: str = "received") -> int:
        rows = self.run("INSERT INTO pose6d_sync_journal (received_at, action, payload, status, "
                        "attempts) VALUES (?, ?, ?, ?, 0) RETURNING id",
                        (utc_now(), action, payload, status))
        return int(rows[0][0])

    def journal_finish(self, event_id: int, status: str, reason: str | None) -> None:
        self.run("UPDATE pose6d_sync_journal SET status = ?, reason = ?, attempts = attempts + 1, "
                 "finished_at = ? WHERE id = ?", (status, reason, utc_now(), event_id))

    def journal_pending(self, stuck_before: str) -> list[tuple[int, str, str]]:
        """(id, action, payload) of failed events and of events left 'received' by a crash."""
        return [(int(r[0]), r[1], r[2]) for r in self.run(
            "SELECT id, action, payload FROM pose6d_sync_journal WHERE status = 'failed' "
            "OR (status = 'received' AND received_at < ?) ORDER BY id", (stuck_before,))]

    def journal_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.run(
            "SELECT status, COUNT(*) FROM pose6d_sync_journal GROUP BY status")}

    def journal(self, limit: int = 100) -> list[dict]:
        """The newest journal entries, newest first (for tests and the admin page)."""
        rows = self.run("SELECT id, received_at, action, status, reason, attempts, payload "
                        "FROM pose6d_sync_journal ORDER BY id DESC LIMIT ?", (limit,))
        names = ("id", "received_at", "action", "status", "reason", "attempts", "payload")
        return [dict(zip(names, r)) for r in rows]

    def count(self, table: str) -> int:
        return int(self.run(f"SELECT COUNT(*) FROM {table}")[0][0])  # table: a constant name


def redact_url(url: str | None) -> str:
    """A store URL fit for messages and logs: any password replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url or "")


def open_dialect(url: str, busy_timeout: float = 60.0):
    """``postgresql://...`` / ``postgres://...``, ``sqlite:///path`` or a plain file path."""
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") - 1:]  # keep the leading "/" of an absolute path
    if url in ("", ":memory:"):
        raise ValueError("the sync store needs a file (replicas share it), not :memory:")
    return _SQLite(Path(url), busy_timeout)


class SyncStore:
    """Connections (one per thread) and transactions over one store URL."""

    def __init__(self, url: str, busy_timeout: float = 60.0):
        self.url = url
        self.dialect = open_dialect(url, busy_timeout)
        self.errors: tuple[type[Exception], ...] = self.dialect.errors
        self._local = threading.local()
        self._conns: list = []
        self._conns_lock = threading.Lock()
        with self.transaction() as tx:
            tx.dialect.lock(tx.cur, LOCK_SCHEMA, 0)  # concurrent CREATE TABLE races in PostgreSQL
            for statement in SCHEMA:
                tx.run(statement.format(serial=self.dialect.serial))

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

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """BEGIN ... COMMIT; ROLLBACK on any exception (which propagates).

        A connection that broke (a restarted PostgreSQL) is replaced once at BEGIN; one that
        breaks inside a transaction fails that transaction and is replaced at the next BEGIN.
        """
        try:
            cur = self._conn().cursor()
            self.dialect.begin(cur)
        except self.errors:
            self._drop_conn()
            cur = self._conn().cursor()
            self.dialect.begin(cur)
        try:
            yield Tx(cur, self.dialect)
        except BaseException:
            with contextlib.suppress(*self.errors):
                cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()
