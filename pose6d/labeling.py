"""The labeling config's schema (tag names, ranges, steps) and Label Studio result <-> pose.

labeling_config/pose6d.xml is generated from this module (scripts/make_labeling_config.py);
the backend, the task maker, the sync and the exports read and write results through it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from pose6d.brush_rle import mask_to_rle
from pose6d.camera import (POSE_NAMES, InvalidPoseError, Pose, image_to_pixel, pixel_to_image,
                           wrap_angle)
from pose6d.labels import DENSE_LABELS, QUALITY_LABELS

IMAGE = "image"
CAD = "cad"
QUALITY = "quality"
DENSE = "dense"
COMMAND = "command"  # one-line TextArea: interactive pose commands (issue 4)
# The rendered mesh over the photo: brush regions (an RLE mask each) held by a per-region
# Taxonomy, not by BrushLabels, so that Label Studio draws them but never stores them in a draft
# or a submitted annotation (the overlay is re-rendered from the six values whenever needed):
# Label Studio 1.23.2 serialises a per-region result only while its control's visibleWhen
# condition holds, and OVERLAY_NEVER_CHOICE is no choice of DENSE, so it never holds
# (docs/label_studio_notes.md, "What is stored").
OVERLAY = "overlay"
OVERLAY_TYPE = "taxonomy"
OVERLAY_NEVER_CHOICE = "overlay-never-stored"
# Label-less smart-only tools: Label Studio's own tool keys select them (K key point, R
# rectangle) and a click draws at once; a *Labels control would also need a label picked first.
BOX = "box"  # Rectangle: the object's box; drawing one fits distance and centre
CENTRE = "centre"  # KeyPoint: a click sets (px, py)
MESH_LABEL, EDGES_LABEL = "Mesh", "Edges"
# Pins (issue 21): a smart KeyPointLabels with one label, so that every call carries all of the
# annotation's pins (Label Studio groups a smart tool's regions by label), in creation order:
# a point of the overlay, then where it is in the photo, and so on.
PIN, PIN_LABEL = "pin", "pin"
# Labels of the earlier RectangleLabels / KeyPointLabels config; results carrying them are still read.
BOX_LABEL, CENTRE_LABEL = "Object", "Centre"
# Fixed region ids: a returned region with an existing id replaces it in place
# (docs/label_studio_notes.md).
MESH_REGION_ID, EDGES_REGION_ID, BOX_REGION_ID = "pose6d_mesh", "pose6d_edges", "pose6d_box"
# The pins drawn by the backend (model point, target, a line between) and the photo's other
# objects drawn faintly, both brush regions of the overlay (never stored either).
PINS_REGION_ID, NEIGHBOURS_REGION_ID = "pose6d_pins", "pose6d_neighbours"
NEIGHBOUR_NUMBERS_REGION_ID = "pose6d_neighbour_numbers"  # each other object's number (copy N)
# Result types of the regions an annotator draws or the backend returns (with and without labels).
POINT_TYPES = ("keypoint", "keypointlabels")
BOX_TYPES = ("rectangle", "rectanglelabels")
# "brushlabels": the overlay of annotations made before it moved to OVERLAY_TYPE.
REGION_TYPES = POINT_TYPES + BOX_TYPES + (OVERLAY_TYPE, "brushlabels")


@dataclasses.dataclass(frozen=True)
class NumberSpec:
    name: str
    unit: str
    min: float
    max: float
    fine: float  # the original tool's -/+ step
    coarse: float  # its coarse step (for hard categories)
    decimals: int  # what is shown and stored: the overlay is rendered at the rounded value


# The largest photo the px / py sliders are made for (the original tool's slider ranges,
# 0..800 and 0..640). Label Studio refuses to submit a Number outside its min..max, and min/max
# cannot come from the task, so the range is [-size, 2 * size]: the photo fills the middle third
# of the slider and centres of objects cut by the border up to a photo width outside still fit.
# Larger photos: scripts/make_labeling_config.py --max-photo-size WxH (the backend warns in the
# command box when a centre leaves the range).
PHOTO_SIZE = (800, 640)


def pixel_range(size: int) -> tuple[float, float]:
    """The px (or py) slider range for photos up to ``size`` pixels wide (or high)."""
    return -float(size), 2.0 * float(size)


NUMBERS = (
    # azimuth and theta are shown wrapped to (-180, 180] (shown_pose), elevation clamped.
    NumberSpec("azimuth", "deg", -180.0, 180.0, 1.0, 30.0, 2),
    NumberSpec("elevation", "deg", -90.0, 90.0, 1.0, 30.0, 2),
    NumberSpec("theta", "deg", -180.0, 180.0, 1.0, 30.0, 2),
    NumberSpec("distance", "", 0.1, 100.0, 0.2, 1.0, 3),
    NumberSpec("px", "px", *pixel_range(PHOTO_SIZE[0]), 5.0, 30.0, 1),
    NumberSpec("py", "px", *pixel_range(PHOTO_SIZE[1]), 5.0, 30.0, 1),
)
NUMBER_SPECS = {spec.name: spec for spec in NUMBERS}
assert tuple(NUMBER_SPECS) == POSE_NAMES


def shown_pose(pose: Pose) -> Pose:
    """The pose as the annotator sees it: azimuth and theta wrapped, values rounded to the UI's
    decimals. The overlay is rendered at exactly this pose."""
    deg = pose.as_degrees()
    deg["azimuth"] = wrap_angle(deg["azimuth"], 180.0)
    deg["theta"] = wrap_angle(deg["theta"], 180.0)
    deg["elevation"] = max(-90.0, min(90.0, deg["elevation"]))
    rounded = {n: round(deg[n], NUMBER_SPECS[n].decimals) for n in POSE_NAMES}
    rounded["distance"] = max(rounded["distance"], NUMBER_SPECS["distance"].min)
    return Pose.from_degrees(**rounded, viewport=pose.viewport, focal=pose.focal)


def _classification(from_name: str, kind: str, value: dict, readonly: bool = False) -> dict:
    out = {"id": f"pose6d_{from_name}", "from_name": from_name, "to_name": IMAGE, "type": kind,
           "value": value}
    if readonly:
        out["readonly"] = True
    return out


def pose_results(pose: Pose) -> list[dict]:
    """The six Number results of ``shown_pose(pose)`` (degrees and pixels), read-only: Label
    Studio then disables their inputs and sliders, so a value changes only through a command
    (which renders it), never by an accidental drag (docs/label_studio_notes.md)."""
    deg = shown_pose(pose).as_degrees()
    return [_classification(n, "number", {"number": round(deg[n], NUMBER_SPECS[n].decimals)},
                            readonly=True) for n in POSE_NAMES]


def choice_result(from_name: str, value: str) -> dict:
    return _classification(from_name, "choices", {"choices": [str(value)]})


def command_result(text: str | None = None) -> dict:
    """The command box: empty after a command ran (it works as a command line), else the
    backend's message, which always holds a line break (one is appended to a one-line message):
    the page tells the backend's lines from typed lines it has not answered, which never hold
    one (pose6d.labeling_config.PAGE_CSS)."""
    if not text:
        return _classification(COMMAND, "textarea", {"text": []})
    return _classification(COMMAND, "textarea", {"text": [text if "\n" in text else text + "\n"]})


def is_typed(entry: str) -> bool:
    """Whether a TextArea entry was typed by the annotator: the box has one row, so a typed
    entry never holds a line break, and the backend's always do (command_result)."""
    return "\n" not in entry


def _region(region_id: str, from_name: str, kind: str, width: int, height: int, value: dict,
            readonly: bool = False) -> dict:
    out = {"id": region_id, "from_name": from_name, "to_name": IMAGE, "type": kind,
           "original_width": int(width), "original_height": int(height), "image_rotation": 0,
           "value": value}
    if readonly:
        out["readonly"] = True
    return out


def mask_region(region_id: str, label: str, mask: np.ndarray, readonly: bool = False,
                alpha: int = 255) -> dict:
    """An overlay brush region (full-image (H, W) bool mask) with a fixed id, painted in
    ``label``'s colour (LABEL_COLOURS); ``readonly``: Label Studio lets nobody move, erase or
    relabel it (a returned region with its id still replaces it); ``alpha`` (1..255): how
    opaque Label Studio paints it (docs/label_studio_notes.md). Its value holds the RLE (which
    makes Label Studio draw a brush region) and the OVERLAY Taxonomy's path ``[[label]]``."""
    h, w = mask.shape
    return _region(region_id, OVERLAY, OVERLAY_TYPE, w, h,
                   {"format": "rle", "rle": mask_to_rle(mask, alpha), OVERLAY_TYPE: [[label]]},
                   readonly=readonly)


def box_region(bbox: Iterable[float], width: int, height: int, region_id: str = BOX_REGION_ID) -> dict:
    """The object's box (x1, y1, x2, y2 pixels) as a read-only rectangle region (percent
    coordinates): a drag that starts on it draws a new box instead of moving this one."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return _region(region_id, BOX, BOX_TYPES[0], width, height, {
        "x": 100.0 * x1 / width, "y": 100.0 * y1 / height,
        "width": 100.0 * (x2 - x1) / width, "height": 100.0 * (y2 - y1) / height,
        "rotation": 0}, readonly=True)


def pin_region(region_id: str, x: float, y: float, width: int, height: int) -> dict:
    """A pin point (camera pixel coordinates; integers are pixel centres) as a KeyPointLabels
    result with the one pin label: the backend returns the annotation's pin points so that
    Label Studio keeps them (it drops a smart tool's own point once the answer comes)."""
    u, v = pixel_to_image(x, y)
    return _region(region_id, PIN, POINT_TYPES[1], width, height,
                   {"x": 100.0 * u / width, "y": 100.0 * v / height, "width": 0.6,
                    "keypointlabels": [PIN_LABEL]})


def region_box_pixels(region: dict) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of a rectangle result (unrotated) in the camera's pixel coordinates."""
    w, h = float(region["original_width"]), float(region["original_height"])
    v = region["value"]
    x1, y1 = v["x"] * w / 100.0, v["y"] * h / 100.0
    return image_to_pixel(x1, y1, x1 + v["width"] * w / 100.0, y1 + v["height"] * h / 100.0)


def region_point_pixels(region: dict) -> tuple[float, float]:
    """(x, y) of a keypoint result in the camera's pixel coordinates (integers: pixel centres)."""
    w, h = float(region["original_width"]), float(region["original_height"])
    return image_to_pixel(region["value"]["x"] * w / 100.0, region["value"]["y"] * h / 100.0)


# --- Reading an annotation's results back. ---


@dataclasses.dataclass
class AnnotationValues:
    """What an annotation (or an interactive call's context) says: any field may be missing."""

    numbers: dict[str, float]
    choices: dict[str, str]
    entries: dict[str, list[str]]  # each TextArea's entries, in the box's order
    regions: list[dict]

    @property
    def text(self) -> dict[str, str]:
        """Each TextArea's entries joined by line breaks."""
        return {name: "\n".join(lines) for name, lines in self.entries.items()}

    def pose(self, viewport: float) -> Pose:
        """The pose (angles in degrees in the results); InvalidPoseError if incomplete or bad."""
        missing = [n for n in POSE_NAMES if n not in self.numbers]
        if missing:
            raise InvalidPoseError(f"annotation lacks {', '.join(missing)}")
        return Pose.from_mapping(self.numbers, degrees=True, viewport=viewport)


def read_results(results: Any) -> AnnotationValues:
    """Parse a Label Studio result list; ignores entries it does not understand."""
    numbers: dict[str, float] = {}
    choices: dict[str, str] = {}
    entries: dict[str, list[str]] = {}
    regions: list[dict] = []
    for item in results if isinstance(results, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            continue
        name, value, kind = item.get("from_name"), item["value"], item.get("type")
        if kind == "number" and name in NUMBER_SPECS:
            number = value.get("number")
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                numbers[name] = float(number)
            elif isinstance(number, str):
                try:
                    numbers[name] = float(number)
                except ValueError:
                    pass
        elif kind == "choices" and isinstance(value.get("choices"), list) and value["choices"]:
            choices[name] = str(value["choices"][0])
        elif kind == "textarea":
            lines = value.get("text")
            if isinstance(lines, str):
                lines = [lines] if lines else []
            if isinstance(lines, list):
                entries[name] = [str(t) for t in lines]
        elif kind in REGION_TYPES:
            regions.append(item)
    return AnnotationValues(numbers, choices, entries, regions)


QUALITY_VALUES = tuple(lab.value for lab in QUALITY_LABELS)
DENSE_VALUES = tuple(lab.value for lab in DENSE_LABELS)


# --- What the labeling config needs beyond tag names (scripts/make_labeling_config.py). ---

# Task data fields the config reads ($image, ...); pose6d/tasks.py writes them.
DATA_IMAGE, DATA_CAD_OPTIONS, DATA_INSTRUCTIONS = "image", "cad_options", "instructions"
DATA_FIT_SCORE = "fit_score"  # auto-fit at prefill: the fitted pose's score (Data Manager sort)


def number_step(spec: NumberSpec) -> float:
    """The config's Number step: one unit of the last shown decimal (0.01 deg, 0.001, 0.1 px).

    Label Studio refuses to submit a Number that is off the grid min + k * step, so a coarser
    step (the fine 1 deg) would reject values such as 30.52 that the backend returns.
    """
    return 10.0 ** -spec.decimals


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


# Region colours in Label Studio: the brush overlay uses the server overlay's colours (light blue
# fill, yellow edges: readable over most photos); box and centre in colours that differ from both.
from pose6d.overlay import EDGE_COLOR, MESH_COLOR  # noqa: E402  (numpy only; no open3d at import)

LABEL_COLOURS = {MESH_LABEL: _hex(MESH_COLOR), EDGES_LABEL: _hex(EDGE_COLOR)}
BOX_COLOUR, CENTRE_COLOUR, PIN_COLOUR = "#FF6D00", "#FF00E5", "#00E676"
# Hotkeys. Label Studio's defaults use ctrl/alt/shift combinations and the tool letters
# b e h k m o p r u v w [ ] (k: the smart key point = centre click, r: the smart rectangle = box
# fit). Every label, choice and Number without a hotkey gets the next key of
# "1234567890qwetasdfgzxcvb..." whether or not a tool uses it (1.23.2 gave px the eraser's "e"),
# so every control claims one: a Number's hotkey only adds one config step (0.01 deg; it never
# decrements and wraps from max to min), useless for nudging, so theirs are parked on F13-F18
# (absent from laptop keyboards); the CAD options take CAD_HOTKEYS in order. No hotkey works
# while the command box has the focus (Label Studio ignores them in inputs).
QUALITY_HOTKEYS = dict(zip(QUALITY_VALUES, ("1", "2", "3", "4")))
# Dense on 5 / 6 (after quality's 1-4), not n / y: "n" is "next CAD model" in the command box.
DENSE_HOTKEYS = dict(zip(DENSE_VALUES, ("5", "6")))
NUMBER_HOTKEYS = {spec.name: f"f{13 + i}" for i, spec in enumerate(NUMBERS)}
PIN_HOTKEY = "7"  # selects the pin label (then Ctrl+click on the overlay / the photo)
CAD_HOTKEYS = ("9", "0", "q", "t", "a", "s", "d", "f", "g", "z", "x", "c", "i", "j", "l")
assert DENSE_VALUES == ("no", "yes") and len(QUALITY_HOTKEYS) == len(QUALITY_VALUES)
