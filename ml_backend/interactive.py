"""Live pose refinement: Label Studio calls /predict with ``params.context`` while the annotator
works (command box submitted, a smart keypoint clicked, a smart box drawn); we answer with the
new pose's six Numbers, the CAD choice and the re-rendered overlay (same region ids, so the
overlay is replaced in place), and clear the command box.

Per-task state (the last pose shown and an undo history) lives in this process; with several
replicas, route a task's calls to one replica (sticky sessions) or accept that undo history
is per replica — the pose itself always comes back from the annotator's own Numbers.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading

import numpy as np

from pose6d import labeling
from pose6d.camera import InvalidPoseError, Pose, project_points
from pose6d.labeling import (AnnotationValues, NUMBER_SPECS, command_result, read_results,
                             region_box_pixels, region_point_pixels, shown_pose)

from ml_backend.commands import ERROR_MARK, Command, CommandError, parse_commands

log = logging.getLogger("ml_backend.interactive")
MAX_HISTORY = 200
MAX_SESSIONS = 20000


@dataclasses.dataclass
class State:
    pose: Pose
    cad_index: int


@dataclasses.dataclass
class Session:
    current: State
    history: list[State] = dataclasses.field(default_factory=list)


class InteractiveSession:
    """Turns one interactive /predict call into the new pose's results."""

    def __init__(self, model):
        self.model = model
        self._sessions: collections.OrderedDict[object, Session] = collections.OrderedDict()
        self._lock = threading.Lock()

    def handle(self, task: dict, context: dict) -> dict:
        from ml_backend.model import TaskError

        values = read_results(context.get("result"))
        if not (values.numbers or values.choices or values.text or values.regions):
            # Label Studio fires bursts of empty calls on task open and after Submit: change nothing.
            return {"result": [], "model_version": self.model.model_version}
        try:
            key, initial, width, height = self.model.task_context(task)
        except TaskError as exc:
            return self._error(f"this task cannot be rendered: {exc}")
        initial_state = State(initial.pose, initial.cad_index)
        session = self._session(task, initial_state)
        try:
            current = self._current_state(values, session, initial_state)
            new = self._apply(values, current, session, initial_state, key, width, height)
        except (CommandError, InvalidPoseError) as exc:
            return self._error(str(exc))
        new = State(shown_pose(new.pose), new.cad_index)
        try:
            results = self.model.pose_prediction(key, new.pose, new.cad_index, width, height,
                                                 extra=[command_result()])
        except TaskError as exc:
            return self._error(str(exc))
        session.current = new
        return {"result": results, "score": 1.0, "model_version": self.model.model_version}

    # --- state ---

    def _session(self, task: dict, initial: State) -> Session:
        task_id = task.get("id", id(task))
        with self._lock:
            session = self._sessions.pop(task_id, None) or Session(initial)
            self._sessions[task_id] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def _current_state(self, values: AnnotationValues, session: Session, initial: State) -> State:
        """The pose the annotator sees: their Numbers when the call carries them (typed edits
        included), else the last pose we showed."""
        cad = _cad_choice(values, session.current.cad_index)
        if all(n in values.numbers for n in NUMBER_SPECS):
            return State(values.pose(initial.pose.viewport), cad)
        return State(session.current.pose, cad)

    def _apply(self, values: AnnotationValues, current: State, session: Session, initial: State,
               key, width: int, height: int) -> State:
        points = [r for r in values.regions if r.get("type") in ("keypointlabels", "keypoint")]
        boxes = [r for r in values.regions if r.get("type") in ("rectanglelabels", "rectangle")
                 and r.get("id") != labeling.BOX_REGION_ID]
        text = values.text.get(labeling.COMMAND)
        if points:
            x, y = _region_pixels(region_point_pixels, points[-1])
            new = State(current.pose.replace(px=x, py=y), current.cad_index)
        elif boxes:
            mesh = self.model.dataset.cad.mesh(key.category, current.cad_index)
            new = State(fit_pose_to_box(mesh.vertices, current.pose,
                                        _region_pixels(region_box_pixels, boxes[-1])),
                        current.cad_index)
        elif text is not None:
            commands = parse_commands(text)
            if commands and all(c.kind == "undo" for c in commands):
                for _ in commands:
                    if session.history:
                        current = session.history.pop()
                return current
            cads = self.model.dataset.cad.indices(key.category)
            new = current
            for command in commands:
                new = apply_command(command, new, initial, cads)
        else:
            return current
        if new != current:
            session.history.append(current)
            del session.history[:-MAX_HISTORY]
        return new

    def _error(self, message: str) -> dict:
        return {"result": [command_result(f"{ERROR_MARK} {message}")],
                "model_version": self.model.model_version}


def _region_pixels(reader, region: dict) -> tuple[float, ...]:
    """Pixel coordinates of a drawn region; CommandError when it lacks the fields they need."""
    try:
        return tuple(float(v) for v in reader(region))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise CommandError("the drawn region has no readable position") from None


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
