"""Fitted initial poses kept on disk, so that a task opens without waiting for a fit.

One JSON file per object, ``annotations_new/.fits/<category>/<name>_<k>.json`` (the one folder
the backend may write; hidden, and not ``.npz``, so nothing reads it as labels), holding the
line ``pose6d.fitting.batch`` writes (pose in degrees, cad_index, score, initial_score, seconds) plus
what it was fitted from::

    "start": [azimuth, elevation, theta, distance, px, py, viewport, cad_index]  (radians)
    "fit_version": pose6d.fitting.fit.FIT_VERSION

An entry counts only for the same start and fit version: another pose source, a new pretrained
model or a changed fit refits instead of showing a stale pose. Entries are written atomically,
so processes sharing the dataset (gunicorn workers, replicas, setup_project) can fill it at once:
the worst case is one object fitted twice.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pose6d.camera import POSE_NAMES, Pose
from pose6d.dataset import SYNCED, ObjectKey
from pose6d.inout import atomic_write_bytes

FIT_CACHE = f"{SYNCED}/.fits"
START_DIGITS = 9  # start values are compared rounded: a pose read back from JSON is the same


def fit_version() -> str:
    from pose6d.fitting.fit import FIT_VERSION  # OpenCV: imported only when fits are really used

    return FIT_VERSION


def start_signature(pose: Pose, cad_index: int) -> list[float]:
    """What a fit started from, as compared by the cache: the six values (radians), the
    viewport and the CAD model, rounded to START_DIGITS."""
    values = [pose.azimuth, pose.elevation, pose.theta, pose.distance, pose.px, pose.py,
              pose.viewport, float(cad_index)]
    return [round(float(v), START_DIGITS) for v in values]


class FitCache:
    """The fitted poses of one dataset (see the module docstring)."""

    def __init__(self, data_root: str | Path, version: str | None = None):
        self.folder = Path(data_root) / FIT_CACHE
        self.version = version

    def _version(self) -> str:
        if self.version is None:
            self.version = fit_version()
        return self.version

    def path(self, key: ObjectKey) -> Path:
        return self.folder / key.category / f"{key.stem}.json"

    def get(self, key: ObjectKey, start: Pose, cad_index: int) -> dict[str, Any] | None:
        """The fit line of ``key`` fitted from (``start``, ``cad_index``) by this fit version;
        None when there is none (or it is unreadable or incomplete: it is then simply refitted)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("fit_version") != self._version() \
                or entry.get("start") != start_signature(start, cad_index) \
                or not all(_finite(entry.get(n)) for n in (*POSE_NAMES, "score", "cad_index")):
            return None
        return entry

    def put(self, key: ObjectKey, start: Pose, cad_index: int, line: dict[str, Any]) -> Path:
        """Keep the fit ``line`` (not an error line) of ``key`` fitted from ``start``."""
        if "error" in line:
            raise ValueError(f"not caching an error line for {key}: {line['error']}")
        entry = dict(line, start=start_signature(start, cad_index), fit_version=self._version())
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(entry).encode("utf-8"))
        return path


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
