"""Where live refinement keeps each task's chain of poses shown: a table of its own in the
store (the sync's store by default), so that every gunicorn worker and every replica sees the
same chain (a smart-tool call carries no Numbers and may reach another worker than the command
before it), or in this process while the store fails.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from typing import Callable, Iterator

from label_sync.database import Database, Tx, utc_now
from pose6d.camera import InvalidPoseError, Pose

log = logging.getLogger("ml_backend.refinement")
MAX_MEMORY_CHAINS = 20000
LOCK_CHAIN = 101  # lock space (the sync's own spaces are small numbers)


class RefinementStore(Database):
    """The chains of poses shown, one row per chain."""

    schema = (
        """CREATE TABLE IF NOT EXISTS pose6d_refinement (
            chain_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, states TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS pose6d_refinement_task ON pose6d_refinement (task_id)",
    )


def load_chain(tx: Tx, chain_id: str) -> str | None:
    rows = tx.run("SELECT states FROM pose6d_refinement WHERE chain_id = ?", (chain_id,))
    return rows[0][0] if rows else None


def save_chain(tx: Tx, chain_id: str, task_id: str, states: str) -> None:
    tx.run("INSERT INTO pose6d_refinement (chain_id, task_id, states, updated_at) "
           "VALUES (?, ?, ?, ?) ON CONFLICT (chain_id) DO UPDATE SET states = excluded.states, "
           "updated_at = excluded.updated_at", (chain_id, task_id, states, utc_now()))


def delete_task_chains(tx: Tx, task_id: str) -> None:
    tx.run("DELETE FROM pose6d_refinement WHERE task_id = ?", (task_id,))


def states_to_json(states: list) -> str:
    """[State] -> JSON text: poses in radians plus viewport, focal and CAD index."""
    return json.dumps([dict(s.pose.as_radians(), viewport=s.pose.viewport, focal=s.pose.focal,
                            cad=s.cad_index) for s in states], separators=(",", ":"))


def states_from_json(text: str | None, make_state: Callable) -> list:
    """JSON text -> [State]; entries that are not valid poses are dropped."""
    out = []
    for item in json.loads(text) if text else []:
        try:
            out.append(make_state(Pose.from_mapping(item, degrees=False), int(item["cad"])))
        except (InvalidPoseError, KeyError, TypeError, ValueError):
            continue
    return out


class Chains:
    """``open(task_id)`` yields the task's list of States; changes are saved on exit.

    One task's calls run one at a time: a transaction with a per-task lock in the store
    (SQLite: the write lock; PostgreSQL: an advisory lock), or a per-task lock in memory while
    the store cannot be reached (tried again after STORE_RETRY_S).
    """

    STORE_RETRY_S = 30.0

    def __init__(self, store_factory: Callable[[], Database], make_state: Callable):
        self._store_factory = store_factory
        self._make_state = make_state
        self._memory: collections.OrderedDict[str, list] = collections.OrderedDict()
        self._locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._store_failed_at: float | None = None

    @contextlib.contextmanager
    def open(self, task_id: str) -> Iterator[list]:
        with contextlib.ExitStack() as stack:
            tx = self._begin(stack, task_id)
            if tx is None:
                states = stack.enter_context(self._memory_chain(task_id))
                yield states
                return
            states = states_from_json(load_chain(tx, task_id), self._make_state)
            before = states_to_json(states)
            yield states
            if states_to_json(states) != before:
                save_chain(tx, task_id, task_id, states_to_json(states))

    def forget(self, task_id: str) -> None:
        """Drop a task's chains (its annotation was submitted: the next annotator starts afresh)."""
        with self._guard:
            self._memory.pop(task_id, None)
        with contextlib.ExitStack() as stack:
            tx = self._begin(stack, task_id)
            if tx is not None:
                delete_task_chains(tx, task_id)

    def _begin(self, stack: contextlib.ExitStack, task_id: str) -> Tx | None:
        """A store transaction holding the task's lock, or None (then memory is used)."""
        if self._store_failed_at is not None \
                and time.monotonic() - self._store_failed_at < self.STORE_RETRY_S:
            return None
        try:
            tx = stack.enter_context(self._store_factory().transaction())
            tx.lock(LOCK_CHAIN, task_id)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep refining in memory
            log.warning("refinement chains kept in this process for now: the store failed: %s",
                        exc)
            self._store_failed_at = time.monotonic()
            stack.close()
            return None
        self._store_failed_at = None
        return tx

    @contextlib.contextmanager
    def _memory_chain(self, task_id: str) -> Iterator[list]:
        with self._guard:
            lock = self._locks[task_id]
        with lock:
            with self._guard:
                states = self._memory.pop(task_id, [])
                self._memory[task_id] = states
                while len(self._memory) > MAX_MEMORY_CHAINS:
                    old, _ = self._memory.popitem(last=False)
                    self._locks.pop(old, None)
            yield states
