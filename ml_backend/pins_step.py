"""Pins in the command-box loop (issue 21): the annotation's pin points -> pins -> a solved pose.

Label Studio sends every pin point of the annotation with each pin call (one label), in
creation order, but only where they are: which point is a model point (a click on the overlay)
and which its place in the photo, and the model point's 3D position (read at the pose shown when
it was clicked), are kept here, per chain (refinement_state.ChainRecord.pins, by region id), so
they survive a reload and later solves. A pin is a dict:

    {"model": region id, "target": region id or None, "point": [x, y, z] CAD units,
     "photo": [u, v] pixels or None, "cad": CAD index, "off": removed (unpin) or unusable,
     "shown": the six values (radians) shown when the model point was clicked,
     "by_cad": {CAD index as text: [x, y, z]} once the pin has been on more than one model,
     "off_at": the state key an undo brings the pin back at (unpin),
     "prior": the six values (radians) later solves hold to, once the annotator has set one
              by a command after pinning (adopt; kept on the first live pin, and handed to
              the next one when that pin is removed: _hand_over),
     "prior_undo": [[state key, the prior before the line that left it], ...] (restore)}

A point the backend has not seen is the target of the pin waiting for one, else a new model
point (ray cast at the pose shown). A pin whose model point the annotator deleted is removed
(the others solve again, as with unpin): dropped, or kept off while its photo point is still
there, so that point stays unused instead of being taken for a new pin's point.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose, project_points
from pose6d.labeling import PIN, pin_region, region_point_pixels
from pose6d.renderer import closest_surface
from pose6d.fitting.pins import PinError, model_points, normal_slides, solve_points

from ml_backend.chain import MAX_HISTORY
from ml_backend.commands import CommandError

MOVED_PX = 0.5  # a photo point sent back this far from where it was kept has been dragged


def live(pins: list[dict]) -> list[dict]:
    """The pins in use, numbered 1.. in this order (``pins``, ``unpin 2``)."""
    return [p for p in pins if not p.get("off")]


def complete(pins: list[dict]) -> list[dict]:
    return [p for p in live(pins) if p.get("photo") is not None]


def call_points(regions: list[dict]) -> list[dict]:
    """A call's pin points: with a pin call every pin point of the annotation (one label),
    in creation order; none with any other call."""
    return [r for r in regions if r.get("from_name") == PIN]


def holds(pins: list[dict], regions: list[dict]) -> bool:
    """Whether one of ``regions`` is a point of the chain's live ``pins`` (the call is that
    annotation's: a pin call carries every pin point of its annotation)."""
    ids = {p["model"] for p in live(pins)} | {p["target"] for p in live(pins) if p.get("target")}
    return any(r.get("id") in ids for r in regions)


def as_sent(regions: list[dict], width: int, height: int) -> list[dict]:
    """The call's readable pin points, where they were, as results with their ids: what a
    refused pin call returns, so that they stay (Label Studio drops a smart tool's own point
    once the answer comes) and come again with the next call."""
    return [pin_region(rid, u, v, width, height) for rid, (u, v) in _readable(regions)]


def _readable(regions: list[dict], pixels_of=region_point_pixels) -> list[tuple[str, list]]:
    """(id, [u, v] pixels) of each point with an id and finite coordinates."""
    points = []
    for region in regions:
        rid = region.get("id")
        try:
            uv = [float(v) for v in pixels_of(region)]
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if isinstance(rid, str) and all(math.isfinite(v) for v in uv):
            points.append((rid, uv))
    return points


def update(pins: list[dict], regions: list[dict], mesh: CadMesh, pose: Pose, cad: int,
           pixels_of=region_point_pixels) -> tuple[list[dict], bool, list[str]]:
    """(the pins after this call's points, whether a pin was completed or moved (solve again),
    notes). ``pins`` is changed in place and returned. PinError (after recording the point as
    unusable) for a model point off the mesh."""
    points = _readable(regions, pixels_of)
    # a point sent but unreadable (no coordinates, NaN) is still there: its pin stays
    present = {r.get("id") for r in regions if isinstance(r.get("id"), str)}
    number = {id(p): i for i, p in enumerate(live(pins), start=1)}
    anchor = _anchor_pin(pins)
    kept, solve, notes = [], False, []
    for pin in pins:  # points the annotator deleted
        if pin["model"] not in present:
            if pin.get("target") in present:  # its photo point stays, unused (as after unpin)
                if not pin.get("off"):
                    solve = solve or pin.get("photo") is not None
                    notes.append(f"pin {number[id(pin)]} removed (its model point was deleted; "
                                 "its photo point stays, unused)")
                pin["off"] = True
                pin.pop("off_at", None)  # an undo does not bring back a deleted point
                kept.append(pin)
            continue
        if pin.get("target") is not None and pin["target"] not in present:
            pin["target"], pin["photo"] = None, None
        kept.append(pin)
    pins[:] = kept
    _hand_over(pins, anchor)
    known = {p["model"]: p for p in pins} | {p["target"]: p for p in pins if p.get("target")}
    for rid, uv in points:
        pin = known.get(rid)
        if pin is not None:
            moved = pin.get("photo") is not None and math.dist(pin["photo"], uv) > MOVED_PX
            if rid == pin.get("target") and moved and not pin.get("off"):
                pin["photo"], solve = uv, True  # a photo point dragged elsewhere
            continue
        waiting = next((p for p in pins if not p.get("off") and p.get("target") is None), None)
        if waiting is not None:
            waiting["target"], waiting["photo"] = rid, uv
            known[rid], solve = waiting, True
            continue
        new = {"model": rid, "target": None, "point": None, "photo": None, "cad": cad,
               "off": False, "shown": list(pose.as_radians().values())}
        pins.append(new)
        known[rid] = new
        try:
            new["point"] = [float(v) for v in model_points(mesh, pose, np.array([uv]))[0]]
        except PinError:
            new["off"] = True
            raise PinError("that point is not on the model: a pin starts on the overlay "
                           "(delete the point, then click the model)") from None
        notes.append(f"pin {len(live(pins))}: model point set; now Ctrl+click where it is "
                     "in the photo")
    return pins, solve, notes


def carry(pins: list[dict], mesh_of: Callable[[int], CadMesh], pose: Pose,
          cad: int) -> str | None:
    """Move the live pins placed on another CAD model onto model ``cad`` (``mesh_of(cad)``):
    each point becomes the point of the new mesh seen where the old one is at ``pose`` (the same
    place on screen; a pixel off the new silhouette snaps as a click does), else the new mesh's
    surface point nearest to it. A pin keeps the point of each model it has been on, so going
    back to a model restores its own points exactly. A note, or None when nothing moved."""
    moving = [p for p in live(pins) if p.get("point") is not None and p.get("cad") != cad]
    if not moving:
        return None
    mesh, found = mesh_of(cad), 0
    for pin in moving:
        by_cad = pin.setdefault("by_cad", {})
        by_cad[str(pin.get("cad"))] = pin["point"]
        kept = by_cad.get(str(cad))
        if kept is None:
            kept = _seen_instead(mesh, pose, np.array(pin["point"], dtype=np.float64))
            by_cad[str(cad)] = kept
            found += 1
        pin["point"], pin["cad"] = kept, cad
    how = "the points seen where they were" if found == len(moving) else \
        "their own points on it" if not found else "their own points or those seen there"
    return f"{len(moving)} pin{'s' if len(moving) > 1 else ''} carried onto model {cad} " \
        f"({how}; pins lists their errors)"


def _seen_instead(mesh: CadMesh, pose: Pose, point: np.ndarray) -> list[float]:
    """The point of ``mesh`` seen at ``point``'s pixel at ``pose``, else its nearest surface
    point (CAD units)."""
    uv = project_points(point[None], pose)
    if np.isfinite(uv).all():
        try:
            return [float(v) for v in model_points(mesh, pose, uv)[0]]
        except PinError:
            pass
    return [float(v) for v in closest_surface(mesh, point[None])[0][0]]


def solve(pins: list[dict], pose: Pose, ranges: dict[str, tuple[float, float]],
          mesh: CadMesh) -> Pose:
    """The pose from the complete pins (pose6d.fitting.pins.solve_points; their points on
    ``mesh``, the model shown), ``pose`` without any."""
    done = complete(pins)
    if not done:
        return pose
    points = np.array([p["point"] for p in done], dtype=np.float64)
    targets = np.array([p["photo"] for p in done], dtype=np.float64)
    return solve_points(points, targets, pose, ranges, prior=_anchor(pins, pose),
                        slides=normal_slides(mesh, points), radius=mesh.radius)


def _anchor(pins: list[dict], pose: Pose) -> Pose:
    """The pose the prior of 3+ pins holds to: the pose shown when the first live pin was
    started (one or two pins turn theta and scale freely), with the values the annotator has
    set since by hand (``adopt``; both kept when that pin is removed: ``_hand_over``);
    ``pose`` when no pin keeps one."""
    pin = _anchor_pin(pins)
    prior = _prior_of(pin, pose) if pin is not None else None
    return prior or pose


def _anchor_pin(pins: list[dict]) -> dict | None:
    """The first live pin that keeps the pose shown when it was started."""
    return next((p for p in live(pins) if _six(p.get("shown")) is not None), None)


def _prior_of(pin: dict, like: Pose) -> Pose | None:
    """The anchor pin's prior (``like``'s camera): as ``adopt`` set it, else the pose shown
    when the pin was started; None when neither makes a pose."""
    return _kept_pose(pin.get("prior"), like) or _shown_then(pin, like)


def _kept_pose(values, like: Pose) -> Pose | None:
    """The Pose of six kept values (radians; ``like``'s camera), None when they make none."""
    six = _six(values)
    if six is None:
        return None
    try:
        return Pose(*six, viewport=like.viewport, focal=like.focal)
    except ValueError:  # InvalidPoseError: a value out of its domain
        return None


def _six(values) -> list[float] | None:
    """``values`` as six finite floats (a kept pose, radians), else None."""
    if not (isinstance(values, list) and len(values) == 6):
        return None
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _hand_over(pins: list[dict], was: dict | None) -> None:
    """``was``, the anchor pin before a pin was removed, is off now: the new anchor takes its
    prior (and the undo of it), so that removing the first pin changes neither the pose shown
    before pinning nor a value the annotator set since."""
    new = _anchor_pin(pins)
    if was is None or new is None or new is was:  # pins are appended: a new anchor means
        return  # that ``was`` went off or was dropped
    own = _six(was.get("prior")) or _six(was.get("shown"))
    new["prior"] = own
    # an undo entry's None (the prior was the pin's own shown pose) means ``was``'s pose here
    new["prior_undo"] = [[mark, previous if previous is not None else was.get("shown")]
                         for mark, previous in was.get("prior_undo") or []]


def adopt(pins: list[dict], before: Pose, after: Pose, mark: tuple) -> None:
    """The annotator changed the pose by a command (not a solve) from ``before`` to ``after``:
    each value changed becomes the prior's, so that a later solve holds elevation and theta to
    what the annotator set rather than to what was shown before the first pin. ``mark``: the
    key of the state before the line (chain.State.key); undoing back to it restores the prior
    as it was (``restore``)."""
    pin = _anchor_pin(pins)
    old, new = before.as_radians(), after.as_radians()
    prior = _prior_of(pin, after) if pin is not None else None
    if prior is None or old == new:
        return
    undo = pin.setdefault("prior_undo", [])  # [[mark, the prior before that line], ...]
    if not undo or undo[-1][0] != list(mark):
        undo.append([list(mark), pin.get("prior")])
        del undo[:-MAX_HISTORY]  # no undo reaches further back
    values = prior.as_radians()
    pin["prior"] = [new[n] if new[n] != old[n] else values[n] for n in values]


def residuals(pins: list[dict], pose: Pose) -> list[float | None]:
    """Each live pin's distance (px) from its model point at ``pose`` to its photo point;
    None while it waits for its photo point."""
    out = []
    for pin in live(pins):
        if pin.get("photo") is None or pin.get("point") is None:
            out.append(None)
            continue
        uv = project_points(np.array([pin["point"]]), pose)[0]
        out.append(float(np.hypot(*(uv - np.array(pin["photo"])))))
    return out


def describe(pins: list[dict], pose: Pose) -> str:
    """One line for ``pins`` and after each solve: 'pins: 1 2.1 px, 2 0.8 px, 3 waiting'."""
    parts = [f"{i} waiting" if r is None else f"{i} {r:.1f} px"
             for i, r in enumerate(residuals(pins, pose), start=1)]
    return "pins: " + (", ".join(parts) if parts else "none (the pin tool, 7, Ctrl+click a point "
                                                      "of the overlay, then its place in the photo)")


def unpin(pins: list[dict], number: int, mark: tuple | None = None) -> tuple[str, bool]:
    """Remove pin ``number`` (1..), or all with 0; its points stay on the photo, unused. (A
    note, whether the rest should solve again: a complete pin was removed and some remain.)
    ``mark``: the key of the state before the line (chain.State.key); undoing back to it
    brings the pin back (``restore``) when the rest solved again."""
    use, anchor = live(pins), _anchor_pin(pins)
    if number == 0:
        for pin in use:
            pin["off"] = True
        return f"{len(use)} pins removed (the pose stays; their points stay, unused)", False
    if not 1 <= number <= len(use):
        raise CommandError(f"there is no pin {number} ({len(use)} pins; pins lists them)")
    removed = use[number - 1]
    removed["off"] = True
    _hand_over(pins, anchor)
    again = removed.get("photo") is not None and bool(complete(pins))
    if again and mark is not None:
        removed["off_at"] = list(mark)
    rest = "the other pins solve again; u brings it back" if again else "the pose stays"
    return f"pin {number} removed ({rest})", again


def restore(pins: list[dict], key: tuple, bring_back: bool = True) -> str | None:
    """Bring back the pins removed by the line that left the state ``key`` (an undo to it);
    ``bring_back`` False: only forget that they could come back (the line left no undo step).
    A note, or None."""
    back = [p for p in pins if p.get("off") and p.get("off_at") == list(key)]
    for pin in back:
        pin["off"] = not bring_back
        del pin["off_at"]
    for pin in pins:  # the prior as it was before the lines undone (adopt)
        undo = pin.get("prior_undo") or []
        while undo and undo[-1][0] == list(key):
            previous = undo.pop()[1]
            if bring_back:
                pin["prior"] = previous
    if not (bring_back and back):
        return None
    return f"{len(back)} pin{'s' if len(back) > 1 else ''} back (unpin undone)"


def drawn(pins: list[dict], pose: Pose) -> list[tuple[int, tuple[float, float],
                                                        tuple[float, float] | None]]:
    """What the overlay draws of each live pin: (its number, as ``pins`` lists it; its model
    point's pixel at ``pose``; its photo point or None). Not drawn: a point behind the camera."""
    number = {id(p): i for i, p in enumerate(live(pins), start=1)}
    return [(number[id(pin)], uv, tuple(pin["photo"]) if pin.get("photo") is not None else None)
            for pin, uv in _model_pixels(pins, pose) if uv is not None]


def regions(pins: list[dict], pose: Pose, width: int, height: int,
            targets: bool = True) -> list[dict]:
    """The live pins' points as results with their ids: each model point where it is at
    ``pose`` (it moves with the model; held at the photo's border when the pose puts it
    outside: a point left out would be taken for one the annotator deleted), and with
    ``targets`` each photo point where it was put."""
    out = []
    for pin, uv in _model_pixels(pins, pose):
        if uv is None:  # behind the camera: where it was clicked, else on its photo point
            uv = _clicked_pixel(pin, pose) or pin.get("photo") or (width / 2, height / 2)
        u, v = min(max(uv[0], -0.5), width - 0.5), min(max(uv[1], -0.5), height - 0.5)
        out.append(pin_region(pin["model"], u, v, width, height))
        if targets and pin.get("photo") is not None:
            out.append(pin_region(pin["target"], *pin["photo"], width, height))
    return out


def _shown_then(pin: dict, like: Pose) -> Pose | None:
    """The pose shown when the pin's model point was clicked (``like``'s camera), None when
    the pin does not keep a usable one."""
    return _kept_pose(pin.get("shown"), like)


def _clicked_pixel(pin: dict, like: Pose) -> tuple[float, float] | None:
    """The pixel where the pin's model point was clicked (the point at the pose shown then)."""
    then = _shown_then(pin, like)
    if then is None:
        return None
    uv = project_points(np.array([pin["point"]]), then)[0]
    return (float(uv[0]), float(uv[1])) if np.isfinite(uv).all() else None


def _model_pixels(pins: list[dict], pose: Pose) -> list[tuple[dict, tuple[float, float] | None]]:
    """Each live pin with a model point, and that point's pixel at ``pose`` (None when it does
    not project: behind the camera)."""
    out = []
    for pin in live(pins):
        if pin.get("point") is None:
            continue
        uv = project_points(np.array([pin["point"]]), pose)[0]
        out.append((pin, (float(uv[0]), float(uv[1])) if np.isfinite(uv).all() else None))
    return out
