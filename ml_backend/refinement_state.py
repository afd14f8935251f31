"""Where live refinement keeps its chains of poses shown: one chain per annotation being edited
(one annotator's tab on one task), in a table of its own in the store (the sync's store by
default), so that every gunicorn worker and every replica sees the same chains; in this
process while the store fails. Also each annotator's overlay style.

Which chain a call belongs to (docs/label_studio_notes.md, ml_backend/caller.py): the command
box's id, from the call or from the caller's newest draft, is the chain's id. A smart-tool call
that names no annotation (before the caller's first draft autosave) continues the chain that
holds its pin points, else its annotator's newest chain (the user known from their drafts),
else the one chain of no known annotator at work on the task, else a new unnamed one. When two
such chains are (two annotators who opened the task within seconds), or a pin could only go to
another annotator's chain, the call is refused (UnclearCaller): the wrong chain would move
somebody else's pose. An annotation's first named call continues the unnamed chain its tab
made before (pick_chain), so that drawing first and typing later is one chain.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import threading
import time
import uuid
from typing import Callable, Iterator

from label_sync.database import Database, Tx, utc_now
from pose6d.camera import InvalidPoseError, Pose

log = logging.getLogger("ml_backend.refinement")
MAX_MEMORY_CHAINS = 20000
LOCK_TASK = 101  # lock space (the sync's own spaces are small numbers)
# A chain of no known annotator changed this recently may be a tab at work whose draft Label
# Studio has not saved yet; older ones are tabs left behind.
ACTIVE_S = 1800.0
# A submitted annotation's chain with pins is kept under this prefix, out of the chains a call
# can pick: its pin points stay in the annotation, and reopened, its calls take it back
# (Chains.open). One without pins is dropped (its values are in the annotation; kept, every
# chain would stay: up to MAX_HISTORY poses per object).
ENDED = "ended:"


class UnclearCaller(Exception):
    """A call that names neither its annotation nor its annotator, and could be another
    annotator's (refinement answers it with what to do)."""


@dataclasses.dataclass
class ChainRecord:
    """One chain as stored. states: [State] oldest first. style: the overlay style ("" = the
    annotator's or the default). user: the annotator's email when known."""

    chain_id: str
    task_id: str
    user: str | None
    states: list
    style: str = ""
    updated: str = ""
    pins: list = dataclasses.field(default_factory=list)  # ml_backend.pins_step's dicts
    adopted: str = ""  # the unnamed chain this one continues (pick_chain), not stored


class RefinementStore(Database):
    """The chains (one row each) and the annotators' overlay styles."""

    schema = (
        """CREATE TABLE IF NOT EXISTS pose6d_refinement_chain (
            chain_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, annotator TEXT, states TEXT NOT NULL,
            style TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS pose6d_refinement_chain_task "
        "ON pose6d_refinement_chain (task_id)",
        # Pins (issue 21) of each chain: JSON, in a table of their own (older stores gain it).
        """CREATE TABLE IF NOT EXISTS pose6d_refinement_pins (
            chain_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, pins TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS pose6d_refinement_style (
            annotator TEXT PRIMARY KEY, style TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    )


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


class _StoreRows:
    """The chains and styles in the store, inside one transaction."""

    def __init__(self, tx: Tx, make_state: Callable):
        self.tx, self.make_state = tx, make_state

    def chains_of_task(self, task_id: str, ended: bool = False) -> list[ChainRecord]:
        """The task's chains at work, or (``ended``) those of its submitted annotations."""
        rows = self.tx.run("SELECT chain_id, task_id, annotator, states, style, updated_at "
                           "FROM pose6d_refinement_chain WHERE task_id = ?", (task_id,))
        pins = {r[0]: json.loads(r[1]) for r in self.tx.run(
            "SELECT chain_id, pins FROM pose6d_refinement_pins WHERE task_id = ?", (task_id,))}
        return [ChainRecord(r[0], r[1], r[2], states_from_json(r[3], self.make_state), r[4], r[5],
                            pins.get(r[0], [])) for r in rows if r[0].startswith(ENDED) == ended]

    def save(self, chain: ChainRecord) -> None:
        self.tx.run("INSERT INTO pose6d_refinement_chain (chain_id, task_id, annotator, states, "
                    "style, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chain_id) DO UPDATE "
                    "SET annotator = excluded.annotator, states = excluded.states, "
                    "style = excluded.style, updated_at = excluded.updated_at",
                    (chain.chain_id, chain.task_id, chain.user, states_to_json(chain.states),
                     chain.style, utc_now()))
        self.tx.run("INSERT INTO pose6d_refinement_pins (chain_id, task_id, pins, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (chain_id) DO UPDATE SET "
                    "pins = excluded.pins, updated_at = excluded.updated_at",
                    (chain.chain_id, chain.task_id, json.dumps(chain.pins), utc_now()))

    def delete(self, task_id: str, chain_id: str | None) -> None:
        for table in ("pose6d_refinement_chain", "pose6d_refinement_pins"):
            if chain_id is None:
                self.tx.run(f"DELETE FROM {table} WHERE task_id = ?", (task_id,))
            else:
                self.tx.run(f"DELETE FROM {table} WHERE chain_id = ?", (chain_id,))

    def end(self, task_id: str, chain_id: str) -> None:
        """Keep the chain as ended (ENDED + its id; in place of an older ended one) when it
        has pins, else drop it."""
        pinned = any(json.loads(r[0]) for r in self.tx.run(
            "SELECT pins FROM pose6d_refinement_pins WHERE chain_id = ?", (chain_id,)))
        self.delete(task_id, ENDED + chain_id)
        if not pinned:
            self.delete(task_id, chain_id)
            return
        for table in ("pose6d_refinement_chain", "pose6d_refinement_pins"):
            self.tx.run(f"UPDATE {table} SET chain_id = ? WHERE chain_id = ?",
                        (ENDED + chain_id, chain_id))

    def style_of(self, user: str) -> str:
        rows = self.tx.run("SELECT style FROM pose6d_refinement_style WHERE annotator = ?", (user,))
        return rows[0][0] if rows else ""

    def set_style(self, user: str, style: str) -> None:
        self.tx.run("INSERT INTO pose6d_refinement_style (annotator, style, updated_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (annotator) DO UPDATE SET "
                    "style = excluded.style, updated_at = excluded.updated_at",
                    (user, style, utc_now()))


class _MemoryRows:
    """The same, in this process (while the store fails)."""

    def __init__(self, chains: collections.OrderedDict, styles: dict):
        self.chains, self.styles = chains, styles

    def chains_of_task(self, task_id: str, ended: bool = False) -> list[ChainRecord]:
        return [dataclasses.replace(c, states=list(c.states), pins=json.loads(json.dumps(c.pins)))
                for c in self.chains.values()
                if c.task_id == task_id and c.chain_id.startswith(ENDED) == ended]

    def save(self, chain: ChainRecord) -> None:
        self.chains.pop(chain.chain_id, None)
        self.chains[chain.chain_id] = dataclasses.replace(chain, updated=utc_now())
        while len(self.chains) > MAX_MEMORY_CHAINS:
            self.chains.popitem(last=False)

    def delete(self, task_id: str, chain_id: str | None) -> None:
        for key in [k for k, c in self.chains.items()
                    if c.task_id == task_id and chain_id in (None, k)]:
            del self.chains[key]

    def end(self, task_id: str, chain_id: str) -> None:
        chain = self.chains.pop(chain_id, None)
        self.chains.pop(ENDED + chain_id, None)
        if chain is not None and chain.pins:
            self.chains[ENDED + chain_id] = dataclasses.replace(chain, chain_id=ENDED + chain_id)

    def style_of(self, user: str) -> str:
        return self.styles.get(user, "")

    def set_style(self, user: str, style: str) -> None:
        self.styles[user] = style


def chain_id_of(task_id: str, annotation_hint: str | None) -> str | None:
    return f"{task_id}/{annotation_hint}" if annotation_hint else None


def pick_chain(chains: list[ChainRecord], task_id: str, chain_id: str | None,
               user: str | None, owns: Callable[[ChainRecord], bool] | None = None,
               pinned: Callable[[ChainRecord], bool] | None = None,
               shows: Callable[[ChainRecord], bool] | None = None,
               now: dt.datetime | None = None) -> ChainRecord:
    """The call's chain (module docstring), or a new empty one. For a pin call, ``owns`` tells
    a chain holding one of the call's points and ``pinned`` one with pins of its own (both None
    for other calls); ``shows``, a chain whose current pose the call's Numbers show (None when
    it carries none). UnclearCaller when the call could be another annotator's."""
    if chain_id is not None:
        found = next((c for c in chains if c.chain_id == chain_id), None)
        if found is not None:
            return found
        # The annotation's first named call: its tab may have drawn before it typed (an
        # unnamed chain). Continued when it is the caller's own, or when no annotator is known
        # and this tab shows its current pose; a new chain otherwise.
        unnamed = [c for c in chains if c.chain_id.startswith(f"{task_id}/-")
                   and _age_s(c, now) < ACTIVE_S
                   and (c.user == user if c.user is not None
                        else shows is not None and shows(c))]
        if len(unnamed) == 1:
            return dataclasses.replace(unnamed[0], chain_id=chain_id,
                                       adopted=unnamed[0].chain_id,
                                       user=unnamed[0].user or user)
        return ChainRecord(chain_id, task_id, user, [])
    if owns is not None:
        owning = [c for c in chains if owns(c)]
        if owning:
            return _newest(owning)
    mine = [c for c in chains if user is not None and c.user == user]
    if mine:
        return _newest(mine)
    # Another known annotator's chain is never the caller's, nor (for a pin) one with pins the
    # call does not carry (its annotation's pin call would carry them all), nor one left behind.
    at_work = [c for c in chains if c.user is None and not (pinned is not None and pinned(c))
               and _age_s(c, now) < ACTIVE_S]
    if len(at_work) > 1 or (owns is not None and not at_work and chains):
        raise UnclearCaller()
    if at_work:
        return at_work[0]
    return ChainRecord(f"{task_id}/-{uuid.uuid4().hex[:12]}", task_id, user, [])


def _continue_ended(rows: _StoreRows | _MemoryRows, chain: ChainRecord,
                    points: set[str]) -> None:
    """Give the new ``chain`` the name, poses and pins of the ended chain it continues
    (Chains.open), which it then replaces (marked adopted)."""
    ended = rows.chains_of_task(chain.task_id, ended=True)
    found = [c for c in ended if c.chain_id == ENDED + chain.chain_id] or [
        c for c in ended if points & ({p.get("model") for p in c.pins}
                                      | {p.get("target") for p in c.pins})]
    if not found:
        return
    old = _newest(found)  # its undo steps come back too (and an unpin's mark with them)
    chain.states[:], chain.pins[:] = old.states, old.pins
    chain.style, chain.user = chain.style or old.style, chain.user or old.user
    # an unnamed pin call's chain takes the annotation's name: its next command continues it
    chain.chain_id, chain.adopted = old.chain_id[len(ENDED):], old.chain_id


def _newest(chains: list[ChainRecord]) -> ChainRecord:
    return max(chains, key=lambda c: c.updated)


def _age_s(chain: ChainRecord, now: dt.datetime | None) -> float:
    """Seconds since the chain last changed (inf when unknown)."""
    try:
        then = dt.datetime.fromisoformat(str(chain.updated))
    except (TypeError, ValueError):
        return math.inf
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.timezone.utc)
    return ((now or dt.datetime.now(dt.timezone.utc)) - then).total_seconds()


class Chains:
    """``open(task_id, hint, user)`` yields the call's ChainRecord (saved on exit if changed).

    One task's calls run one at a time: a transaction with a per-task lock in the store
    (SQLite: the write lock; PostgreSQL: an advisory lock), or a per-task lock in memory while
    the store cannot be reached (tried again after STORE_RETRY_S).
    """

    STORE_RETRY_S = 30.0

    def __init__(self, store_factory: Callable[[], Database], make_state: Callable):
        self._store_factory = store_factory
        self._make_state = make_state
        self._memory_chains: collections.OrderedDict[str, ChainRecord] = collections.OrderedDict()
        self._memory_styles: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._store_failed_at: float | None = None

    @contextlib.contextmanager
    def rows(self, task_id: str) -> Iterator[_StoreRows | _MemoryRows]:
        """The store's rows inside a transaction holding the task's lock, or the memory's."""
        with contextlib.ExitStack() as stack:
            tx = self._begin(stack, task_id)
            if tx is not None:
                yield _StoreRows(tx, self._make_state)
                return
            with self._guard:  # one small lock per task touched while the store is down
                lock = self._locks[task_id]
            with lock:
                yield _MemoryRows(self._memory_chains, self._memory_styles)

    @contextlib.contextmanager
    def open(self, task_id: str, annotation_hint: str | None, user: str | None,
             owns: Callable[[ChainRecord], bool] | None = None,
             pinned: Callable[[ChainRecord], bool] | None = None,
             shows: Callable[[ChainRecord], bool] | None = None,
             points: set[str] | None = None) -> Iterator[ChainRecord]:
        """The call's chain (pick_chain; UnclearCaller), saved on exit if changed (an unnamed
        chain it continues is then stored under its name). A new chain continues its ended
        one (a submitted annotation reopened): the one of its name, or for an unnamed pin call
        the one with a pin on one of ``points`` (the call's pin point ids)."""
        with self.rows(task_id) as rows:
            chain = pick_chain(rows.chains_of_task(task_id), task_id,
                               chain_id_of(task_id, annotation_hint), user, owns, pinned, shows)
            if not (chain.states or chain.pins or chain.adopted):
                _continue_ended(rows, chain, points or set())
            if chain.adopted:
                adopted, chain.adopted = chain.adopted, ""
                rows.delete(task_id, adopted)
                rows.save(chain)
            known = chain.user  # a user learnt now is saved even when nothing else changes
            if user is not None:
                chain.user = user
            if not chain.style and chain.user:
                chain.style = rows.style_of(chain.user)
            before = (states_to_json(chain.states), chain.style, known, json.dumps(chain.pins))
            yield chain
            if (states_to_json(chain.states), chain.style, chain.user,
                    json.dumps(chain.pins)) != before:
                rows.save(chain)
                if chain.user and chain.style and chain.style != before[1]:
                    rows.set_style(chain.user, chain.style)  # remembered for the annotator

    def chain_of(self, task_id: str, annotation_hint: str | None) -> ChainRecord | None:
        """One annotation's chain, None when there is none."""
        chain_id = chain_id_of(task_id, annotation_hint)
        with self.rows(task_id) as rows:
            found = [c for c in rows.chains_of_task(task_id) if c.chain_id == chain_id]
        return found[0] if found else None

    def forget(self, task_id: str, annotation_hint: str | None = None) -> None:
        """End one annotation's chain (its annotation was submitted: kept as ended when it has
        pins, for when it is reopened), or drop all of the task's."""
        chain_id = chain_id_of(task_id, annotation_hint)
        with self.rows(task_id) as rows:
            if chain_id is None:
                rows.delete(task_id, None)
            else:
                rows.end(task_id, chain_id)

    def _begin(self, stack: contextlib.ExitStack, task_id: str) -> Tx | None:
        """A store transaction holding the task's lock, or None (then memory is used)."""
        if self._store_failed_at is not None \
                and time.monotonic() - self._store_failed_at < self.STORE_RETRY_S:
            return None
        try:
            tx = stack.enter_context(self._store_factory().transaction())
            tx.lock(LOCK_TASK, task_id)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep refining in memory
            log.warning("refinement chains kept in this process for now: the store failed: %s",
                        exc)
            self._store_failed_at = time.monotonic()
            stack.close()
            return None
        self._store_failed_at = None
        return tx
