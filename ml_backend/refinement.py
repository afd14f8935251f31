"""Live pose refinement: Label Studio calls /predict with ``params.context`` while the annotator
works (command box submitted, a smart key point clicked, a smart box drawn); we answer with the
new pose's six Numbers, the CAD choice and the re-rendered overlay (same region ids, so the
overlay is replaced in place), and clear the command box.

What Label Studio 1.23.2 sends and does (read in its frontend source, seen in a browser; README
"Annotating"):
- command box (TextArea, Enter): ``context.result`` holds every whole-image classification as
  shown (the six Numbers, unsaved slider moves included, the Choices, the box's text lines);
- smart key point / rectangle: only the drawn region(s) of that tool (no Numbers): the pose
  shown is then the last one we answered for the task, or, in a fresh process, the user's
  draft or newest annotation in ``tasks[0]``, else the initial pose;
- only the newest call's answer is applied; the box keeps the text of unanswered calls, so a
  later call may carry several lines: they are applied to the pose its Numbers show;
- with Auto-Accept on, accepting our answer deletes the drawn key point / box (they are
  "dynamic" regions), so neither piles up; the overlay regions keep their ids and are replaced.

Per task the refinement keeps the chain of poses shown (for undo). A call whose Numbers show
an earlier pose of the chain (its predecessor's answer was never applied) cuts the chain back to
it, so undo and repeated commands stay right when answers cross. The chain lives in a store
(refinement_state.py), so every worker and replica shares it.

The refinement needs only a narrow host (``RefinementHost``: the task's context, the results of
a pose, the CAD library); the model (model.py) is one.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Protocol

import numpy as np

from label_sync.database import Database
from pose6d import labeling
from pose6d.cad_library import CadError, CadLibrary
from pose6d.camera import POSE_NAMES, InvalidPoseError, Pose, project_points
from pose6d.dataset import ObjectKey
from pose6d.labeling import (AnnotationValues, BOX_TYPES, NUMBER_SPECS, POINT_TYPES,
                             command_result, read_results, region_box_pixels, region_point_pixels,
                             shown_pose)
from pose6d.labeling_config import number_ranges
from pose6d.tasks import TaskError

from ml_backend.commands import (CHEAT_SHEET, ERROR_MARK, INFO_MARK, Command, CommandError,
                                 parse_commands)
from ml_backend.pose_source import TaskContext
from ml_backend.refinement_state import Chains

log = logging.getLogger("ml_backend.refinement")
MAX_HISTORY = 200


class RefinementHost(Protocol):
    """What the refinement needs from the model."""

    model_version: str
    cad: CadLibrary

    def task_context(self, task: dict) -> TaskContext:
        """The task's object, initial pose and photo size; TaskError when unusable."""

    def pose_prediction(self, key: ObjectKey, pose: Pose, cad_index: int, width: int, height: int,
                        bbox=None, extra: list[dict] | None = None) -> list[dict]:
        """The results that show ``pose`` (Numbers, CAD choice, overlay); TaskError."""


@dataclasses.dataclass
class State:
    pose: Pose
    cad_index: int
    _key: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def key(self) -> tuple:
        """What the annotator sees: the six values as shown (rounded) and the CAD model."""
        if self._key is None:
            deg = shown_pose(self.pose).as_degrees()
            self._key = tuple(round(deg[n], NUMBER_SPECS[n].decimals) for n in POSE_NAMES) \
                + (self.cad_index,)
        return self._key


@dataclasses.dataclass
class Chain:
    # Poses shown, oldest first; the last is the one on screen. A fresh session (new task, or a
    # restarted backend) starts at the first pose it sees: undo never goes back further.
    states: list[State]

    @property
    def current(self) -> State:
        return self.states[-1]

    def show(self, state: State) -> None:
        """``state`` is on screen: cut the chain back to it when it is already in it (answers
        that were never applied), else append it (a slider move, a model click, a fresh call)."""
        key = state.key()
        for i in range(len(self.states) - 1, -1, -1):
            if self.states[i].key() == key:
                del self.states[i + 1:]
                return
        self.push(state)

    def push(self, state: State) -> None:
        self.states.append(state)
        del self.states[:-MAX_HISTORY]

    def undo(self) -> State:
        if len(self.states) > 1:
            self.states.pop()
        return self.states[-1]


class Refinement:
    """Turns one interactive /predict call into the new pose's results.

    store_factory: the store that keeps the chains (opened lazily, on the first call).
    """

    def __init__(self, host: RefinementHost, store_factory: Callable[[], Database]):
        self.host = host
        self._chains = Chains(store_factory, State)

    def forget(self, task_id: str) -> None:
        """End a task's chains of poses (called when its annotation is submitted)."""
        self._chains.forget(task_id)

    def handle(self, task: dict, context: dict, label_config: str | None = None) -> dict:
        values = read_results(context.get("result"))
        if not (values.numbers or values.choices or values.text or values.regions):
            # Label Studio fires bursts of empty calls on task open and after Submit: change nothing.
            return {"result": [], "model_version": self.host.model_version}
        try:
            key, initial, width, height = self.host.task_context(task)
        except TaskError as exc:
            return self._error(f"this task cannot be rendered: {exc}")
        initial_state = State(initial.pose, initial.cad_index)
        # One task's calls one at a time, across workers (Label Studio may send two at once).
        with self._chains.open(_task_id(task)) as states:
            session = Chain(states)
            if not states:  # a new task, or a backend that restarted: start from the draft
                saved = _saved_state(task, initial_state)
                if saved is not None:
                    session.show(saved)
            try:
                shown = self._shown_state(values, session, task, initial_state)
                new, notes = self._apply(values, shown, session, initial_state, key, width, height)
            except (CommandError, InvalidPoseError) as exc:
                return self._error(str(exc))
            except CadError as exc:
                return self._error(f"the CAD model cannot be used: {exc}")
        # Rendering happens outside the session's lock: other calls need not wait for it.
        new = State(shown_pose(new.pose), new.cad_index)
        if not _renderable(new.pose):
            return self._error("that pose is far outside the photo (distance or centre): "
                               "r resets, u undoes")
        notes += _range_notes(new.pose, number_ranges(label_config))
        try:
            results = self.host.pose_prediction(
                key, new.pose, new.cad_index, width, height,
                extra=[command_result("\n".join(f"{INFO_MARK} {n}" for n in notes) or None)])
        except TaskError as exc:
            return self._error(str(exc))
        return {"result": results, "score": 1.0, "model_version": self.host.model_version}

    # --- state ---

    def _shown_state(self, values: AnnotationValues, session: Chain, task: dict,
                     initial: State) -> State:
        """The pose on the annotator's screen: their Numbers and CAD choice when the call
        carries them (unsaved slider moves included), else the last pose shown."""
        base = session.current if session.states else initial
        cad = _cad_choice(values, base.cad_index)
        if all(n in values.numbers for n in NUMBER_SPECS):
            state = State(values.pose(initial.pose.viewport), cad)
        else:
            state = State(base.pose, cad)
        session.show(state)
        return session.current

    def _apply(self, values: AnnotationValues, current: State, session: Chain, initial: State,
               key, width: int, height: int) -> tuple[State, list[str]]:
        """The new state (already on the session's chain for undo) and notes for the box."""
        points = [r for r in values.regions if r.get("type") in POINT_TYPES]
        boxes = [r for r in values.regions if r.get("type") in BOX_TYPES
                 and r.get("id") != labeling.BOX_REGION_ID]
        text = values.text.get(labeling.COMMAND)
        notes: list[str] = []
        if points:  # the newest point is the last (Label Studio sends them in drawing order)
            x, y = _region_pixels(region_point_pixels, points[-1])
            new = State(current.pose.replace(px=x, py=y), current.cad_index)
        elif boxes:
            mesh = self.host.cad.mesh(key.category, current.cad_index)
            new = State(fit_pose_to_box(mesh.vertices, current.pose,
                                        _region_pixels(region_box_pixels, boxes[-1])),
                        current.cad_index)
        elif text is not None:
            commands = parse_commands(text)
            cads = self.host.cad.indices(key.category)
            new = current
            for command in commands:  # one call (one Enter) is one undo step; "u" pops one
                if command.kind == "undo":
                    changed = new.key() != session.current.key()
                    new = session.current if changed else session.undo()
                elif command.kind == "help":
                    notes += list(CHEAT_SHEET)
                else:
                    new = apply_command(command, new, initial, cads)
        else:
            return current, notes
        if new.key() != session.current.key():  # after an undo the chain's end moved
            session.push(State(shown_pose(new.pose), new.cad_index))
        return new, notes

    def _error(self, message: str) -> dict:
        return {"result": [command_result(f"{ERROR_MARK} {message}")],
                "model_version": self.host.model_version}


MAX_ABS_PIXELS, MAX_DISTANCE = 1e6, 1e6  # beyond: nothing to render, and pixel maths overflows


def _task_id(task: dict) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return str(task_id) if isinstance(task_id, (int, str)) else f"anonymous-{id(task)}"


def _renderable(pose: Pose) -> bool:
    return abs(pose.px) <= MAX_ABS_PIXELS and abs(pose.py) <= MAX_ABS_PIXELS \
        and pose.distance <= MAX_DISTANCE


def _range_notes(pose: Pose, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """Warnings for values Label Studio would refuse to submit (outside the sliders' range)."""
    deg = pose.as_degrees()
    out = []
    for name in ("distance", "px", "py"):
        spec, (lo, hi) = NUMBER_SPECS[name], ranges[name]
        if not lo <= round(deg[name], spec.decimals) <= hi:
            out.append(f"{name}={deg[name]:.{spec.decimals}f} is outside {lo:g}..{hi:g}: "
                       "Label Studio will refuse to submit it (admin: make_labeling_config.py "
                       "--max-photo-size)")
    return out


def _saved_state(task: dict, initial: State) -> State | None:
    """The pose of the user's newest draft, else of the newest annotation carried in ``task``
    (Label Studio sends both with interactive calls); None when there is none."""
    for field in ("drafts", "annotations"):
        items = task.get(field) if isinstance(task, dict) else None
        if not isinstance(items, list):
            continue
        items = [i for i in items if isinstance(i, dict) and isinstance(i.get("result"), list)]
        items.sort(key=lambda i: str(i.get("updated_at") or i.get("created_at") or ""))
        for item in reversed(items):
            values = read_results(item["result"])
            try:
                return State(values.pose(initial.pose.viewport),
                             _cad_choice(values, initial.cad_index))
            except InvalidPoseError:
                continue
    return None


def _region_pixels(reader, region: dict) -> tuple[float, ...]:
    """Pixel coordinates of a drawn region; CommandError when it lacks the fields they need."""
    try:
        out = tuple(float(v) for v in reader(region))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise CommandError("the drawn region has no readable position") from None
    if not all(math.isfinite(v) for v in out):
        raise CommandError("the drawn region has no readable position")
    return out


def _cad_choice(values: AnnotationValues, default: int) -> int:
    try:
        return int(values.choices.get(labeling.CAD, default))
    except (TypeError, ValueError):
        return default


def apply_command(command: Command, state: State, initial: State, cads: list[int]) -> State:
    """One command applied to a state (pure; angles in degrees on the command side)."""
    pose, cad = state.pose, state.cad_index
    if command.kind in ("add", "set"):
        deg = pose.as_degrees()
        deg[command.name] = deg[command.name] + command.value if command.kind == "add" else command.value
        spec = NUMBER_SPECS[command.name]
        if command.name in ("elevation", "distance"):
            deg[command.name] = min(spec.max, max(spec.min, deg[command.name]))
        return State(Pose.from_degrees(**deg, viewport=pose.viewport, focal=pose.focal), cad)
    if command.kind == "flip":
        return State(pose.replace(azimuth=pose.azimuth + math.pi), cad)
    if command.kind in ("cad_next", "cad_prev"):
        if not cads:
            return state
        pos = cads.index(cad) if cad in cads else 0
        step = 1 if command.kind == "cad_next" else -1
        return State(pose, cads[(pos + step) % len(cads)])
    if command.kind == "cad_set":
        if int(command.value) not in cads:
            raise CommandError(f"there is no CAD model {int(command.value)} (models: {cads})")
        return State(pose, int(command.value))
    if command.kind == "reset":
        return initial
    return state  # refresh


def fit_pose_to_box(vertices: np.ndarray, pose: Pose, box: tuple[float, float, float, float],
                    iterations: int = 4) -> Pose:
    """Distance and centre that make the projected mesh's bounding box fit ``box`` (x1, y1, x2, y2
    pixels), keeping the rotation. Scale follows 1/distance; a few fixed-point steps converge."""
    x1, y1, x2, y2 = box
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise CommandError("the drawn box is too small to fit the object to")
    target_size = math.hypot(x2 - x1, y2 - y1)
    target_centre = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    for _ in range(iterations):
        uv = project_points(vertices, pose)
        if np.isnan(uv).any():  # part of the mesh behind the camera: move back first
            pose = pose.replace(distance=pose.distance * 2.0)
            continue
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        size = math.hypot(*(hi - lo))
        shift = target_centre - (lo + hi) / 2.0
        pose = pose.replace(distance=pose.distance * size / target_size,
                            px=pose.px + shift[0], py=pose.py + shift[1])
    return pose
