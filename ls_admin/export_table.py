"""Export labels as a flat table: ``labels.csv`` and ``labels.jsonl``, one row per label.

One row per object (newest label) or per annotation (--all-annotations). Columns (COLUMNS):
object_key, category, image, k; pose in degrees (*_deg) and radians (*_rad), distance (CAD
units), px, py (pixels), viewport, focal; cad_index; quality / dense as shown in Label Studio
and their dataset codes (object_status / dense_code); skipped (1 = the annotator skipped it: the
pose is the initial one); annotator (Label Studio's user id) and annotator_email (when the
backend learned it); pose_rendered (1 = the submitted pose had been drawn for the annotator,
0 = not, empty = unknown); review_status (reviewed / rejected, empty = not reviewed: pose6d-review;
rejected labels are only exported with --include-rejected) and reviewer; Label Studio ids
(-1 = unknown); updated_at (ISO 8601 UTC).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ls_admin.export_source import ExportSummary, Label, staged_output
from pose6d.camera import ANGLE_NAMES
from pose6d.inout import atomic_write_bytes
from pose6d.labels import dense_value, quality_value

README = __doc__
COLUMNS = ("object_key", "category", "image", "k",
           "azimuth_deg", "elevation_deg", "theta_deg", "azimuth_rad", "elevation_rad", "theta_rad",
           "distance", "px", "py", "viewport", "focal", "cad_index",
           "quality", "object_status", "dense", "dense_code", "skipped", "annotator",
           "annotator_email", "pose_rendered", "review_status", "reviewer",
           "ls_project_id", "ls_task_id", "ls_annotation_id", "updated_at")


DEGREE_DECIMALS = 10


def _flag(value: Any) -> int | str:
    """1 / 0, or "" when unknown."""
    return "" if value is None else int(bool(value))


def _label_value(code: str, to_value) -> str:
    try:
        return to_value(code)
    except KeyError:
        return ""


def table_row(label: Label) -> dict[str, Any]:
    """One row (COLUMNS order): angles in degrees and radians from the record's Pose."""
    pose = label.record.pose
    rad = pose.as_radians()
    row: dict[str, Any] = {"object_key": str(label.key), "category": label.key.category,
                           "image": label.key.name, "k": label.key.k}
    # Degrees as people typed them (15.26, not 15.259999999999998: the radians' float noise);
    # the radians columns stay exact.
    row.update({f"{n}_deg": round(math.degrees(rad[n]), DEGREE_DECIMALS) for n in ANGLE_NAMES})
    row.update({f"{n}_rad": rad[n] for n in ANGLE_NAMES})
    row.update(distance=pose.distance, px=pose.px, py=pose.py, viewport=pose.viewport,
               focal=pose.focal, cad_index=int(label.record.cad_index),
               quality="skipped" if label.skipped else _label_value(label.object_status,
                                                                     quality_value),
               object_status=label.object_status,
               dense=_label_value(label.dense, dense_value), dense_code=label.dense,
               skipped=int(label.skipped), annotator=label.annotator,
               annotator_email=str(label.record.extra.get("annotator_email", "")),
               pose_rendered=_flag(label.record.extra.get("pose_rendered")),
               review_status=str(label.record.extra.get("review_status", "")),
               reviewer=str(label.record.extra.get("reviewer", "")),
               ls_project_id=label.project_id, ls_task_id=label.task_id,
               ls_annotation_id=label.annotation_id, updated_at=label.updated_at)
    return {c: row[c] for c in COLUMNS}


def table_bytes(rows: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """(CSV, JSON lines) of the rows; floats written with repr precision (radians round-trip
    exactly; degrees are rounded to DEGREE_DECIMALS)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    jsonl = "".join(json.dumps(r) + "\n" for r in rows)
    return buf.getvalue().encode(), jsonl.encode()


def export_table(labels: list[Label], out: Path, overwrite: bool = False,
                 progress: bool = True) -> ExportSummary:
    """Write labels.csv, labels.jsonl and README.txt under ``out``; returns the summary."""
    rows = [table_row(l) for l in labels]
    csv_bytes, jsonl_bytes = table_bytes(rows)
    with staged_output(out, overwrite) as stage:
        atomic_write_bytes(stage / "labels.csv", csv_bytes)
        atomic_write_bytes(stage / "labels.jsonl", jsonl_bytes)
        atomic_write_bytes(stage / "README.txt", README.encode())
    return ExportSummary(files=2, objects=len(rows), skipped=sum(l.skipped for l in labels),
                         bad=sum(not l.skipped and not l.usable for l in labels))
