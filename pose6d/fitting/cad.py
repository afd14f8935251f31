"""Choosing the CAD model: every model of the category fitted to the photo (pose6d.fitting.fit), the best
suggested only with a clear lead (outlines of category-level models differ little,
docs/fitting.md).

    found = fit_cad(photo, {1: mesh1, 2: mesh2}, initial_pose, bbox, initial_index=1)
    found.suggested_index, found.results[found.suggested_index].pose
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from pose6d.cad_library import CadMesh
from pose6d.fitting.fit import PRIOR_WEIGHT, FitError, FitResult, as_pose, fit_pose
from pose6d.fitting.turns import all_round_turns, fit_all_round, place_turns
from pose6d.fitting.evidence import ImageEvidence

CAD_SWITCH_MARGIN = 0.03  # score lead another model needs over the one shown
ALL_ROUND_MODELS = 2  # all round: models fitted in full after the screening (and the one shown)


@dataclasses.dataclass
class CadFitResult:
    """fit_cad's answer: every model's FitResult, the suggested model and how sure that is.

    best_index: the highest-scoring model. suggested_index: best_index when it beats the
    initial model by ``switch_margin`` (or there is no initial model), else the initial model.
    margin: best score minus the second best."""

    results: dict[int, FitResult]
    best_index: int
    suggested_index: int
    margin: float

    @property
    def scores(self) -> dict[int, float]:
        return {i: r.score for i, r in self.results.items()}


def fit_cad(photo, meshes: Mapping[int, CadMesh], initial_pose, bbox=None, *,
            initial_index: int | None = None, switch_margin: float = CAD_SWITCH_MARGIN,
            all_round: bool = False, step_deg: float = 30.0, **kwargs) -> CadFitResult:
    """Fit every CAD model of the category (meshes: cad_index -> CadMesh) from the same initial
    pose on the same image evidence; suggest the best one only when it leads the initial model
    by ``switch_margin`` (outlines of category-level models differ little, docs/fitting.md).
    all_round: for an object turned far off whose shown model may be wrong too: the models are
    screened all round (screen_models) and the ALL_ROUND_MODELS best, with the initial model,
    are fitted with fit_all_round (``results`` holds only those). kwargs go to fit_pose /
    fit_all_round."""
    if not meshes:
        raise FitError("fit_cad needs at least one mesh")
    evidence = photo if isinstance(photo, ImageEvidence) else ImageEvidence(photo, bbox)
    meshes = {int(i): m for i, m in meshes.items()}
    if all_round:
        # every model placed all round once: ranked here, reused by the all-round fits
        placements = _place_models(evidence, meshes, initial_pose, step_deg,
                                   kwargs.get("prior_weight", PRIOR_WEIGHT),
                                   kwargs.get("nthreads", 1))
        chosen = _best_models(placements, ALL_ROUND_MODELS)
        if initial_index is not None and int(initial_index) in meshes:
            chosen.add(int(initial_index))
        results = {i: fit_all_round(evidence, meshes[i], initial_pose, step_deg=step_deg,
                                    placed=placements[i], **kwargs) for i in sorted(chosen)}
    else:
        results = {i: fit_pose(evidence, m, initial_pose, **kwargs) for i, m in meshes.items()}
    ranked = sorted(results, key=lambda i: results[i].score, reverse=True)
    best = ranked[0]
    margin = results[best].score - results[ranked[1]].score if len(ranked) > 1 else math.nan
    suggested = best
    if initial_index is not None and int(initial_index) in results and best != initial_index:
        if results[best].score < results[int(initial_index)].score + switch_margin:
            suggested = int(initial_index)
    return CadFitResult(results, best, suggested, margin)


def screen_models(photo, meshes: Mapping[int, CadMesh], initial_pose, bbox=None,
                  step_deg: float = 30.0, keep: int = ALL_ROUND_MODELS,
                  nthreads: int = 1) -> set[int]:
    """The ``keep`` models (cad indices) that explain the photo best after only being placed
    (turns.place_turns) at the pose given and at every ``step_deg`` turn of its azimuth: a
    cheap ranking before the all-round fit, which costs about ten times more per model. photo
    and bbox as for fit_pose."""
    evidence = photo if isinstance(photo, ImageEvidence) else ImageEvidence(photo, bbox)
    return _best_models(_place_models(evidence, meshes, initial_pose, step_deg, PRIOR_WEIGHT,
                                      nthreads), keep)


def _place_models(evidence: ImageEvidence, meshes: Mapping[int, CadMesh], initial_pose,
                  step_deg: float, prior_weight: float, nthreads: int) -> dict[int, list | None]:
    """place_turns of every model at the pose given and every ``step_deg`` turn."""
    turns = [0.0] + all_round_turns(step_deg)
    start = as_pose(initial_pose)
    return {int(i): place_turns(evidence, m, start, turns, prior_weight=prior_weight,
                                nthreads=nthreads) for i, m in meshes.items()}


def _best_models(placements: Mapping[int, list | None], keep: int) -> set[int]:
    """The ``keep`` models whose best placed turn scores highest (unplaceable ones last)."""
    best = {i: max((fx for _, fx in p), default=0.0) if p else 0.0
            for i, p in placements.items()}
    return set(sorted(best, key=best.get, reverse=True)[:max(1, keep)])
