"""The sync store: every annotation version seen, deleted annotations and the event journal.

All of the sync's SQL is here (``SyncTx``); the engine (engine.py), reconcile and the exports
read and write the store only through it. Writers serialise per annotation and per object with
locks taken in that order (annotation, then objects sorted), so two replicas cannot deadlock.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zlib
from pathlib import Path
from typing import Iterable

from pose6d.dataset import SYNCED
from pose6d.defaults import ENV_PREFIX
from label_sync.database import Database, Tx, canonical_json, is_postgres_url, sqlite_path, utc_now
from label_sync import quality_store

# Where the store is unless configured: a SQLite file beside the synced records.
DEFAULT_STORE = f"{SYNCED}/.sync.sqlite3"
STORE_ENV = ENV_PREFIX + "SYNC_STORE"  # the backend's --sync-store, read by the admin tools too

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pose6d_sync_version (
        annotation_id BIGINT NOT NULL, updated_us BIGINT NOT NULL, content_hash TEXT NOT NULL,
        object_key TEXT NOT NULL, task_id BIGINT, project_id BIGINT, updated_at TEXT NOT NULL,
        valid INTEGER NOT NULL, reason TEXT, record_json TEXT, deleted INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL, skipped INTEGER NOT NULL DEFAULT 0, annotator TEXT,
        PRIMARY KEY (annotation_id, updated_us, content_hash))""",
    "CREATE INDEX IF NOT EXISTS pose6d_sync_version_object ON pose6d_sync_version (object_key)",
    "CREATE INDEX IF NOT EXISTS pose6d_sync_version_task ON pose6d_sync_version (task_id)",
    """CREATE TABLE IF NOT EXISTS pose6d_sync_deleted (
        annotation_id BIGINT PRIMARY KEY, deleted_at TEXT NOT NULL, project_id BIGINT)""",
    """CREATE TABLE IF NOT EXISTS pose6d_sync_journal (
        id {serial} PRIMARY KEY, received_at TEXT NOT NULL, action TEXT NOT NULL,
        payload TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL,
        finished_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS pose6d_sync_journal_status ON pose6d_sync_journal (status)",
    # The events' bodies (journaled()'s JSON, zlib-compressed), apart from the journal rows:
    # finishing an event updates only its small row (PostgreSQL copies a row on UPDATE), and
    # compaction drops bodies without touching the outcomes. The journal's own payload column
    # holds '' for new events (older stores kept the text there).
    """CREATE TABLE IF NOT EXISTS pose6d_sync_payload (
        event_id BIGINT PRIMARY KEY, body {blob} NOT NULL)""",
)
LOCK_ANNOTATION, LOCK_OBJECT = 1, 2
VERSION_COLUMNS = ("annotation_id, updated_us, content_hash, object_key, task_id, project_id, "
                   "updated_at, valid, reason, record_json, skipped, annotator")


def default_store_url(data_root: str | Path, configured: str | None = None) -> str:
    """The store URL: ``configured``, else $POSE6D_SYNC_STORE, else the data root's SQLite file."""
    return configured or os.environ.get(STORE_ENV) or str(Path(data_root) / DEFAULT_STORE)


def store_exists(url: str) -> bool:
    """False only for a SQLite file that is not there (a PostgreSQL URL is assumed to exist)."""
    return is_postgres_url(url) or sqlite_path(url).is_file()


@dataclasses.dataclass(frozen=True)
class Version:
    """One version of one annotation as the sync saw it.

    record: the record's npz fields (JSON-able) when ``valid``. skipped: the annotator skipped
    the task (Label Studio's was_cancelled): kept, never written to the dataset.
    """

    annotation_id: int
    updated_us: int  # updated_at as microseconds since the epoch: the ordering key
    content_hash: str
    object_key: str
    task_id: int | None
    project_id: int | None
    updated_at: str
    valid: bool
    reason: str | None
    record: dict | None
    skipped: bool = False
    annotator: str | None = None

    @property
    def order(self) -> tuple[int, int, str]:
        """Newest wins; ties broken deterministically so replicas agree whatever the order."""
        return self.updated_us, self.annotation_id, self.content_hash

    @classmethod
    def from_row(cls, r: tuple) -> "Version":
        return cls(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8],
                   None if r[9] is None else json.loads(r[9]), bool(r[10]), r[11])


class SyncTx(Tx):
    """The sync store's queries, inside one transaction."""

    def lock_annotation(self, annotation_id: int) -> None:
        self.lock(LOCK_ANNOTATION, str(annotation_id))

    def lock_objects(self, object_keys: Iterable[str]) -> None:
        for key in sorted(set(object_keys)):  # sorted: a fixed order between replicas
            self.lock(LOCK_OBJECT, key)

    # --- annotation versions ---

    def insert_version(self, v: Version) -> None:
        self.run(f"INSERT INTO pose6d_sync_version ({VERSION_COLUMNS}, received_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (v.annotation_id, v.updated_us, v.content_hash, v.object_key, v.task_id,
                  v.project_id, v.updated_at, int(v.valid), v.reason,
                  None if v.record is None else canonical_json(v.record), int(v.skipped),
                  v.annotator, utc_now()))

    def version_keys(self, annotation_id: int) -> list[tuple[int, str]]:
        """(updated_us, content_hash) of every stored version of one annotation."""
        return [tuple(r) for r in self.run(
            "SELECT updated_us, content_hash FROM pose6d_sync_version WHERE annotation_id = ?",
            (annotation_id,))]

    def winner(self, object_key: str) -> Version | None:
        """The newest valid version of a not-deleted annotation of this object, or None."""
        rows = self.run(
            f"SELECT {VERSION_COLUMNS} FROM pose6d_sync_version "
            "WHERE object_key = ? AND valid = 1 AND deleted = 0 "
            "ORDER BY updated_us DESC, annotation_id DESC, content_hash DESC LIMIT 1",
            (object_key,))
        return Version.from_row(rows[0]) if rows else None

    def live_versions(self, project_id: int | None = None) -> list[Version]:
        """Every version of every not-deleted annotation (of one project when given)."""
        where, params = ("AND project_id = ?", (project_id,)) if project_id is not None else ("", ())
        return [Version.from_row(r) for r in self.run(
            f"SELECT {VERSION_COLUMNS} FROM pose6d_sync_version WHERE deleted = 0 {where}", params)]

    def project_object_keys(self, project_id: int) -> set[str]:
        """Objects any version of the project's annotations belongs to (deleted ones included)."""
        return {r[0] for r in self.run("SELECT DISTINCT object_key FROM pose6d_sync_version "
                                       "WHERE project_id = ?", (project_id,))}

    def object_keys_of(self, annotation_id: int) -> list[str]:
        return sorted(r[0] for r in self.run(
            "SELECT DISTINCT object_key FROM pose6d_sync_version WHERE annotation_id = ?",
            (annotation_id,)))

    def annotations_of_task(self, task_id: int) -> list[int]:
        return sorted(int(r[0]) for r in self.run(
            "SELECT DISTINCT annotation_id FROM pose6d_sync_version WHERE task_id = ?",
            (task_id,)))

    def annotation_projects(self, annotation_id: int) -> set[int | None]:
        """The project ids the stored versions of one annotation carry (empty: none stored)."""
        return {None if r[0] is None else int(r[0]) for r in self.run(
            "SELECT DISTINCT project_id FROM pose6d_sync_version WHERE annotation_id = ?",
            (annotation_id,))}

    def is_deleted(self, annotation_id: int, project_id: int | None = None) -> bool:
        """A tombstone for the annotation (in ``project_id`` when given; a tombstone made before
        tombstones named their project counts for every project)."""
        if project_id is None:
            return bool(self.run("SELECT 1 FROM pose6d_sync_deleted WHERE annotation_id = ?",
                                 (annotation_id,)))
        return bool(self.run("SELECT 1 FROM pose6d_sync_deleted WHERE annotation_id = ? AND "
                             "(project_id = ? OR project_id IS NULL)", (annotation_id, project_id)))

    def mark_deleted(self, annotation_id: int, project_id: int) -> bool:
        """Tombstone an annotation of ``project_id`` (also before any version arrived): only its
        versions of that project stop counting. True if the tombstone is new."""
        fresh = not self.is_deleted(annotation_id, project_id)
        if not self.is_deleted(annotation_id):
            self.run("INSERT INTO pose6d_sync_deleted (annotation_id, deleted_at, project_id) "
                     "VALUES (?, ?, ?)", (annotation_id, utc_now(), project_id))
        elif fresh:  # a tombstone some other project's event left: this project's deletion
            self.run("UPDATE pose6d_sync_deleted SET project_id = ?, deleted_at = ? "
                     "WHERE annotation_id = ?", (project_id, utc_now(), annotation_id))
        self.run("UPDATE pose6d_sync_version SET deleted = 1 WHERE annotation_id = ? "
                 "AND project_id = ?", (annotation_id, project_id))
        return fresh

    def unmark_deleted(self, annotation_id: int) -> bool:
        """Lift an annotation's tombstone (Label Studio still has it); True if there was one."""
        had = self.is_deleted(annotation_id)
        self.run("DELETE FROM pose6d_sync_deleted WHERE annotation_id = ?", (annotation_id,))
        self.run("UPDATE pose6d_sync_version SET deleted = 0 WHERE annotation_id = ?",
                 (annotation_id,))
        return had

    def deleted_ids(self) -> set[int]:
        """Every tombstoned annotation id."""
        return {int(r[0]) for r in self.run("SELECT annotation_id FROM pose6d_sync_deleted")}

    # --- event journal ---

    def journal_add(self, action: str, payload: str, status: str = "received") -> int:
        rows = self.run("INSERT INTO pose6d_sync_journal (received_at, action, payload, status, "
                        "attempts) VALUES (?, ?, '', ?, 0) RETURNING id",
                        (utc_now(), action, status))
        event_id = int(rows[0][0])
        self.run("INSERT INTO pose6d_sync_payload (event_id, body) VALUES (?, ?)",
                 (event_id, zlib.compress(payload.encode(), 9)))
        return event_id

    def journal_finish(self, event_id: int, status: str, reason: str | None) -> None:
        self.run("UPDATE pose6d_sync_journal SET status = ?, reason = ?, attempts = attempts + 1, "
                 "finished_at = ? WHERE id = ?", (status, reason, utc_now(), event_id))

    def journal_pending(self, stuck_before: str) -> list[tuple[int, str, str]]:
        """(id, action, payload) of failed events and of events left 'received' by a crash."""
        return [(int(r[0]), r[1], _payload(r[2], r[3])) for r in self.run(
            "SELECT j.id, j.action, p.body, j.payload FROM pose6d_sync_journal j "
            "LEFT JOIN pose6d_sync_payload p ON p.event_id = j.id WHERE j.status = 'failed' "
            "OR (j.status = 'received' AND j.received_at < ?) ORDER BY j.id", (stuck_before,))]

    def journal_held(self) -> list[tuple[int, str, str]]:
        """(id, action, payload) of the events held for an annotator not yet qualified."""
        return [(int(r[0]), r[1], _payload(r[2], r[3])) for r in self.run(
            "SELECT j.id, j.action, p.body, j.payload FROM pose6d_sync_journal j "
            "LEFT JOIN pose6d_sync_payload p ON p.event_id = j.id WHERE j.status = 'held' "
            "ORDER BY j.id")]

    def journal_compact(self, finished_before: str) -> int:
        """Drop the payloads of events that finished (any status but failed / received / held) before
        ``finished_before``: nothing retries them. Returns how many events lost theirs."""
        done = ("SELECT id FROM pose6d_sync_journal WHERE finished_at < ? "
                "AND status NOT IN ('failed', 'received', 'held')")
        bodies = self.run(f"DELETE FROM pose6d_sync_payload WHERE event_id IN ({done}) "
                          "RETURNING event_id", (finished_before,))
        old = self.run(f"UPDATE pose6d_sync_journal SET payload = '' WHERE id IN ({done}) "
                       "AND payload <> '' RETURNING id", (finished_before,))
        return len({r[0] for r in bodies} | {r[0] for r in old})

    def journal_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.run(
            "SELECT status, COUNT(*) FROM pose6d_sync_journal GROUP BY status")}

    def journal(self, limit: int = 100) -> list[dict]:
        """The newest journal entries, newest first (for tests and the admin page)."""
        rows = self.run("SELECT j.id, j.received_at, j.action, j.status, j.reason, j.attempts, "
                        "p.body, j.payload FROM pose6d_sync_journal j LEFT JOIN "
                        "pose6d_sync_payload p ON p.event_id = j.id ORDER BY j.id DESC LIMIT ?",
                        (limit,))
        names = ("id", "received_at", "action", "status", "reason", "attempts")
        return [dict(zip(names, r[:6]), payload=_payload(r[6], r[7])) for r in rows]


def _payload(body: bytes | memoryview | None, legacy: str) -> str:
    """An event's journaled JSON: its compressed body, else the journal's own column ('' once
    compacted)."""
    return legacy if body is None else zlib.decompress(bytes(body)).decode()


class SyncStore(Database):
    """The sync's tables in one store (``default_store_url``)."""

    tx_class = SyncTx
    schema = SCHEMA + quality_store.SCHEMA  # quality control's facts decide what a record says

    def migrate(self, tx: Tx) -> None:
        """Stores made before skips and annotators were columns: add them. A skip was then
        recorded only as the reason text the sync wrote for it, read here once."""
        have = tx.columns("pose6d_sync_version")
        if "skipped" not in have:
            tx.run("ALTER TABLE pose6d_sync_version ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0")
            tx.run("UPDATE pose6d_sync_version SET skipped = 1 WHERE valid = 0 "
                   "AND reason LIKE '%was_cancelled%'")
        if "annotator" not in have:
            tx.run("ALTER TABLE pose6d_sync_version ADD COLUMN annotator TEXT")
        if "project_id" not in tx.columns("pose6d_sync_deleted"):  # tombstones before issue 12
            tx.run("ALTER TABLE pose6d_sync_deleted ADD COLUMN project_id BIGINT")
