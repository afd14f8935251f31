"""What a call shows: the pose and CAD model (a chain.State) that a call's Numbers and CAD
choice, or the caller's saved draft, put on the annotator's screen."""
from __future__ import annotations

from pose6d import labeling
from pose6d.camera import InvalidPoseError
from pose6d.labeling import NUMBER_SPECS, AnnotationValues, read_results

from ml_backend.caller import newest_drafts
from ml_backend.chain import State


def state_of(values: AnnotationValues, initial: State) -> State:
    """The pose and CAD model ``values`` show (``initial``'s camera; its CAD model when they
    choose none). InvalidPoseError when their Numbers are missing or unusable."""
    return State(values.pose(initial.pose.viewport), cad_choice(values, initial.cad_index))


def numbers_shown(values: AnnotationValues, initial: State) -> State | None:
    """The pose and CAD model a call's Numbers show (a command carries them all), else None."""
    if not all(n in values.numbers for n in NUMBER_SPECS):
        return None
    try:
        return state_of(values, initial)
    except InvalidPoseError:
        return None


def saved_state(task: dict, initial: State) -> State | None:
    """The pose of the requesting user's newest draft (Label Studio sends only theirs), None
    when there is none."""
    for item in newest_drafts(task):
        try:
            return state_of(read_results(item["result"]), initial)
        except InvalidPoseError:
            continue
    return None


def cad_choice(values: AnnotationValues, default: int) -> int:
    """The CAD model chosen (the gallery's Choices, or a command's), ``default`` without a
    readable one."""
    text = str(values.choices.get(labeling.CAD, default)).strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else default
