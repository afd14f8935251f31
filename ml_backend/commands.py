"""The annotator's command language, typed in the one-line command box (Enter runs it).

Tokens run left to right, separated by spaces or commas:
  a+ a- a++ a--   azimuth by the fine / coarse step (e elevation, t theta, d distance, x px, y py)
  a+7 d-0.5       by an amount (degrees, CAD units, pixels)
  a=30 x=412      set a value
  f               flip: azimuth + 180 (the most common model error)
  n  p  c3        next / previous CAD model, or the model numbered 3 (the number under its
                  picture: the models' file names, so a category may have 1, 2, 4)
  q1 .. q4        object quality: good, partially visible, barely visible, bad quality - no object
  dn  dy          dense scene: no / yes
  o  o=tint       next overlay style (edges, tint, solid, off), or that one
  fit             auto-fit the pose shown to the photo (last on its line; u undoes it)
  fitxy  fitcad   the same keeping the rotation (centre and distance only) / trying every model
  fitaz           the same trying the azimuth all round (every 30 deg) with the models that look
                  best: an object turned far off (the model shown may be wrong too)
  pins            list the pins (the pin key point tool, 7, then Ctrl+click a model point and
                  its place in the photo) with how far each model point is from its place (px)
  unpin 2  unpin  remove pin 2 (the others solve again; u: back) / every pin (pose stays)
  solve           solve the pose from the pins again now (after setting elevation or theta by
                  hand, which the pins then hold to: the rest is fitted to them)
  copy 3          take the rotation of object 3 of the same photo (then fit / fitxy places it)
  r               reset to the model's initial pose and CAD model
  u               undo the last change (repeatable)
  .               re-render at the values shown (after clicking a model in the gallery)
  ?               show this cheat sheet in the box

A value outside its range (elevation -90..90, distance and the centre within the labeling
config's limits) is an error that changes nothing: it is never clamped.

Label Studio keeps the submitted lines in the box until our answer clears it; when answers
cross (it applies only the newest), the next call carries every unanswered line, so no command
is lost. Lines the backend wrote (errors, help) start with a mark and are never run again. One
line can still be lost, in Label Studio: an answer landing between an Enter and its call (sent
from a timer) empties the box first; the call then holds no typed line, and the box says so.
"""
from __future__ import annotations

import dataclasses
import re

from pose6d.errors import BadInput
from ml_backend.overlay_regions import OVERLAY_STYLES
from pose6d.labeling import DENSE_VALUES, NUMBER_SPECS, QUALITY_VALUES

AXES = {"a": "azimuth", "e": "elevation", "t": "theta", "d": "distance", "x": "px", "y": "py"}
ERROR_MARK = "\u26a0"  # the backend's error messages start with this; it is never a command
INFO_MARK = "\u2139"  # the backend's notes (help, warnings that changed nothing) start with this
# One line per topic, shown by "?" (and in README "Annotating").
_A, _D, _X = NUMBER_SPECS["azimuth"], NUMBER_SPECS["distance"], NUMBER_SPECS["px"]
CHEAT_SHEET = (  # short enough to show whole in the page's message area (9 lines at 330 px)
    f"a e t d x y: a+ a- fine ({_A.fine:g} deg, {_D.fine:g}, {_X.fine:g} px), a++ a-- coarse "
    f"({_A.coarse:g} deg, {_D.coarse:g}, {_X.coarse:g} px), a+7, a=30",
    "f flip / n p model / c3 the model numbered 3 / q1-q4 quality / dn dy dense / o overlay / "
    "r reset / u undo",
    "fit: auto-fit (fitxy: centre and distance, fitcad: every model, fitaz: azimuth all round)",
    "pins: smart tools' first key point, 7, Ctrl+click an overlay point, then its place "
    "(pins, unpin 2, unpin, solve); copy 3: object 3's rotation",
    "submit: Shift+Tab, then Ctrl+Enter",
)

_STEP = re.compile(r"^([aetdxy])(\+\+|--|\+|-)$")
_DELTA = re.compile(r"^([aetdxy])([+-]\d+(?:\.\d*)?|[+-]\.\d+)$")
_SET = re.compile(r"^([aetdxy])=(-?\d+(?:\.\d*)?|-?\.\d+)$")
_CAD = re.compile(r"^c=?(\d{1,6})$")  # a CAD index, not a number that overflows int()
FIT_MODES = {"fit": "full", "fitxy": "translation", "fitcad": "cad", "fitaz": "all-round"}
_QUALITY = re.compile(r"^q([1-%d])$" % len(QUALITY_VALUES))
_OVERLAY = re.compile(r"^o=(\w+)$")
_NUMBERED = re.compile(r"^(unpin|copy)=?(\d{1,6})$")
_JOIN = re.compile(r"\b(unpin|copy)\s+(\d)")  # "unpin 2" is one token


class CommandError(BadInput):
    """A token that is not a command, or a value out of range; the message says which."""


@dataclasses.dataclass(frozen=True)
class Command:
    """kind: add | set | flip | cad_next | cad_prev | cad_set | reset | undo | refresh | help |
    quality | dense | overlay | fit | pins | solve | unpin (value: the pin, 0 = all) | copy
    (value: the object's index k in its photo). name: the pose value (add / set), the label
    (quality / dense), the overlay style ("" = the next one) or the fit's mode (FIT_MODES'
    values)."""

    kind: str
    name: str = ""
    value: float = 0.0


def parse_commands(text: str) -> list[Command]:
    """Parse the command box's text; raises CommandError for the first bad token."""
    lines = [line.split(ERROR_MARK, 1)[0].split(INFO_MARK, 1)[0] for line in text.splitlines()]
    joined = _JOIN.sub(r"\1\2", " ".join(lines).strip().lower())
    tokens = [tok for tok in re.split(r"[\s,;]+", joined) if tok]
    if not tokens:
        return [Command("refresh")]
    return [_parse_token(tok) for tok in tokens]


def _parse_token(tok: str) -> Command:
    simple = {"f": "flip", "flip": "flip", "n": "cad_next", "next": "cad_next", "p": "cad_prev",
              "prev": "cad_prev", "r": "reset", "reset": "reset", "u": "undo", "undo": "undo",
              ".": "refresh", "=": "refresh", "?": "help", "h": "help", "help": "help"}
    if tok in simple:
        return Command(simple[tok])
    if m := _STEP.match(tok):
        spec = NUMBER_SPECS[AXES[m.group(1)]]
        step = spec.coarse if len(m.group(2)) == 2 else spec.fine
        return Command("add", spec.name, step if m.group(2)[0] == "+" else -step)
    if m := _DELTA.match(tok):
        return Command("add", AXES[m.group(1)], float(m.group(2)))
    if m := _SET.match(tok):
        return Command("set", AXES[m.group(1)], float(m.group(2)))
    if m := _CAD.match(tok):
        return Command("cad_set", value=float(m.group(1)))
    if m := _QUALITY.match(tok):
        return Command("quality", QUALITY_VALUES[int(m.group(1)) - 1])
    if tok in ("dn", "dy"):
        return Command("dense", DENSE_VALUES[tok == "dy"])
    if tok == "o":
        return Command("overlay")
    if tok in ("pins", "unpin", "solve"):
        return Command(tok)
    if m := _NUMBERED.match(tok):
        if m.group(1) == "unpin" and int(m.group(2)) == 0:
            raise CommandError("pins are numbered from 1 (pins lists them)")
        return Command(m.group(1), value=float(m.group(2)))
    if tok in FIT_MODES:
        return Command("fit", FIT_MODES[tok])
    if m := _OVERLAY.match(tok):
        if m.group(1) not in OVERLAY_STYLES:
            raise CommandError(f"unknown overlay style {m.group(1)!r} "
                               f"(o={' o='.join(OVERLAY_STYLES)})")
        return Command("overlay", m.group(1))
    raise CommandError(f"unknown command {tok[:40]!r} (try a++ e- d+ x-- a=30 f n c2 q1 dn o r u, "
                       "pins, unpin 2, solve, copy 3, ? for help)")
