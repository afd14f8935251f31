"""Auto-fit from the command box (``fit``, ``fitxy``, ``fitcad``, ``fitaz``): the fitting
library (pose6d.fitting) on the object's photo, from the pose shown, and the note that says how
it went. Used by refinement.py outside the chain's lock (seconds of search)."""
from __future__ import annotations

import math
from typing import Any

from pose6d.camera import wrap_angle
from pose6d.dataset import ObjectKey
from pose6d.labeling import shown_pose

from ml_backend.chain import State, check_ranges
from ml_backend.commands import CommandError

TURN_NOTE_DEG = 20.0  # a fit that turns the azimuth further says so
NO_AUTOFIT = ("auto-fit is not installed here: it needs opencv-python-headless "
              "(pip install opencv-python-headless; the Docker image has it)")


def fit(host: Any, key: ObjectKey, state: State, mode: str,
        ranges: dict[str, tuple[float, float]]) -> tuple[State, str]:
    """Auto-fit from ``state`` with ``host``'s photo evidence and CAD library (refinement's
    RefinementHost): (the fitted state, a note saying how it went). Only a pose that scores
    better replaces the one shown; another model needs a clear lead. ``mode``: "" (fit),
    "translation" (fitxy), "cad" (fitcad), "all-round" (fitaz)."""
    try:  # OpenCV is optional (requirements-backend.txt and the Docker image have it)
        from pose6d.fitting.fit import fit_pose, fit_translation
        from pose6d.fitting.turns import fit_all_round
        from pose6d.fitting.cad import fit_cad
    except ImportError:
        raise CommandError(NO_AUTOFIT) from None
    evidence = host.photo_evidence(key)
    indices = host.cad.indices(key.category)
    if mode == "cad" or (mode == "all-round" and len(indices) > 1):
        meshes = {i: host.cad.mesh(key.category, i) for i in indices}
        found = fit_cad(evidence, meshes, state.pose, initial_index=state.cad_index,
                        all_round=mode == "all-round")
        cad, result = found.suggested_index, found.results[found.suggested_index]
        which = (f"; model {cad} explains the photo best (by {found.margin:.2f})"
                 if cad != state.cad_index else f"; model {cad} stays (no clear better one)")
    else:
        mesh = host.cad.mesh(key.category, state.cad_index)
        cad, which = state.cad_index, ""
        search = {"translation": fit_translation, "all-round": fit_all_round}.get(mode, fit_pose)
        result = search(evidence, mesh, state.pose)
    fitted = State(shown_pose(result.pose), cad)
    try:
        check_ranges(fitted.pose, ranges)
    except CommandError:
        return state, "fit: the best pose found leaves the allowed ranges; kept the pose"
    if not result.changed and cad == state.cad_index:
        return state, f"fit: pose kept ({result.message or 'nothing explains the photo better'})"
    turn = math.degrees(wrap_angle(fitted.pose.azimuth - state.pose.azimuth))
    flip = "; turned round (180 deg)" if result.flip_taken else \
        f"; turned {turn:+.0f} deg" if abs(turn) > TURN_NOTE_DEG else ""
    kept = "; rotation kept (no turn explains the photo clearly better)" \
        if result.rotation_kept else ""
    return fitted, (f"fit: score {result.initial_score:.2f} -> {result.score:.2f} "
                    f"in {result.seconds:.1f} s{flip}{kept}{which}; u undoes it")
