"""Live pose refinement: Label Studio calls /predict with ``params.context`` while the annotator
works (command box submitted, a smart key point clicked, a smart box drawn); we answer with the
new pose's six Numbers (read-only: they change only here), the CAD choice, the re-rendered
overlay (same region ids, so it is replaced in place), the quality / dense choices a command set,
and clear the command box.

What Label Studio 1.23.2 sends and does (docs/label_studio_notes.md):
- command box (TextArea, Enter): ``context.result`` holds every whole-image classification as
  shown (the six Numbers, the Choices, the box's text lines, with the id the browser gave the
  box's result in this annotation);
- smart key point / rectangle: only the drawn region(s) of that tool (no Numbers): the pose
  shown is then the last one of the annotation's chain;
- only the newest call's answer is applied; the box keeps the text of unanswered calls, so a
  later call may carry several lines: they are applied to the pose its Numbers show. A box
  call with no typed line lost it to an answer that landed first (``LINE_LOST``).

Each annotation being edited has its chain of poses shown (refinement_state.py): undo never
brings back another annotator's pose. A call whose Numbers show an earlier pose of the chain (its
predecessor's answer was never applied) cuts the chain back to it. A submitted annotation is
checked against its chain: was its pose drawn for the annotator (``submitted``)?

The refinement needs only a narrow host (``RefinementHost``); the model (model.py) is one.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING, Any, Callable, Protocol

from label_sync.database import Database
from pose6d import labeling
from pose6d.box_fit import fit_pose_to_box
from pose6d.cad_library import CadError, CadLibrary
from pose6d.camera import InvalidPoseError, Pose
from pose6d.dataset import ObjectKey
from pose6d.errors import BadInput, DataError
from pose6d.labeling import (AnnotationValues, BOX_TYPES, NUMBER_SPECS, POINT_TYPES,
                             choice_result, command_result, read_results, region_box_pixels,
                             region_point_pixels, shown_pose)
from pose6d.labeling_config import number_ranges
from pose6d.tasks import TaskError

from ml_backend import call_state, fit_step, pins_step
from ml_backend.caller import call_annotation, command_box_id, requesting_user
from ml_backend.chain import Chain, State, apply_command, check_ranges
from ml_backend.commands import CHEAT_SHEET, ERROR_MARK, INFO_MARK, CommandError, parse_commands
from ml_backend.overlay_regions import DEFAULT_STYLE, OVERLAY_STYLES
from ml_backend.pose_source import TaskContext
from ml_backend.refinement_state import Chains, UnclearCaller

if TYPE_CHECKING:
    from pose6d.fitting.evidence import ImageEvidence

log = logging.getLogger("ml_backend.refinement")
# A command-box call with no typed line: Label Studio reads the box for the call 0 ms after
# Enter (a timer), and an answer that lands in between replaces the box, the new line with it
# (docs/label_studio_notes.md). Nothing else calls with the box unchanged: deleting an entry
# calls nothing.
LINE_LOST = ("the line you just typed did not reach the backend (Label Studio emptied the box "
             "as the previous answer came in): type it again")


class RefinementHost(Protocol):
    """What the refinement needs from the model."""

    model_version: str
    cad: CadLibrary

    def task_context(self, task: dict) -> TaskContext:
        """The task's object, initial pose and photo size; TaskError when unusable."""

    def pose_prediction(self, key: ObjectKey, pose: Pose, cad_index: int, width: int, height: int,
                        bbox=None, extra: list[dict] | None = None,
                        style: str = DEFAULT_STYLE, pins: list | None = None) -> list[dict]:
        """The results that show ``pose`` (Numbers, CAD choice, overlay, the photo's other
        objects, the ``pins`` drawn); TaskError."""

    def neighbours(self, key: ObjectKey) -> list[tuple[ObjectKey, Pose, int]]:
        """The photo's other objects: (key, pose, CAD index), synced else initial."""

    def photo_evidence(self, key: ObjectKey) -> "ImageEvidence":
        """The object's photo with its box, for auto-fit (cached); DataError when unreadable."""

    def labels_refused(self, user: str | None, task: dict) -> str | None:
        """Why ``user`` may not label this task yet (None: they may)."""


class Refinement:
    """Turns one interactive /predict call into the new pose's results.

    store_factory: the store that keeps the chains (opened lazily, on the first call).
    """

    def __init__(self, host: RefinementHost, store_factory: Callable[[], Database]):
        self.host = host
        self._chains = Chains(store_factory, State)

    def forget(self, task_id: str, annotation: dict | None = None) -> None:
        """End the chain of a submitted annotation (all of the task's without one)."""
        hint = command_box_id(annotation.get("result")) if isinstance(annotation, dict) else None
        self._chains.forget(task_id, hint)

    def submitted(self, task: dict, annotation: dict) -> tuple[bool | None, str | None]:
        """What the annotation's chain knows of a submitted annotation (one read of it):
        (was its pose and CAD model drawn for the annotator: one of the chain's poses, or the
        initial one, the prediction shown when the task opened; the annotator's email when a
        call named it). None for what cannot be told (no readable pose, no task context)."""
        chain = self._chains.chain_of(_task_id(task), command_box_id(annotation.get("result")))
        user = chain.user if chain is not None else None
        try:
            context = self.host.task_context(task)
            initial = State(context.initial.pose, context.initial.cad_index)
            submitted = call_state.state_of(read_results(annotation.get("result")), initial)
        except (TaskError, InvalidPoseError):
            return None, user
        shown = submitted.key() == initial.key() \
            or Chain(chain.states if chain else []).has_shown(submitted)
        return shown, user

    def handle(self, task: dict, context: dict, label_config: str | None = None) -> dict:
        values = read_results(context.get("result"))
        if not (values.numbers or values.choices or values.text or values.regions):
            # Label Studio fires bursts of empty calls on task open and after Submit: change nothing.
            return {"result": [], "model_version": self.host.model_version}
        try:
            key, initial, width, height = self.host.task_context(task)
        except TaskError as exc:
            return self._error(f"this task cannot be rendered (skip it and tell your admin): {exc}")
        ranges = number_ranges(label_config)
        initial_state = State(initial.pose, initial.cad_index)
        hint, user = call_annotation(task, context.get("result")), requesting_user(task)
        refused = self.host.labels_refused(user, task)
        if refused:
            return self._error(refused)
        log.debug("refine task %s: chain %s, annotator %s", task.get("id"), hint, user)
        pins = pins_step.call_points(values.regions)
        owns = (lambda c: pins_step.holds(c.pins, pins)) if pins else None
        pinned = (lambda c: bool(pins_step.live(c.pins))) if pins else None
        on_screen = call_state.numbers_shown(values, initial_state)
        shows = (lambda c: bool(c.states) and c.states[-1].key() == on_screen.key()) \
            if on_screen is not None else None
        ids = {r["id"] for r in pins if isinstance(r.get("id"), str)}
        try:
            return self._refine(task, values, key, initial_state, (width, height), ranges, hint,
                                user, (owns, pinned, shows, ids))
        except UnclearCaller:
            # A refused pin call's points are returned (kept, they come with the next pin
            # call): the annotator goes on from there, nothing is placed again.
            kept = "your points stay" if len(pins) > 1 else "your point stays"
            what, then = (("pin", f"; {kept} and your next click goes on from there (a model "
                           "point, then where it is in the photo)") if pins
                          else ("drawing", ", then draw it again"))
            return self._error(f"the backend cannot tell whose {what} this is yet (Label "
                               f"Studio names the annotation once your draft is saved, and "
                               f"another annotator may be on this task): type . in the command "
                               f"box first and wait a few seconds{then}",
                               pins_step.as_sent(pins, width, height))

    def _refine(self, task: dict, values: AnnotationValues, key: ObjectKey, initial_state: State,
                size: tuple[int, int], ranges: dict, hint: str | None, user: str | None,
                tells: tuple[Callable | None, ...]) -> dict:
        """handle's work on the call's chain; ``tells``: pick_chain's owns, pinned, shows
        and the call's pin point ids (Chains.open's points)
        (Chains.open: UnclearCaller)."""
        width, height = size
        # One task's calls one at a time, across workers (Label Studio may send two at once).
        with self._chains.open(_task_id(task), hint, user, *tells) as record:
            chain = Chain(record.states)
            if not chain.states:  # a new annotation, or a restarted backend: its own draft
                saved = call_state.saved_state(task, initial_state)
                if saved is not None:
                    chain.show(saved)
            # A refused line changes nothing: not the undo chain, the pins or the style (a pin
            # off the mesh is still recorded as unusable: Label Studio keeps its point).
            kept = None
            try:
                shown, notes = self._shown_state(values, chain, initial_state)
                kept = (list(record.states), copy.deepcopy(record.pins), record.style)
                new, more, choices, fit_mode = self._apply(values, shown, chain, initial_state,
                                                           key, (width, height), ranges, record)
                more += self._carried(record, key, new)  # c3, n, p, r, undo: another model
            except (BadInput, CadError) as exc:  # CommandError, InvalidPoseError; a CAD file
                if kept is not None:
                    record.states[:], record.style = kept[0], kept[2]
                    if not isinstance(exc, pins_step.PinError):
                        record.pins[:] = kept[1]
                if isinstance(exc, CadError):
                    return self._error(f"the CAD model cannot be used: {exc}")
                return self._error(str(exc) + _dropped(values.entries.get(labeling.COMMAND)))
            style = record.style or DEFAULT_STYLE
            pins = copy.deepcopy(record.pins)
        if fit_mode:  # seconds of search: outside the chain's lock, then one more undo step
            try:
                new, fit_notes = fit_step.fit(self.host, key, new, fit_mode, ranges)
            except CommandError as exc:
                return self._error(str(exc))
            except (BadInput, DataError) as exc:
                return self._error(f"auto-fit cannot run here: {exc}")
            more.append(fit_notes)
            with self._chains.open(_task_id(task), hint, user) as record:
                chain = Chain(record.states)
                if not chain.states or new.key() != chain.current.key():
                    chain.push(new)
                more += self._carried(record, key, new)  # fitcad may choose another model
                pins = copy.deepcopy(record.pins)
        # the pins at the pose drawn (after any fit); Label Studio drops a smart tool's point
        # once the answer comes: a pin call's points go back. Other calls carry no points:
        # only the model points go back (they move with the model); a photo point returned
        # from what the backend kept would undo a drag or a deletion made since.
        drawn = pins_step.drawn(pins, shown_pose(new.pose)) if pins else None
        pins_back = pins_step.regions(pins, shown_pose(new.pose), width, height,
                                      targets=bool(pins_step.call_points(values.regions)))
        # Rendering happens outside the chain's lock: other calls need not wait for it.
        lines = "\n".join(f"{INFO_MARK} {n}" for n in notes + more) or None
        try:
            results = self.host.pose_prediction(key, new.pose, new.cad_index, width, height,
                                                extra=[command_result(lines)] + choices
                                                + pins_back, style=style, pins=drawn)
        except TaskError as exc:
            return self._error(str(exc))
        return {"result": results, "score": 1.0, "model_version": self.host.model_version}

    # --- state ---

    def _shown_state(self, values: AnnotationValues, chain: Chain,
                     initial: State) -> tuple[State, list[str]]:
        """The pose on the annotator's screen (their Numbers and CAD choice when the call
        carries them, else the last pose shown), and a note when it had not been drawn (a
        model clicked in the gallery, which calls nothing)."""
        base = chain.current if chain.states else initial
        if all(n in values.numbers for n in NUMBER_SPECS):
            state = call_state.state_of(values, State(initial.pose, base.cad_index))
        else:
            state = State(base.pose, call_state.cad_choice(values, base.cad_index))
        notes = []
        if chain.states and not chain.has_shown(state) and state.key() != initial.key():
            what = f"model {state.cad_index} chosen in the gallery" \
                if state.key()[:-1] == chain.current.key()[:-1] else "the values shown"
            notes.append(f"{what} had not been drawn: drawn now")
        chain.show(state)
        return chain.current, notes

    def _apply(self, values: AnnotationValues, current: State, chain: Chain, initial: State,
               key: ObjectKey, size: tuple[int, int], ranges: dict[str, tuple[float, float]],
               record: Any) -> tuple[State, list[str], list[dict], str]:
        """(the new state, already on the chain for undo; notes for the box; Choices results
        that commands set; the auto-fit mode a final ``fit`` asks for, or ""). BadInput when a
        value leaves its range: nothing changes then."""
        pins = pins_step.call_points(values.regions)
        points = [r for r in values.regions if r.get("type") in POINT_TYPES
                  and r.get("from_name") != labeling.PIN]
        boxes = [r for r in values.regions if r.get("type") in BOX_TYPES
                 and r.get("id") != labeling.BOX_REGION_ID]
        text = values.text.get(labeling.COMMAND)
        notes: list[str] = []
        choices: list[dict] = []
        fit_mode = ""
        if pins:  # every pin point of the annotation, in creation order (one label)
            notes += self._carried(record, key, current)  # not solved with two meshes' points
            mesh = self.host.cad.mesh(key.category, current.cad_index)
            _, changed, added = pins_step.update(record.pins, pins, mesh, current.pose,
                                                 current.cad_index)
            notes += added
            new = current
            if changed:  # one solve, one undo step
                new = self._solve(record, key, current, ranges, notes)
        elif points:  # the newest point is the last (Label Studio sends them in drawing order)
            x, y = _region_pixels(region_point_pixels, points[-1])
            new = State(current.pose.replace(px=x, py=y), current.cad_index)
        elif boxes:
            mesh = self.host.cad.mesh(key.category, current.cad_index)
            new = State(fit_pose_to_box(mesh.vertices, current.pose,
                                        _region_pixels(region_box_pixels, boxes[-1]), size),
                        current.cad_index)
        elif text is not None:
            if not any(map(labeling.is_typed, values.entries.get(labeling.COMMAND, []))):
                raise CommandError(LINE_LOST)
            cads = self.host.cad.indices(key.category)
            new = current
            commands = parse_commands(text)
            for i, command in enumerate(commands):  # one call (one Enter) is one undo step
                if command.kind == "fit":
                    if i != len(commands) - 1:
                        raise CommandError("fit must be the last command on its line")
                    fit_mode = command.name
                elif command.kind == "undo":
                    changed = new.key() != chain.current.key()
                    new = chain.current if changed else chain.undo()
                    back = pins_step.restore(record.pins, new.key())
                    notes += [back] if back else []
                elif command.kind == "help":
                    notes += list(CHEAT_SHEET)
                elif command.kind in ("quality", "dense"):
                    name = labeling.QUALITY if command.kind == "quality" else labeling.DENSE
                    choices = [c for c in choices if c["from_name"] != name]
                    choices.append(choice_result(name, command.name))
                elif command.kind == "pins":
                    notes += self._carried(record, key, new)  # "c3 pins": on model 3 already
                    notes.append(pins_step.describe(record.pins, shown_pose(new.pose)))
                elif command.kind == "unpin":
                    notes += self._carried(record, key, new)
                    said, again = pins_step.unpin(record.pins, int(command.value),
                                                  mark=current.key())
                    notes.append(said)
                    if again:  # the rest solve again without it (the line's undo step)
                        new = self._solve(record, key, new, ranges, notes)
                elif command.kind == "solve":  # after e= / t=: the pins hold the new prior
                    notes += self._carried(record, key, new)
                    if not pins_step.complete(record.pins):
                        raise CommandError("there are no pins to solve from (pins lists them)")
                    new = self._solve(record, key, new, ranges, notes)
                elif command.kind == "copy":
                    before, new = new.pose, self._copy(key, new, int(command.value))
                    pins_step.adopt(record.pins, before, new.pose, current.key())
                    notes.append(f"rotation of object {int(command.value)} copied (fit or fitxy "
                                 "places it)")
                elif command.kind == "overlay":
                    record.style = _next_style(record.style, command.name)
                    notes.append(f"overlay: {record.style} (o: next style)")
                else:
                    before, new = new.pose, apply_command(command, new, initial, cads, ranges)
                    pins_step.adopt(record.pins, before, new.pose, current.key())
                    if command.kind == "reset":
                        notes.append(f"reset to the model's pose and CAD model {initial.cad_index}")
        else:
            return current, notes, choices, fit_mode
        new = State(shown_pose(new.pose), new.cad_index)
        check_ranges(new.pose, ranges)  # a click or box far outside: refused, not clamped
        if new.key() != chain.current.key():  # after an undo the chain's end moved
            chain.push(new)
        else:  # no undo step: no later undo brings back a pin this line removed
            pins_step.restore(record.pins, chain.current.key(), bring_back=False)
        return new, notes, choices, fit_mode

    def _solve(self, record: Any, key: ObjectKey, state: State, ranges: dict,
               notes: list[str]) -> State:
        """``state`` with the pose solved from the chain's pins (on its CAD model); their
        residuals added to ``notes``."""
        mesh = self.host.cad.mesh(key.category, state.cad_index)
        new = State(pins_step.solve(record.pins, state.pose, ranges, mesh), state.cad_index)
        notes.append(pins_step.describe(record.pins, shown_pose(new.pose)))
        return new

    def _carried(self, record: Any, key: ObjectKey, state: State) -> list[str]:
        """The chain's pins carried onto ``state``'s CAD model when it changed
        (pins_step.carry): its note, if any, as a list to add to the notes."""
        said = pins_step.carry(record.pins, lambda cad: self.host.cad.mesh(key.category, cad),
                               state.pose, state.cad_index)
        return [said] if said else []

    def _copy(self, key: ObjectKey, state: State, k: int) -> State:
        """``state`` with the rotation (azimuth, elevation, theta) of object k of the photo."""
        found = [pose for other, pose, _ in self.host.neighbours(key) if other.k == k]
        if not found:
            ks = sorted(other.k for other, _, _ in self.host.neighbours(key))
            raise CommandError(f"this photo has no object {k} (others: {ks or 'none'})")
        return State(state.pose.replace(azimuth=found[0].azimuth, elevation=found[0].elevation,
                                        theta=found[0].theta), state.cad_index)

    def _error(self, message: str, keep: list[dict] | None = None) -> dict:
        """The answer to a refused call: ``message`` in the command box, plus ``keep``
        (results the annotation keeps as they are)."""
        return {"result": [command_result(f"{ERROR_MARK} {message}")] + (keep or []),
                "model_version": self.host.model_version}


def _dropped(entries: list[str] | None) -> str:
    """What a refused call drops, when it carried several typed lines (lines kept while the
    backend did not answer): '; none of these N lines ran: a+ | e+ | zz'."""
    typed = [e.strip() for e in entries or [] if labeling.is_typed(e) and e.strip()]
    if len(typed) < 2:
        return ""
    listed = " | ".join(typed)
    return f"; none of these {len(typed)} lines ran: {listed[:200]}"


def _next_style(current: str, wanted: str) -> str:
    if wanted:
        return wanted
    i = OVERLAY_STYLES.index(current) if current in OVERLAY_STYLES else 0
    return OVERLAY_STYLES[(i + 1) % len(OVERLAY_STYLES)]


def _task_id(task: dict) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return str(task_id)[:40] if isinstance(task_id, (int, str)) else f"anonymous-{id(task)}"


def _region_pixels(reader, region: dict) -> tuple[float, ...]:
    """Pixel coordinates of a drawn region; CommandError when it lacks the fields they need."""
    try:
        out = tuple(float(v) for v in reader(region))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise CommandError("the drawn region has no readable position") from None
    if not all(math.isfinite(v) for v in out):
        raise CommandError("the drawn region has no readable position")
    return out
