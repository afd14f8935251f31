"""A predictions file: one pose per object from a pose model, as JSON (an array) or JSON lines.

Each row: ``{"object_key": "car/n02814533_10_0", "azimuth": 30.0, "elevation": 10.0,
"theta": 0.0, "distance": 5.0, "px": 320, "py": 240, "cad_index": 2, "score": 0.8}`` (angles in
degrees; ``cad_index``, ``score`` and ``viewport`` optional). Rows with an ``error`` field
(pose6d-auto-fit's failures) are left out. The backend's ``--pose-source file:PATH`` and
pose6d-evaluate's ``file:PATH`` source read it here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pose6d.camera import Pose
from pose6d.errors import DataError


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """{object key text: row} of a predictions file; DataError naming the file when unreadable."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read predictions file {path}: {exc}") from None
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"predictions file {path} is not JSON / JSON lines: {exc}") from None
    return {str(row["object_key"]): row for row in rows
            if isinstance(row, dict) and "object_key" in row and "error" not in row}


def prediction_pose(row: dict[str, Any], viewport: float, cad_index: int) -> tuple[Pose, int, float]:
    """(pose, CAD index, score) of one row; ``viewport`` and ``cad_index`` where it has none."""
    pose = Pose.from_mapping(row, degrees=True, viewport=row.get("viewport", viewport))
    return pose, int(row.get("cad_index", cad_index)), float(row.get("score", 1.0))
