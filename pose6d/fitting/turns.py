"""The azimuth all round (the ``fitaz`` command): an object the pose shown has turned far away.

Every turn of the azimuth is first only placed (distance and centre at the coarse level:
``place_turns``, whose scores also rank CAD models in pose6d.fitting.cad); fit_pose then takes the
turns as candidates, searching the SCREEN_KEEP best in full.

    result = fit_all_round(photo, mesh, shown_pose, bbox)     # every 30 deg
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose, wrap_angle
from pose6d.fitting.fit import PRIOR_WEIGHT, FitError, FitResult, as_pose, fit_pose, pose_objective
from pose6d.fitting.place import fit_levels, place
from pose6d.fitting.score import COARSE_TOL
from pose6d.fitting.search import NX
from pose6d.fitting.evidence import ImageEvidence


def turned_poses(start: Pose, turns_deg: Sequence[float]) -> list[Pose]:
    """``start`` with its azimuth turned by each of ``turns_deg`` (degrees; 0: ``start`` itself)."""
    return [start if d == 0 else start.replace(azimuth=wrap_angle(start.azimuth + math.radians(d)))
            for d in turns_deg]


def place_turns(photo, mesh: CadMesh, initial_pose, turns_deg: Sequence[float], bbox=None, *,
                prior_weight: float = PRIOR_WEIGHT, nthreads: int = 1
                ) -> list[tuple[np.ndarray, float]] | None:
    """fit_pose's first step for ``initial_pose`` turned by each of ``turns_deg`` (degrees of
    azimuth): distance and centre placed at the coarse level. Returns (x (NX,), score minus the
    prior's penalty) per turn, which fit_all_round can reuse (``placed``); None when the pose
    cannot be fitted (fit_pose's message says why)."""
    start = as_pose(initial_pose)
    evidence = photo if isinstance(photo, ImageEvidence) else ImageEvidence(photo, bbox)
    setup = fit_levels(evidence, mesh, start)
    if isinstance(setup, str) or evidence.blank:
        return None
    out = []
    for centre in turned_poses(start, turns_deg):
        f = pose_objective(setup.coarse, mesh, centre, setup.size, COARSE_TOL, prior_weight,
                           False, nthreads)
        x, fx, _ = place(f, np.zeros(NX))
        out.append((x, fx))
    return out


def fit_all_round(photo, mesh: CadMesh, initial_pose, bbox=None, step_deg: float = 30.0,
                  placed: Sequence[tuple[np.ndarray, float]] | None = None,
                  **kwargs) -> FitResult:
    """fit_pose that also starts from the azimuth turned by every ``step_deg`` (degrees) all
    round: for an object the pose shown has turned far away (what an annotator asks for; each
    turn is a candidate, taken only with CANDIDATE_MARGIN). Slower: every turn is placed
    (distance and centre) at the coarse level, the SCREEN_KEEP best are searched in full and
    up to FINE_RIVALS of those at the fine level. placed: place_turns of the pose given and
    these turns ([0] + all_round_turns(step_deg)) on the same evidence, when already made."""
    start = as_pose(initial_pose)
    turns = all_round_turns(step_deg)
    kwargs.setdefault("allow_flip", 180.0 not in turns)  # the half turn is a turn like the others
    return fit_pose(photo, mesh, start, bbox, candidates=turned_poses(start, turns),
                    placed=placed, **kwargs)


def all_round_turns(step_deg: float = 30.0) -> list[float]:
    """The azimuth turns (degrees) fit_all_round tries besides the pose given: every
    ``step_deg`` all round."""
    if not 0.0 < step_deg < 360.0:
        raise FitError(f"step_deg must be in (0, 360) degrees, got {step_deg}")
    return [k * step_deg for k in range(1, int(round(360.0 / step_deg)))]
