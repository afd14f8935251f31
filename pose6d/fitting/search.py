"""The auto-fit's search moves: a pose moved by a vector of deltas, the prior's penalty, and a
derivative-free pattern search (``pose6d.fitting.fit`` puts them together).

A move x has NX values: (d azimuth deg, d elevation deg, d theta deg, d log distance,
d px / size, d py / size) and three log stretches of the CAD model along its x, y, z axes (a
nuisance: the photographed object is another instance of the category).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import Pose
from pose6d.fitting.silhouette import projected_extent

# Prior: penalty = weight * 0.5 * sum((delta / sigma)^2) over (azimuth deg, elevation deg,
# theta deg, log distance, px / size, py / size).
# The last three values are nuisance stretches of the CAD model along its x, y, z axes (log):
# the photographed object is another instance of the category, its proportions differ.
PRIOR_SIGMA = np.array([5.4, 3.6, 2.7, 0.10, 0.08, 0.08, 0.2, 0.2, 0.2])
# Pattern-search steps (same units; px/py as a fraction of the object's size).
COARSE_STEPS = np.array([6.0, 3.0, 3.0, 0.04, 0.03, 0.03, 0.08, 0.08, 0.08])
FINE_STEPS = np.array([1.5, 1.0, 1.0, 0.01, 0.008, 0.008, 0.02, 0.02, 0.02])
MIN_STEPS = np.array([0.25, 0.25, 0.25, 0.002, 0.002, 0.002, 0.005, 0.005, 0.005])
ROTATION, TRANSLATION, SHAPE = (0, 1, 2), (3, 4, 5), (6, 7, 8)
NX = 9


def apply_delta(start: Pose, x: np.ndarray, size_px: float, mesh: CadMesh | None = None) -> Pose:
    """start moved by x = (d azimuth deg, d elevation deg, d theta deg, d log distance,
    d px / size, d py / size).

    With ``mesh``, rotation moves are compensated: the distance and the centre are then adjusted
    so that the projected mesh's box keeps the size and the centre it has without the rotation
    move (its hull projected, no rendering). Rotation and position then act on the silhouette
    separately, so the search can turn the object in place (a coupled move a coordinate search
    cannot find otherwise)."""
    base = start.replace(distance=start.distance * math.exp(x[3]), px=start.px + x[4] * size_px,
                         py=start.py + x[5] * size_px)
    if not (x[0] or x[1] or x[2]):
        return base
    el = float(np.clip(start.elevation + math.radians(x[1]), -math.pi / 2, math.pi / 2))
    turned = base.replace(azimuth=start.azimuth + math.radians(x[0]), elevation=el,
                          theta=start.theta + math.radians(x[2]))
    if mesh is None:
        return turned
    b0, b1 = projected_extent(mesh, base), projected_extent(mesh, turned)
    if b0 is None or b1 is None:
        return turned
    diag0, diag1 = math.hypot(*(b0[0][2:] - b0[0][:2])), math.hypot(*(b1[0][2:] - b1[0][:2]))
    turned = turned.replace(distance=turned.distance * diag1 / diag0)
    b1 = projected_extent(mesh, turned)
    if b1 is None:
        return turned
    shift = (b0[0][:2] + b0[0][2:]) / 2 - (b1[0][:2] + b1[0][2:]) / 2
    return turned.replace(px=turned.px + shift[0], py=turned.py + shift[1])


def prior_penalty(x: np.ndarray, weight: float) -> float:
    """weight * 0.5 * sum((x / PRIOR_SIGMA)^2): the pull towards the hypothesis' start."""
    return float(weight * 0.5 * np.sum((np.asarray(x) / PRIOR_SIGMA) ** 2))


def pattern_search(objective, x0: np.ndarray, steps: np.ndarray, active: Sequence[int],
                   max_evals: int, seed: int = 0, fx0: float | None = None
                   ) -> tuple[np.ndarray, float, int]:
    """Maximise ``objective`` (x -> float) from x0 by compass search over the ``active``
    coordinates: try +-step on each, move (and keep going the same way while it improves).
    When no coordinate move helps, try as many random directions (step-scaled, so coupled moves
    of several values are found), and only then halve the steps; stop below MIN_STEPS or after
    max_evals. Deterministic for a given seed. fx0: objective(x0) when the caller already knows
    it (not evaluated again). Returns (x, objective(x), evaluations)."""
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    fx, evals = (objective(x), 1) if fx0 is None else (float(fx0), 0)
    step = np.array(steps, dtype=np.float64)
    active = list(active)

    def directions():
        for i in active:
            for sign in (1.0, -1.0):
                d = np.zeros_like(x)
                d[i] = sign * step[i]
                yield d

    def random_directions():
        for _ in range(len(active)):
            d = np.zeros_like(x)
            d[active] = rng.normal(size=len(active))
            d[active] *= step[active] / max(1e-12, float(np.sqrt(np.mean(d[active] ** 2))))
            yield d

    while evals < max_evals:
        moved = False
        for candidates in (directions, random_directions):
            for d in candidates():
                fy = objective(x + d)
                evals += 1
                if fy > fx + 1e-6:
                    x, fx, moved = x + d, fy, True
                    while evals < max_evals:  # keep going while it pays
                        fy = objective(x + d)
                        evals += 1
                        if fy <= fx + 1e-6:
                            break
                        x, fx = x + d, fy
                if evals >= max_evals:
                    break
            if moved or evals >= max_evals:
                break
        if not moved:
            step *= 0.5
            if all(step[i] < MIN_STEPS[i] for i in active):
                break
    return x, fx, evals
