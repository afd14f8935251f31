"""The poses an annotator was shown, for undo, and the commands that change them (pure)."""
from __future__ import annotations

import dataclasses
import math

from pose6d.camera import POSE_NAMES, Pose
from pose6d.labeling import NUMBER_SPECS, shown_pose

from ml_backend.commands import Command, CommandError

MAX_HISTORY = 200
WRAPPED = ("azimuth", "theta")  # wrap around; every other value has limits


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
    # Poses shown, oldest first; the last is the one on screen. A fresh chain (new annotation,
    # or a restarted backend) starts at the first pose it sees: undo never goes back further.
    states: list[State]

    @property
    def current(self) -> State:
        return self.states[-1]

    def has_shown(self, state: State) -> bool:
        key = state.key()
        return any(s.key() == key for s in self.states)

    def show(self, state: State) -> None:
        """``state`` is on screen: cut the chain back to it when it is already in it (answers
        that were never applied), else append it (a model click, a fresh call)."""
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


def check_value(name: str, value: float, ranges: dict[str, tuple[float, float]]) -> None:
    """CommandError when ``value`` (UI units: degrees, CAD units, pixels; compared as shown,
    rounded) is outside ``ranges[name]``; angles that wrap (azimuth, theta) have no limits."""
    if name in WRAPPED:
        return
    spec, (lo, hi) = NUMBER_SPECS[name], ranges[name]
    shown = round(value, spec.decimals)
    if not lo <= shown <= hi:
        unit = f" {spec.unit}" if spec.unit else ""
        raise CommandError(f"{name} {shown:g}{unit} is outside its range {lo:g}..{hi:g}; "
                           "nothing changed")


def check_ranges(pose: Pose, ranges: dict[str, tuple[float, float]]) -> None:
    """``check_value`` for each of a pose's six values."""
    deg = pose.as_degrees()
    for name in POSE_NAMES:
        check_value(name, deg[name], ranges)


def apply_command(command: Command, state: State, initial: State, cads: list[int],
                  ranges: dict[str, tuple[float, float]]) -> State:
    """One pose command applied to a state (pure; angles in degrees on the command side).
    CommandError for a value outside ``ranges`` or an unknown CAD model: never clamped."""
    pose, cad = state.pose, state.cad_index
    if command.kind in ("add", "set"):
        deg = pose.as_degrees()
        value = deg[command.name] + command.value if command.kind == "add" else command.value
        check_value(command.name, value, ranges)
        deg[command.name] = value
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
    return state  # refresh, and the commands that do not change the pose
