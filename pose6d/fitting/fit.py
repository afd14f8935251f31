"""Auto-fit: from an initial pose (the model's or the annotator's rough one), search the pose whose
rendered silhouette best explains the photo (issue 11).

The score (``pose6d.fitting.score``) of a pose is a number in [0, 1] a person can read: 1 when
the rendered outline lies on the photo's edges and the silhouette covers the foreground in the
box. The moves and the pattern search are ``pose6d.fitting.search``'s.

The search (``fit_pose``) keeps the initial pose as a strong prior (docs/fitting.md): it
maximises score - prior penalty (PRIOR_WEIGHT * 0.5 * sum((delta / PRIOR_SIGMA)^2), a quadratic
pull towards the hypothesis it started from), coarse to fine: the photo window around the
object shrunk so that the object is about COARSE_PX, then FINE_PX, pixels across (the camera is
linear in viewport and px, py; pose6d.fitting.place), rendering only the object's window.
- Values searched: azimuth, elevation, theta, log distance, px, py, plus three nuisance
  stretches of the CAD model along its axes (the photographed object is another instance of the
  category; the final distance and centre are settled on the model as it is). Rotation moves
  are compensated (the silhouette's box keeps its place and size), so turning and moving act on
  the silhouette separately.
- Pattern search: +-step on each value, random step-sized directions when none helps, halved
  steps; distance and centre first at the coarse level.
- Hypotheses: the pose given, its azimuth turned by 180 deg (not for meshes whose half turn
  looks the same) and by a quarter either way (QUARTER_TURNS_DEG; searched only when placed at
  FLIP_MIN_SCORE and QUARTER_GAIN better than the pose given). These far turns are taken only
  when they explain the photo well (FLIP_MIN_SCORE), clearly better (FLIP_MARGIN) and with a
  visibly different silhouette (ALIKE_IOU); the caller's candidates need CANDIDATE_MARGIN. When
  every final hypothesis's outline lies on the photo's edges (the photographed model itself),
  its interior edges count too (pose6d.fitting.interior: a mug's handle in front of its body leaves
  the outline alike). Many candidates (all round: pose6d.fitting.turns) are screened: each is placed
  at the coarse level, the SCREEN_KEEP best are searched in full, FINE_RIVALS at the fine level.
- The prior steps back (a tenth of its weight) only when that gains STEP_BACK_GAIN of score.
  When the outline lies on the photo's edges (BOX_OUTLINE), the rotation is then refined by the
  model's own creases too (interior.refine_by_interior).
- Turns must earn their keep: when the outline fits only roughly (BOX_OUTLINE: another instance
  of the category), the rotation found is kept only if it scores ROTATION_GAIN above a fit that
  moves the model without turning it (``rotation_kept`` says when it did not).
- Never worse than the start: if the fitted pose scores below the initial one, the initial pose
  is returned (``message`` says so). The result says how sure it is (``margin``: score lead over
  the other hypothesis). Rotationally symmetric meshes (about z) keep their azimuth.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Mapping, Sequence

import numpy as np

from pose6d.cad_library import CadMesh
from pose6d.camera import InvalidPoseError, Pose
from pose6d.errors import BadInput
from pose6d.fitting.interior import judge, refine_by_interior
from pose6d.fitting.place import box_is_whole, fit_levels, place, settle_on_box
from pose6d.fitting.score import COARSE_TOL, OUTLINE_TOL, Score, score_pose
from pose6d.fitting.search import (COARSE_STEPS, FINE_STEPS, NX, SHAPE, TRANSLATION, apply_delta,
                               pattern_search, prior_penalty)
from pose6d.fitting.evidence import EvidenceLevel, ImageEvidence
from pose6d.fitting.silhouette import mesh_symmetry, silhouette_iou

FLIP_MARGIN = 0.08  # score lead the 180-deg hypothesis needs over the pose given
FLIP_MIN_SCORE = 0.75  # ... and explain the photo well: another instance of the category rarely
# does, and then outlines tell front from back no better than chance (docs/fitting.md)
ALIKE_IOU = 0.9  # ... and its silhouette must differ (IoU below this): else outlines cannot tell
CANDIDATE_MARGIN = 0.02  # the same for azimuth neighbours and the caller's candidates
QUARTER_TURNS_DEG: tuple[float, ...] = (90.0, -90.0)  # far hypotheses held to the flip's rule
QUARTER_GAIN = 0.05  # ... searched only when placed this much better than the pose given
# (and at least FLIP_MIN_SCORE)
NEIGHBOUR_DEG: tuple[float, ...] = ()  # azimuth neighbours tried (measured: no gain)
PRIOR_WEIGHT = 0.02  # the prior's weight (pose6d.fitting.search.prior_penalty)
COARSE_EVALS, FINE_EVALS, SETTLE_EVALS, STEP_BACK_EVALS = 75, 90, 25, 40
SCREEN_KEEP = 3  # hypotheses besides the given pose's searched in full after the screening
FINE_RIVALS = 2  # ... and taken on to the fine level (when at least as good as the given pose)
STEP_BACK_FACTOR, STEP_BACK_GAIN = 0.1, 0.03
# When the fitted outline lies on the photo's edges no better than this (another instance of the
# category, the usual case), the distance and centre that make the model span the object's box
# place it better than the outline does (docs/fitting.md: harder set, median centre error
# 12.5 -> 7.3 px), unless the box is cut by the photo's border (place.box_is_whole); above
# it (the photographed model itself) the outline places it best.
BOX_OUTLINE = 0.8
# Below BOX_OUTLINE a turn must also score this much above the start placed on the box (harder
# set, seeds 0-2, 144 objects: median rotation error 7.26 -> 6.78 deg (mean over the seeds; the
# initial 7.31), made worse by > 5 deg 3 -> 2; docs/fitting.md).
ROTATION_GAIN = 0.05
MIN_OUTLINE_PX = 12  # fewer outline pixels than this in a frame: not enough to judge
COMPENSATE = True  # rotation moves keep the silhouette's box in place (apply_delta)


# Bump when the score or the search changes: fits cached on disk (pose6d.fitting.cache) are redone.
FIT_VERSION = "2026.12.5"


class FitError(BadInput):
    """Inputs the fit cannot use: an invalid mesh or mode (the message says which)."""


@dataclasses.dataclass
class FitResult:
    """What fit_pose found.

    pose: the fitted pose (the initial one when nothing better was found). score, initial_score:
    score_pose of the fitted and the initial pose at the fine level, in [0, 1]. outline,
    silhouette: the two parts of ``score`` (silhouette NaN without a box). margin: score lead of
    the chosen hypothesis over the best other one (small = unsure which way the object faces;
    with interior edges judged, fit_interior's value lead).
    flip_considered / flip_taken: whether the 180-deg azimuth hypothesis was tried / chosen.
    evaluations: renders scored. seconds: wall time. message: why the pose was kept, if it was.
    rotation_kept: a full fit that kept the rotation and moved the model only (no turn explained
    the photo ROTATION_GAIN better).
    """

    pose: Pose
    score: float
    initial_score: float
    outline: float
    silhouette: float
    evaluations: int
    seconds: float
    margin: float = math.nan
    flip_considered: bool = False
    flip_taken: bool = False
    symmetry: str = "none"
    mode: str = "full"
    message: str = ""
    rotation_kept: bool = False

    @property
    def changed(self) -> bool:
        """True when the search's pose was returned; False when the initial pose was kept
        (``message`` says why)."""
        return self.message == ""


# --- The fit ---------------------------------------------------------------------------------

def as_pose(pose) -> Pose:
    """A Pose, or a mapping with the six values in radians (InvalidPoseError otherwise)."""
    if isinstance(pose, Pose):
        return pose
    if isinstance(pose, Mapping):
        return Pose.from_mapping(pose, degrees=False)
    raise InvalidPoseError(f"initial pose must be a Pose or a mapping, got {type(pose).__name__}")


def _unchanged(start: Pose, score: Score | None, t0: float, evals: int, message: str,
               mode: str, symmetry: str = "none") -> FitResult:
    s = score or Score(0.0, 0.0, math.nan, 0)
    return FitResult(start, s.total, s.total, s.outline, s.silhouette, evals,
                     time.perf_counter() - t0, symmetry=symmetry, mode=mode, message=message)


def pose_objective(level: EvidenceLevel, mesh: CadMesh, centre: Pose, size: float, tol: float,
                   weight: float, stretch: bool, nthreads: int):
    """x -> score of ``centre`` moved by x (search.apply_delta) minus the prior's penalty:
    the function the pattern search maximises at one evidence level (size: object pixels; tol:
    OUTLINE_TOL or COARSE_TOL; weight: the prior's; stretch: x[6:9] stretch the model)."""
    comp = mesh if COMPENSATE else None

    def f(x: np.ndarray) -> float:
        s = score_pose(level, mesh, apply_delta(centre, x, size, comp), size, tol, nthreads,
                       np.exp(x[6:9]) if stretch else None)
        return s.total - prior_penalty(x, weight)
    return f


def fit_pose(photo, mesh: CadMesh, initial_pose, bbox=None, *, mode: str = "full",
             candidates: Sequence[Pose] | None = None, allow_flip: bool = True,
             prior_weight: float = PRIOR_WEIGHT, nthreads: int = 1, stretch: bool = True,
             region: tuple | None = None, settle_box: bool = True,
             placed: Sequence[tuple[np.ndarray, float]] | None = None) -> FitResult:
    """Fit ``mesh``'s pose to ``photo`` starting from ``initial_pose``.

    photo: (H, W, 3) uint8 RGB, or an ImageEvidence (reused across meshes / calls; then ``bbox``
    is ignored: the evidence's own box counts). mesh: the CAD model. initial_pose: Pose (or a
    mapping of the six values, angles in radians). bbox: (x1, y1, x2, y2) pixels of the object
    or None (no foreground term then). mode: "full" (six values) or "translation" (distance and
    centre only, rotation kept). candidates: more starting poses (e.g. the annotator's), taken
    only with a margin. allow_flip: also try the far hypotheses (the azimuth turned by 180 deg
    and by a quarter either way). prior_weight: strength of the pull towards the start (0 =
    none). nthreads: ray-casting threads (1 = one core). stretch: let the search stretch the
    model along its axes (a nuisance: the photographed object is another instance; the final
    distance and centre are settled on the model as it is). settle_box: with a box, end on the
    placement that makes the model span it (when the outline fits only roughly: BOX_OUTLINE;
    not when the box touches the photo's border: the object is cut there).
    placed: the first step already made for the pose given and each candidate, in that order
    (turns.place_turns on the same evidence, with the same prior); used only when they match
    the hypotheses one for one (no flip or quarter turns tried).

    Returns a FitResult; the pose is unchanged (with ``message`` saying why) for a blank photo,
    an object outside the photo or with too little outline to judge. Raises FitError /
    ValueError (InvalidPoseError, EvidenceError) for unusable inputs.
    """
    t0 = time.perf_counter()
    if mode not in ("full", "translation"):
        raise FitError(f"mode must be 'full' or 'translation', got {mode!r}")
    start = as_pose(initial_pose)
    if not isinstance(mesh, CadMesh) or len(mesh.faces) == 0:
        raise FitError("mesh must be a CadMesh with faces")
    evidence = photo if isinstance(photo, ImageEvidence) else ImageEvidence(photo, bbox)
    symmetry = mesh_symmetry(mesh)
    setup = fit_levels(evidence, mesh, start, region)
    if isinstance(setup, str):
        return _unchanged(start, None, t0, 0, setup, mode, symmetry)
    initial = score_pose(setup.fine, mesh, start, setup.size, nthreads=nthreads)
    if evidence.blank:
        return _unchanged(start, initial, t0, 1, "blank photo: no edges to fit to", mode, symmetry)
    if initial.n_outline < MIN_OUTLINE_PX:
        return _unchanged(start, initial, t0, 1, "too little of the outline inside the photo",
                          mode, symmetry)
    active = list(range(6)) if mode == "full" else list(TRANSLATION)
    if symmetry == "rotational" and mode == "full":
        active.remove(0)
    if stretch and mode == "full":
        active += list(SHAPE)
    stretch = stretch and mode == "full"
    comp = mesh if COMPENSATE else None
    evals = 1

    def objective(level: EvidenceLevel, centre: Pose, tol: float, weight: float = prior_weight):
        return pose_objective(level, mesh, centre, setup.size, tol, weight, stretch, nthreads)

    # Hypotheses: (name, prior centre, starting offset from it); kind[name] says which rule
    # holds it: "given" (and its azimuth neighbours), "flip", "quarter" or "candidate".
    hyps, kind = [], {}

    def hypothesis(name: str, of_kind: str, centre: Pose, x0: np.ndarray | None = None) -> None:
        hyps.append((name, centre, np.zeros(NX) if x0 is None else x0))
        kind[name] = of_kind

    hypothesis("given", "given", start)
    if mode == "full" and symmetry != "rotational":
        for d in NEIGHBOUR_DEG:
            hypothesis(f"azimuth{d:+.0f}", "given", start, np.eye(NX)[0] * d)
    flip_considered = mode == "full" and allow_flip and symmetry == "none"
    if flip_considered:
        hypothesis("flip", "flip", start.replace(azimuth=start.azimuth + math.pi))
    if mode == "full" and allow_flip and symmetry != "rotational":
        for d in QUARTER_TURNS_DEG:
            hypothesis(f"quarter{d:+.0f}", "quarter",
                       start.replace(azimuth=start.azimuth + math.radians(d)))
    for i, c in enumerate(candidates or ()):
        hypothesis(f"candidate{i}", "candidate", as_pose(c))
    # Distance and centre first (cheap, and what initial poses get most wrong), then all values;
    # with many hypotheses (all round) only the SCREEN_KEEP best others go on to the second step.
    reuse = placed is not None and len(placed) == len(hyps)
    placed_hyps = []
    for k, (name, centre, x0) in enumerate(hyps):
        if reuse:
            x, fx = np.array(placed[k][0], dtype=np.float64), float(placed[k][1])
        else:
            x, fx, n = place(objective(setup.coarse, centre, COARSE_TOL), x0)
            evals += n
        placed_hyps.append((name, centre, x, fx))
    # A quarter turn is searched only when, once placed, it already explains the photo well and
    # clearly better than the pose given (it must then win as clearly as a flip): most do not
    # and cost one placement each.
    floor = max(FLIP_MIN_SCORE, max(p[3] for p in placed_hyps if p[1] is start) + QUARTER_GAIN)
    ranked = sorted((p for p in placed_hyps if p[1] is not start
                     and (kind[p[0]] != "quarter" or p[3] >= floor)),
                    key=lambda p: p[3], reverse=True)
    coarse_results = []
    for name, centre, x, _ in [p for p in placed_hyps if p[1] is start] + ranked[:SCREEN_KEEP]:
        x, fx, n = pattern_search(objective(setup.coarse, centre, COARSE_TOL), x,
                                  COARSE_STEPS / 2, active, COARSE_EVALS)
        evals += n
        coarse_results.append((name, centre, x, fx))
    # The given pose's group shares one prior: its best member goes on; the best alternatives
    # (flip or candidates, up to FINE_RIVALS) go on too when they are at least as good at the
    # coarse level, and the best of them must then win by a margin at the fine level.
    own = max((r for r in coarse_results if r[1] is start), key=lambda r: r[3])
    others = sorted((r for r in coarse_results if r[1] is not start), key=lambda r: r[3],
                    reverse=True)
    coarse_margin = own[3] - others[0][3] if others else math.nan

    def refine(name: str, centre: Pose, x: np.ndarray, _coarse: float):
        """The fine level from a coarse result: (name, pose, score, renders scored)."""
        f = objective(setup.fine, centre, OUTLINE_TOL)
        x, fx, n = pattern_search(f, x, FINE_STEPS, active, FINE_EVALS)
        if stretch:  # the CAD model as it is: settle distance and centre without the stretch
            x[6:9] = 0.0
            x, fx, n2 = pattern_search(objective(setup.fine, centre, OUTLINE_TOL), x,
                                       FINE_STEPS / 2, list(TRANSLATION), SETTLE_EVALS)
            n += n2
        pose = apply_delta(centre, x, setup.size, comp)
        score = score_pose(setup.fine, mesh, pose, setup.size, nthreads=nthreads)
        # The prior steps back when the photo clearly says more: a search with a tenth of the
        # pull must gain STEP_BACK_GAIN of score (an exact CAD model often does; another instance
        # of the category rarely does, and then the pose stays near the start).
        x2, _, n2 = pattern_search(objective(setup.fine, centre, OUTLINE_TOL,
                                             prior_weight * STEP_BACK_FACTOR), x, FINE_STEPS / 2,
                                   [i for i in active if i < 6], STEP_BACK_EVALS)
        pose2 = apply_delta(centre, x2, setup.size, comp)
        score2 = score_pose(setup.fine, mesh, pose2, setup.size, nthreads=nthreads)
        if score2.total >= score.total + STEP_BACK_GAIN:
            pose, score, x = pose2, score2, x2
        n3 = 0
        if mode == "full" and score.outline >= BOX_OUTLINE:
            # The photographed model itself: its own creases pin the rotation further (the
            # outline placed it; rotation moves keep its box in place).
            pose3, score3, n3 = refine_by_interior(setup.fine, mesh, centre, x, setup.size,
                                                   [i for i in active if i < 3],
                                                   prior_weight * STEP_BACK_FACTOR, comp,
                                                   nthreads, start_score=score)
            if score3.outline >= BOX_OUTLINE:
                pose, score = pose3, score3
        return name, pose, score, n + n2 + n3 + 2

    finals = [refine(*r) for r in [own] + [r for r in others if r[3] >= own[3]][:FINE_RIVALS]]
    evals += sum(r[3] for r in finals)
    best = finals[0]
    margin = coarse_margin
    if len(finals) > 1:
        # When every outline lies on the photo's edges, interior edges help decide (interior).
        judged = judge(setup.fine, mesh, finals, setup.size, BOX_OUTLINE, nthreads)
        evals += len(judged)
        value = judged or {r[0]: r[2].total for r in finals}
        rival = max(finals[1:], key=lambda r: value[r[0]])
        far = kind[rival[0]] in ("flip", "quarter")
        lead = FLIP_MARGIN if far else CANDIDATE_MARGIN
        alike = silhouette_iou(mesh, best[1], rival[1], setup.coarse.frame)
        evals += 2
        sure = not far or rival[2].total >= FLIP_MIN_SCORE
        # Alike silhouettes can still be told apart by the model's own interior edges.
        if (value[rival[0]] > value[best[0]] + lead and (alike < ALIKE_IOU or bool(judged))
                and sure):
            best, margin = rival, value[rival[0]] - value[best[0]]
        else:
            margin = value[best[0]] - value[rival[0]]
    name, pose, score, _ = best
    boxed = settle_box and box_is_whole(evidence)
    if boxed and score.outline < BOX_OUTLINE:
        pose, score, n = settle_on_box(setup.fine, mesh, pose, score, evidence, nthreads,
                                       floor=initial.total, size_px=setup.size)
        evals += n
    if mode == "full" and score.outline < BOX_OUTLINE:
        # Another instance of the category: its outline rarely pins the rotation, so a turn is
        # kept only when it explains the photo ROTATION_GAIN better than moving the model alone
        # (onto the box, as the fit itself would place it; else a translation fit).
        if boxed:
            moved, moved_score, n = settle_on_box(setup.fine, mesh, start, initial, evidence,
                                                  nthreads, floor=initial.total,
                                                  size_px=setup.size)
        else:
            r = fit_pose(evidence, mesh, start, mode="translation", prior_weight=prior_weight,
                         nthreads=nthreads, region=region, settle_box=False)
            moved, n = r.pose, r.evaluations
            moved_score = Score(r.score, r.outline, r.silhouette, 0)
        evals += n
        if score.total < moved_score.total + ROTATION_GAIN:
            if moved_score.total <= initial.total:
                return dataclasses.replace(
                    _unchanged(start, initial, t0, evals, "no pose found that explains the "
                               "photo better", mode, symmetry),
                    margin=margin, flip_considered=flip_considered, rotation_kept=True)
            return FitResult(moved, moved_score.total, initial.total, moved_score.outline,
                             moved_score.silhouette, evals, time.perf_counter() - t0, margin,
                             flip_considered, False, symmetry, mode, rotation_kept=True)
    if score.total < initial.total:
        return dataclasses.replace(
            _unchanged(start, initial, t0, evals, "no pose found that explains the photo better",
                       mode, symmetry), margin=margin, flip_considered=flip_considered)
    if mode == "full" and symmetry == "rotational":
        pose = pose.replace(azimuth=start.azimuth)
    pose = pose.replace(azimuth=_wrap(pose.azimuth), theta=_wrap(pose.theta))
    return FitResult(pose, score.total, initial.total, score.outline, score.silhouette, evals,
                     time.perf_counter() - t0, margin, flip_considered, kind[name] == "flip",
                     symmetry, mode)


def fit_translation(photo, mesh: CadMesh, initial_pose, bbox=None, **kwargs) -> FitResult:
    """fit_pose with the rotation kept: only distance and the centre (px, py) move."""
    return fit_pose(photo, mesh, initial_pose, bbox, mode="translation", **kwargs)


def _wrap(a: float) -> float:
    """An angle in radians in [-pi, pi) (unchanged, bit for bit, when it already is)."""
    return float(a) if -math.pi <= a < math.pi else float((a + math.pi) % (2.0 * math.pi) - math.pi)
