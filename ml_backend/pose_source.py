"""Where the first pose of each object comes from: pluggable, so that the dataset's initial
annotation, a predictions file or a real pose model can prefill the annotator's view."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol

from pose6d.camera import Pose
from pose6d.dataset import Dataset, ObjectKey
from pose6d.fitting.cache import FitCache
from pose6d.predictions import prediction_pose, read_predictions

log = logging.getLogger("ml_backend")


@dataclasses.dataclass(frozen=True)
class InitialPose:
    pose: Pose
    cad_index: int
    score: float
    source: str  # what made it, for model_version


class TaskContext(NamedTuple):
    """What a task starts from: its object, the initial pose and the photo's size (pixels)."""

    key: ObjectKey
    initial: InitialPose
    width: int
    height: int


class PoseSource(Protocol):
    name: str

    def initial(self, key: ObjectKey) -> InitialPose:
        """The proposed pose of one object; raises DataError when there is none."""


class DatasetPoseSource:
    """The pretrained model's output as the dataset stores it (annotations/<cat>/<name>_<k>.npz)."""

    name = "initial-annotation"

    def __init__(self, dataset: Dataset, cache_size: int = 200_000):
        self.dataset = dataset
        # Initial annotations are never rewritten, so a record read once stays true.
        self._read = functools.lru_cache(maxsize=cache_size)(dataset.read)

    def initial(self, key: ObjectKey) -> InitialPose:
        record = self._read(key)
        score = float(record.extra.get("score", 1.0)) if _is_number(record.extra.get("score", 1.0)) else 1.0
        return InitialPose(record.pose, record.cad_index, score, self.name)


class FittedPoseSource:
    """Another source's pose fitted to the photo (pose6d.fitting.fit) before it is shown: the prefill
    option (``--prefill-fit``). The score is the fit's (0-1, see pose6d.fitting.fit), the CAD model the
    source's. Fits are kept in the dataset's FitCache (``setup_project --prefill-fit`` fills it
    ahead), so a task opens at the speed of a file read; one missing there is fitted on the
    spot (about a second) and kept. An object the fit cannot use keeps the source's pose.
    """

    def __init__(self, base: PoseSource, dataset: Dataset,
                 evidence: Callable[[ObjectKey], Any], memo_size: int = 4096):
        self.base = base
        self.dataset = dataset
        self.evidence = evidence  # the object's ImageEvidence (the host caches photos)
        self.name = f"{base.name}+fit"
        self.cache = FitCache(dataset.root)
        # Refinement asks for the initial pose on every call: the file is read once per start.
        self._fitted = functools.lru_cache(maxsize=memo_size)(self._fit)

    def initial(self, key: ObjectKey) -> InitialPose:
        start = self.base.initial(key)
        return self._fitted(key, start)

    def known(self, key: ObjectKey) -> InitialPose:
        """The fitted pose when a fit is kept, else the source's: no fit runs (the faint
        neighbours of a dense photo, drawn on every call)."""
        start = self.base.initial(key)
        line = self.cache.get(key, start.pose, start.cad_index)
        if line is None:
            return start
        pose = Pose.from_mapping(line, degrees=True, viewport=start.pose.viewport)
        return InitialPose(pose, int(line["cad_index"]), float(line["score"]), self.name)

    def _fit(self, key: ObjectKey, start: InitialPose) -> InitialPose:
        line = self.cache.get(key, start.pose, start.cad_index)
        if line is None:
            from pose6d.fitting.batch import fit_start  # OpenCV: only when fits are used

            try:
                line = fit_start(self.evidence(key), self.dataset.cad, key, start.pose,
                                 start.cad_index)
            except (ValueError, OSError) as exc:  # no photo, no box, a degenerate pose...
                log.warning("prefill fit of %s failed, showing the source's pose: %s", key, exc)
                return start
            try:
                self.cache.put(key, start.pose, start.cad_index, line)
            except OSError as exc:  # a read-only or full disk: shown anyway, fitted again later
                log.warning("prefill fit of %s not kept: %s", key, exc)
        pose = Pose.from_mapping(line, degrees=True, viewport=start.pose.viewport)
        return InitialPose(pose, int(line["cad_index"]), float(line["score"]), self.name)


class PredictionsFilePoseSource:
    """A JSON (object) or JSON-lines file of predictions, keyed by object key:

    {"object_key": "car/n02814533_10_0", "azimuth": 30.0, "elevation": 10.0, "theta": 0.0,
     "distance": 5.0, "px": 320, "py": 240, "cad_index": 2, "score": 0.8}  (angles in degrees)
    Objects missing from the file fall back to the dataset's initial annotation.
    """

    def __init__(self, path: Path, fallback: PoseSource):
        self.path = Path(path)
        self.name = f"file-{self.path.stem}"
        self.fallback = fallback
        self.entries = read_predictions(self.path)  # auto_fit's error lines: fallback

    def initial(self, key: ObjectKey) -> InitialPose:
        row = self.entries.get(str(key))
        if row is None:
            return self.fallback.initial(key)
        base = self.fallback.initial(key)
        pose, cad_index, score = prediction_pose(row, base.pose.viewport, base.cad_index)
        return InitialPose(pose, cad_index, score, self.name)


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def make_pose_source(spec: str, dataset: Dataset,
                     fit_evidence: Callable[[ObjectKey], Any] | None = None) -> PoseSource:
    """Build a pose source from its setting: ``dataset``, ``file:PATH`` or ``python:module:attr``.

    ``python:module:attr`` names a callable taking the Dataset and returning a PoseSource; this is
    how a real pose estimator (loaded from local weights) plugs in. ``fit_evidence`` (the
    object's ImageEvidence): fit the source's poses to the photos before showing them.
    """
    source = _base_source(spec, dataset)
    return source if fit_evidence is None else FittedPoseSource(source, dataset, fit_evidence)


def _base_source(spec: str, dataset: Dataset) -> PoseSource:
    base = DatasetPoseSource(dataset)
    if spec in ("", "dataset"):
        return base
    if spec.startswith("file:"):
        return PredictionsFilePoseSource(Path(spec[5:]), base)
    if spec.startswith("python:"):
        module_name, _, attr = spec[7:].partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(dataset)
    raise ValueError(f"unknown pose source {spec!r}: use dataset, file:PATH or python:module:callable")
