"""The labeling config: built from the schema (pose6d.labeling, pose6d.labels) and read back.

``build_config`` lays the schema out as Label Studio XML (labeling_config/pose6d.xml is its
output; every tag name, Number range / step, label, colour and hotkey comes from the schema).
``read_config`` parses a project's config with Label Studio's own parser
(``label_studio_sdk.label_interface.LabelInterface``), so we read a config exactly as Label
Studio does; results are cached per config text.
"""
from __future__ import annotations

import dataclasses
import functools
import xml.etree.ElementTree as ET

from pose6d import labeling as L
from pose6d.errors import BadInput
from pose6d.labels import DENSE_LABELS, QUALITY_LABELS

REQUIRED_TAGS = (L.IMAGE, L.CAD, L.QUALITY, L.DENSE, L.OVERLAY,
                 *L.NUMBER_SPECS)


@dataclasses.dataclass(frozen=True)
class ConfigSummary:
    """names: every control and object tag name. number_ranges: {pose Number: (min, max)} as
    the config sets them (pose6d.labeling's defaults where it says nothing). control_types:
    {control name: its tag, lower case (a result's "type")}."""

    names: frozenset[str]
    number_ranges: dict[str, tuple[float, float]]
    control_types: dict[str, str] = dataclasses.field(default_factory=dict)


@functools.lru_cache(maxsize=64)
def read_config(xml: str) -> ConfigSummary:
    """Parse a labeling config; BadInput when Label Studio could not read it either."""
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(xml)
    except Exception as exc:  # the SDK raises several types for a bad XML
        raise BadInput(f"invalid labeling config: {str(exc)[:200]}") from None
    names = frozenset(t.name for t in interface.controls) | frozenset(t.name for t in interface.objects)
    ranges = {name: (spec.min, spec.max) for name, spec in L.NUMBER_SPECS.items()}
    for tag in interface.controls:
        if tag.tag == "Number" and tag.name in ranges:
            try:
                ranges[tag.name] = (float(tag.attr["min"]), float(tag.attr["max"]))
            except (KeyError, TypeError, ValueError):
                continue
    return ConfigSummary(names, ranges, {t.name: t.tag.lower() for t in interface.controls})


def missing_tags(xml: str) -> list[str]:
    """Tags this tool needs that the config lacks (or why the config cannot be read)."""
    try:
        names = read_config(xml).names
    except BadInput as exc:
        return [str(exc)]
    return [name for name in REQUIRED_TAGS if name not in names]


def number_ranges(xml: str | None) -> dict[str, tuple[float, float]]:
    """(min, max) of each pose Number in the project's config (an admin may have regenerated it
    with --max-photo-size); pose6d.labeling's defaults without a readable config."""
    if xml:
        try:
            return read_config(xml).number_ranges
        except BadInput:
            pass
    return {name: (spec.min, spec.max) for name, spec in L.NUMBER_SPECS.items()}


# --- Building the config. ---

# Layout for a 1366x768 laptop: photo and CAD gallery on the left, a 330 px control column on
# the right.
# The control column comes first in the page (shown on the right: row-reverse), so that Shift+Tab
# from the command box leaves the labeling area for a button (where Ctrl+Enter submits) instead of
# landing on a CAD model's radio button, an input where Label Studio ignores its hotkeys.
ROOT_STYLE = ("display: flex; flex-direction: row-reverse; flex-wrap: nowrap; "
              "align-items: flex-start; gap: 12px")
LEFT_STYLE = "flex: 1 1 auto; min-width: 0"
RIGHT_STYLE = "flex: 0 0 330px; max-width: 330px"
NUMBER_ROW_STYLE = "display: grid; grid-template-columns: 96px 1fr; align-items: center"
SMALL = "font-size: 12px; line-height: 16px; margin: 0"
SECTION_STYLE = "font-size: 13px; margin: 6px 0 0 0"
HINT = "font-size: 11px; line-height: 13px; margin: 0 0 2px 0; font-weight: normal; color: #555"
# The cheat sheet the annotator reads (README "Annotating" has the long form).
HINT_TEXT = ("Enter runs: a e t d x y + - ++ --, a+7, a=30; f flip; n p c3 model; q1-q4 quality; "
             "dn dy dense; o overlay; r reset; u undo; ? help. Submit: Shift+Tab, Ctrl+Enter. "
             "K, Ctrl+click: centre; R, Ctrl+drag: box fit.")
# What the page says while the backend has not answered for this task (its Numbers are
# read-only only once the backend has sent them): shown in place of HINT_TEXT, same height.
NO_POSE_TEXT = ("\u26a0 No answer from the backend yet (no overlay; the values may be "
                "placeholders). Type . to ask again. What you type is kept and runs once it "
                "answers.")
# Under a line of the command box the backend has not answered (after UNANSWERED_S).
UNANSWERED_TEXT = ("\u26a0 not answered yet: the backend is busy or not running. Kept: it runs "
                   "at your next Enter once the backend answers.")
UNANSWERED_S = 1.5  # answers take 0.2-0.5 s (a fit up to ~5 s)
HINT_ID, NO_POSE_ID = "pose6d-hint", "pose6d-no-pose"
MESSAGES_PX = 136  # the fixed message area under the command box (it scrolls)
# Page rules. The chosen CAD model's picture framed (visible at a glance). Under the command box
# a message area of fixed height (scrolling) so that messages never move the values or the
# gallery. A line of the box the backend has not answered: the backend's own lines always hold
# a line break (pose6d.labeling.command_result), a typed line never does. No pose from the
# backend: the sliders are enabled (the backend's Numbers are read-only). Keyboard focus shown.
PAGE_CSS = (
    ".ant-radio-wrapper-checked img { outline: 3px solid #1677ff; border-radius: 4px } "
    f"[data-testid=textarea-control] {{ height: {MESSAGES_PX + 44}px; overflow: hidden }} "
    "[data-testid=textarea-form] .ant-form-item { margin-bottom: 4px } "
    f"[data-testid=textarea-regions] {{ height: {MESSAGES_PX}px; overflow-y: auto; "
    "margin-bottom: 0 !important } "
    "[data-testid=htx-textbox-content] { min-height: 0 !important; padding: 2px 6px !important } "
    "[data-testid=htx-textbox-content] p { font-size: 11px; line-height: 13px } "
    "[data-testid=htx-textbox-content]:not(:has(br))::after { display: block; color: #B00020; "
    f"font-size: 11px; line-height: 13px; content: \"{UNANSWERED_TEXT}\"; "
    f"animation: pose6d-late {UNANSWERED_S}s step-end }} "
    "@keyframes pose6d-late { from { visibility: hidden } to { visibility: hidden } } "
    f"#{NO_POSE_ID} {{ display: none }} "
    f"body:has(input[type=range][name=azimuth]:enabled) #{NO_POSE_ID} {{ display: block }} "
    f"body:has(input[type=range][name=azimuth]:enabled) #{HINT_ID} {{ display: none }} "
    f"#{HINT_ID}, #{NO_POSE_ID} {{ height: 40px; overflow: hidden }} "
    ":focus-visible { outline: 3px solid #1677ff !important; outline-offset: 1px }")
COMMAND_PLACEHOLDER = "a++ e- f n c3 q1 dn u ?  (Enter)"


def _fmt(value: float) -> str:
    """A number as short text: 360.0 -> '360', 0.001 -> '0.001'."""
    return f"{value:.10g}"


def _el(parent: ET.Element | None, tag: str, **attrs: str) -> ET.Element:
    """Append an element; attribute names are given in camelCase as Label Studio documents them."""
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return ET.Element(tag, attrs) if parent is None else ET.SubElement(parent, tag, attrs)


def _section(parent: ET.Element, text: str) -> None:
    _el(parent, "Header", value=text, size="6", style=SECTION_STYLE)


def _overlay(parent: ET.Element) -> None:
    """The control that holds the backend's overlay regions (pose6d.labeling.OVERLAY): a
    per-region Taxonomy whose visibleWhen condition can never hold, so that Label Studio draws
    the regions (in each option's colour) but leaves them out of drafts and submissions."""
    group = _el(parent, "Taxonomy", name=L.OVERLAY, toName=L.IMAGE, perRegion="true",
                visibleWhen="choice-selected", whenTagName=L.DENSE,
                whenChoiceValue=L.OVERLAY_NEVER_CHOICE)
    for label in (L.MESH_LABEL, L.EDGES_LABEL):
        _el(group, "Choice", value=label, color=L.LABEL_COLOURS[label])


def _image_column(root: ET.Element) -> None:
    left = _el(root, "View", style=LEFT_STYLE)
    _el(left, "Image", name=L.IMAGE, value=f"${L.DATA_IMAGE}", zoom="true", zoomControl="true",
        maxWidth="100%")
    # Smart-only and label-less: the only box / key point tools are the ones that call the
    # backend, Label Studio's tool keys R / K select them, and a drag / click draws at once.
    _el(left, "Rectangle", name=L.BOX, toName=L.IMAGE, smart="true", smartOnly="true",
        strokeColor=L.BOX_COLOUR, fillColor=L.BOX_COLOUR, strokeWidth="2", opacity="0.15")
    # Pins: one label, so that every call carries all pins (Label Studio groups by label).
    # Before the centre's KeyPoint: Label Studio 1.23.2's K picks the last key point tool (the
    # centre's, as before); the pin's is the first key point of the smart tools' flyout.
    pins = _el(left, "KeyPointLabels", name=L.PIN, toName=L.IMAGE, smart="true", smartOnly="true",
               strokeWidth="3")
    _el(pins, "Label", value=L.PIN_LABEL, background=L.PIN_COLOUR, hotkey=L.PIN_HOTKEY)
    _el(left, "KeyPoint", name=L.CENTRE, toName=L.IMAGE, smart="true", smartOnly="true",
        fillColor=L.CENTRE_COLOUR, strokeWidth="4")
    # The CAD gallery under the photo (whose column has room at 1366x768): in view whatever
    # the right column shows.
    _section(left, "CAD model (c<number> in the box)")
    _el(left, "Choices", name=L.CAD, toName=L.IMAGE, value=f"${L.DATA_CAD_OPTIONS}",
        choice="single-radio", layout="inline")
    # The overlay's control only holds the backend's regions: hidden (it would show a picker).
    _overlay(_el(left, "View", style="display: none"))


def numbers_for(photo_size: tuple[int, int] | None = None) -> tuple[L.NumberSpec, ...]:
    """L.NUMBERS, with the px / py ranges made for photos up to ``photo_size`` (W, H)."""
    if photo_size is None:
        return L.NUMBERS
    ranges = {"px": L.pixel_range(photo_size[0]), "py": L.pixel_range(photo_size[1])}
    return tuple(dataclasses.replace(spec, min=ranges[spec.name][0], max=ranges[spec.name][1])
                 if spec.name in ranges else spec for spec in L.NUMBERS)


def _number_rows(parent: ET.Element, numbers: tuple[L.NumberSpec, ...]) -> None:
    grid = _el(parent, "View", style=NUMBER_ROW_STYLE)
    for spec in numbers:
        unit = f" ({spec.unit})" if spec.unit else ""
        _el(grid, "Header", value=f"{spec.name}{unit}", size="6", style=SMALL)
        _el(grid, "Number", name=spec.name, toName=L.IMAGE, slider="true", min=_fmt(spec.min),
            max=_fmt(spec.max), step=_fmt(L.number_step(spec)),
            hotkey=L.NUMBER_HOTKEYS[spec.name])


def _choices(parent: ET.Element, name: str, labels, hotkeys: dict[str, str], title: str) -> None:
    keys = "/".join(hotkeys[lab.value] for lab in labels)
    _section(parent, title)  # Label Studio shows each option's hotkey next to it
    group = _el(parent, "Choices", name=name, toName=L.IMAGE, choice="single-radio",
                required="true", requiredMessage=f"{title}: choose one (keys {keys}).",
                layout="inline")
    for lab in labels:
        _el(group, "Choice", value=lab.value, hotkey=hotkeys[lab.value], hint=lab.hint or None)


def _control_column(root: ET.Element, numbers: tuple[L.NumberSpec, ...]) -> None:
    right = _el(root, "View", style=RIGHT_STYLE)
    _el(right, "Header", value=f"${L.DATA_INSTRUCTIONS}", size="6", style=SMALL + "; color: #B00020")
    # smartOnly: Enter calls the backend even with Label Studio's Auto-Annotation toggle off.
    _el(right, "TextArea", name=L.COMMAND, toName=L.IMAGE, rows="1", smartOnly="true",
        placeholder=COMMAND_PLACEHOLDER)
    _el(_el(right, "View", idAttr=HINT_ID), "Header", value=HINT_TEXT, size="6", style=HINT)
    _el(_el(right, "View", idAttr=NO_POSE_ID), "Header", value=NO_POSE_TEXT, size="6",
        style=HINT + "; color: #B00020; font-weight: bold")
    _number_rows(right, numbers)
    _choices(right, L.QUALITY, QUALITY_LABELS, L.QUALITY_HOTKEYS, "Object quality")
    _choices(right, L.DENSE, DENSE_LABELS, L.DENSE_HOTKEYS, "Dense scene")


def build_config(photo_size: tuple[int, int] | None = None) -> str:
    """The labeling config XML text (ends with a newline); ``photo_size`` (W, H): the largest
    photo the px / py sliders must cover (default L.PHOTO_SIZE)."""
    root = _el(None, "View", style=ROOT_STYLE)
    _el(root, "Style").text = PAGE_CSS
    _control_column(root, numbers_for(photo_size))
    _image_column(root)
    ET.indent(root, space="  ")
    comment = ("<!-- Generated by scripts/make_labeling_config.py from pose6d/labeling.py and "
               "pose6d/labels.py. Do not edit by hand. -->\n")
    return comment + ET.tostring(root, encoding="unicode") + "\n"
