"""Choosing between poses whose outlines fit equally well by the model's own interior edges (a
mug's handle in front of its body, a car's windows): used by pose6d.fit only when every outline
lies on the photo's edges (BOX_OUTLINE: the photographed model itself). Another instance of the
category has other creases, and they mislead (docs/fitting.md), so its fits never look inside.

    value = score + INTERIOR_WEIGHT * interior_agreement          (pose6d.fit_score)
"""
from __future__ import annotations

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.fit_score import Score, interior_agreement
from pose6d.image_evidence import EvidenceLevel

INTERIOR_WEIGHT = 0.5  # interior agreement's weight next to the score


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
