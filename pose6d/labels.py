"""The labels annotators choose, with their dataset codes: the one source of truth for both.

The labeling config, the backend's sync, the exports and the reports all derive from these.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Label:
    value: str  # what Label Studio shows and stores
    code: str  # what the dataset record stores (the original tool's code)
    hint: str = ""


QUALITY_LABELS = (
    Label("good", "status_good", "more than 90% of the object clearly visible"),
    Label("partially visible", "status_partially", "part of the object hidden or cut off"),
    Label("barely visible", "status_barely", "only a small part visible"),
    Label("bad quality - no object", "status_bad", "no such object, or the image is unusable"),
)
BAD_QUALITY = QUALITY_LABELS[-1]  # no object to pose: exports and reports leave it out
DENSE_LABELS = (
    Label("no", "dense_no", "no other object of this category close by"),
    Label("yes", "dense_yes", "another object of the same category close in 2D"),
)


def quality_code(value: str) -> str:
    """Dataset code (status_*) of a quality label; KeyError for an unknown one."""
    return {lab.value: lab.code for lab in QUALITY_LABELS}[value]


def dense_code(value: str) -> str:
    """Dataset code (dense_*) of a dense label; KeyError for an unknown one."""
    return {lab.value: lab.code for lab in DENSE_LABELS}[value]


def quality_value(code: str) -> str:
    return {lab.code: lab.value for lab in QUALITY_LABELS}[code]


def dense_value(code: str) -> str:
    return {lab.code: lab.value for lab in DENSE_LABELS}[code]


# Per-category instructions from the original tool (docs/data_formats.md).
CATEGORY_INSTRUCTIONS = {
    "bicycle_built_for_two": "Use the normal bicycle meshes for tandem bicycles.",
    "beaker": "Match the notch (spout) of the beaker when setting the azimuth.",
    "oboe": "Azimuth is meaningless for an oboe: ignore it, fit the other values.",
    "punching_bag": "Only cylindrical bags count (others: bad quality - no object). "
                    "Azimuth is meaningless: ignore it.",
    "crutch": "Only axillary (underarm) crutches count; other crutches are bad quality - no object.",
}
