"""Where the first pose of each object comes from: pluggable, so that the dataset's initial
annotation, a predictions file or a real pose model can prefill the annotator's view."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from pathlib import Path
from typing import NamedTuple, Protocol

from pose6d.camera import Pose
from pose6d.dataset import Dataset, ObjectKey
from pose6d.errors import DataError


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
        self.entries = {}
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise DataError(f"cannot read predictions file {self.path}: {exc}") from None
        try:
            rows = json.loads(text) if text.lstrip().startswith("[") else [
                json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"predictions file {self.path} is not JSON / JSON lines: {exc}") from None
        for row in rows:
            self.entries[str(row["object_key"])] = row

    def initial(self, key: ObjectKey) -> InitialPose:
        row = self.entries.get(str(key))
        if row is None:
            return self.fallback.initial(key)
        base = self.fallback.initial(key)
        pose = Pose.from_mapping(row, degrees=True, viewport=row.get("viewport", base.pose.viewport))
        return InitialPose(pose, int(row.get("cad_index", base.cad_index)),
                           float(row.get("score", 1.0)), self.name)


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def make_pose_source(spec: str, dataset: Dataset) -> PoseSource:
    """Build a pose source from its setting: ``dataset``, ``file:PATH`` or ``python:module:attr``.

    ``python:module:attr`` names a callable taking the Dataset and returning a PoseSource; this is
    how a real pose estimator (loaded from local weights) plugs in.
    """
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
