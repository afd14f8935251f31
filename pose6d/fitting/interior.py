"""The model's own interior edges (a mug's handle in front of its body, a car's windows), used by
pose6d.fitting.fit only when the outline lies on the photo's edges (BOX_OUTLINE: the photographed model
itself): to refine a fitted pose further (``refine_by_interior``) and to choose between poses
whose outlines fit equally well (``judge``). Another instance of the category has other
creases, and they mislead (docs/fitting.md), so its fits never look inside.

    value = score + INTERIOR_WEIGHT * interior_agreement          (pose6d.fitting.score)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.fitting.score import Score, interior_agreement, score_pose
from pose6d.fitting.search import COARSE_STEPS, apply_delta, pattern_search, prior_penalty
from pose6d.fitting.evidence import EvidenceLevel

INTERIOR_WEIGHT = 0.5  # interior agreement's weight next to the score
INTERIOR_EVALS = 40  # renders refine_by_interior may score
INTERIOR_GAIN = 0.03  # value it must gain to move the pose (0.01: demo seeds 0-2 worse)
INTERIOR_SCORE_LOSS = 0.01  # ... and score it may lose doing so


def interior_value(level: EvidenceLevel, mesh: CadMesh, pose: Pose, score: Score,
                   size_px: float, nthreads: int = 1) -> float:
    """score.total + INTERIOR_WEIGHT * interior agreement of ``pose`` (full-photo pixels) seen
    through ``level``'s frame; size_px: the object's size in photo pixels."""
    return score.total + INTERIOR_WEIGHT * interior_agreement(level, mesh, pose, size_px,
                                                              nthreads=nthreads)


def judge(level: EvidenceLevel, mesh: CadMesh, finals: list, size_px: float,
          outline_floor: float, nthreads: int = 1) -> dict[str, float]:
    """Values (interior_value) of the fit's final hypotheses, (name, pose, Score, renders)
    tuples, by name, when every outline reaches ``outline_floor``; else {} (the score alone
    decides: another instance of the category, whose interior edges mislead)."""
    if INTERIOR_WEIGHT <= 0 or min(r[2].outline for r in finals) < outline_floor:
        return {}
    return {name: interior_value(level, mesh, pose, score, size_px, nthreads)
            for name, pose, score, _ in finals}


def refine_by_interior(level: EvidenceLevel, mesh: CadMesh, centre: Pose, x: np.ndarray,
                       size_px: float, active: Sequence[int], prior_weight: float,
                       compensate: CadMesh | None = None, nthreads: int = 1,
                       start_score: Score | None = None) -> tuple[Pose, Score, int]:
    """A pattern search from ``centre`` moved by ``x`` (search.apply_delta; (NX,)) over the
    ``active`` values, maximising interior_value minus the prior's penalty (``prior_weight``),
    with coarse steps (a crease a few degrees off is still found). start_score: score_pose of
    the pose at ``x`` at this level, when the caller has it (not rendered again). Returns (pose,
    its Score, renders scored); the pose at ``x`` unless the search gains INTERIOR_GAIN of value
    while losing at most INTERIOR_SCORE_LOSS of score."""
    def value(xx: np.ndarray, score: Score | None = None) -> float:
        pose = apply_delta(centre, xx, size_px, compensate)
        if score is None:
            score = score_pose(level, mesh, pose, size_px, nthreads=nthreads)
        return interior_value(level, mesh, pose, score, size_px, nthreads) - \
            prior_penalty(xx, prior_weight)

    pose = apply_delta(centre, x, size_px, compensate)
    score = start_score
    if score is None:
        score = score_pose(level, mesh, pose, size_px, nthreads=nthreads)
    start = value(x, score)
    x2, best, n = pattern_search(value, x, COARSE_STEPS, list(active), INTERIOR_EVALS, fx0=start)
    n += 1 + (start_score is None)
    if best > start + INTERIOR_GAIN:
        # the interior edges must not pull the outline off the photo's (shading edges mislead)
        pose2 = apply_delta(centre, x2, size_px, compensate)
        score2 = score_pose(level, mesh, pose2, size_px, nthreads=nthreads)
        if score2.total >= score.total - INTERIOR_SCORE_LOSS:
            return pose2, score2, n + 1
        n += 1
    return pose, score, n
