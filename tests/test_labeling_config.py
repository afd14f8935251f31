"""labeling_config/pose6d.xml: generated from pose6d.labeling, valid for Label Studio, consistent."""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from pose6d import labeling as L
from pose6d.camera import POSE_NAMES

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "labeling_config" / "pose6d.xml"
SCRIPT = REPO / "scripts" / "make_labeling_config.py"
from pose6d import labeling_config
from pose6d import labeling_config as LC
from pose6d.cli import make_labeling_config

# Label Studio 1.23.2's default hotkeys without modifiers (its keymap.json / Hotkeys defaults):
# tools, region commands, bracket tool sizes. hotkeys-js ignores case.
LS_PLAIN_KEYS = set("behkmopruvw[]") | {"enter", "escape", "backspace", "delete", "left", "right"}


@pytest.fixture(scope="module")
def xml_root() -> ET.Element:
    return ET.fromstring(CONFIG.read_text(encoding="utf-8"))


def _tags(root: ET.Element, tag: str) -> dict[str, ET.Element]:
    return {el.get("name"): el for el in root.iter(tag)}


def test_committed_config_is_generated():
    assert CONFIG.read_text(encoding="utf-8") == labeling_config.build_config()
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_check_detects_stale_file(tmp_path, capsys):
    stale = tmp_path / "pose6d.xml"
    stale.write_text(labeling_config.build_config().replace('step="0.01"', 'step="1"'))
    assert make_labeling_config.main(["--check", "--out", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert make_labeling_config.main(["--out", str(stale)]) == 0
    assert make_labeling_config.main(["--check", "--out", str(stale)]) == 0


def test_label_interface_validates():
    interface = LabelInterface(CONFIG.read_text(encoding="utf-8"))
    interface.validate()  # raises on schema, duplicate names, bad toName or attributes
    assert [o.name for o in interface.objects] == [L.IMAGE]
    kinds = {c.name: type(c).__name__ for c in interface.controls}
    expected = {L.BOX: "RectangleTag", L.CENTRE: "KeyPointTag", L.PIN: "KeyPointLabelsTag",
                L.OVERLAY: "TaxonomyTag", L.COMMAND: "TextAreaTag", L.CAD: "ChoicesTag",
                L.QUALITY: "ChoicesTag", L.DENSE: "ChoicesTag"}
    expected.update({name: "NumberTag" for name in POSE_NAMES})
    assert kinds == expected
    assert all(c.to_name == [L.IMAGE] for c in interface.controls)


def test_image_and_regions(xml_root):
    image = _tags(xml_root, "Image")[L.IMAGE]
    assert image.get("value") == f"${L.DATA_IMAGE}" and image.get("zoom") == "true"
    # label-less and smart-only: the only box / key point tools call the backend (tool keys R, K)
    box = _tags(xml_root, "Rectangle")[L.BOX]
    centre = _tags(xml_root, "KeyPoint")[L.CENTRE]
    for tool in (box, centre):
        assert tool.get("smart") == "true" and tool.get("smartOnly") == "true"
        assert len(tool) == 0
    # pins: smart-only with ONE label, so every call carries all pins (grouped by label)
    pins = _tags(xml_root, "KeyPointLabels")[L.PIN]
    assert pins.get("smart") == "true" and pins.get("smartOnly") == "true"
    assert [el.get("value") for el in pins] == [L.PIN_LABEL]
    overlay = _tags(xml_root, "Taxonomy")[L.OVERLAY]
    assert [c.get("value") for c in overlay] == [L.MESH_LABEL, L.EDGES_LABEL]
    for choice in overlay:  # the colour Label Studio paints each overlay region in
        assert choice.get("color") == L.LABEL_COLOURS[choice.get("value")]
    assert not list(xml_root.iter("BrushLabels"))  # no brush tool to paint with


def test_overlay_is_never_stored(xml_root):
    """The overlay's control is per-region with a visibleWhen condition that can never hold (a
    choice that its Choices tag does not offer): Label Studio then leaves its results out of
    drafts and submissions (tests/test_storage_browser.py checks that in a browser)."""
    overlay = _tags(xml_root, "Taxonomy")[L.OVERLAY]
    assert overlay.get("perRegion") == "true" and overlay.get("visibleWhen") == "choice-selected"
    target = _tags(xml_root, "Choices")[overlay.get("whenTagName")]
    offered = [c.get("value") for c in target]
    assert offered and overlay.get("whenChoiceValue") not in offered
    region = L.mask_region(L.EDGES_REGION_ID, L.EDGES_LABEL, np.ones((2, 3), bool))
    assert (region["from_name"], region["type"]) == (L.OVERLAY, L.OVERLAY_TYPE)
    assert region["value"][L.OVERLAY_TYPE] == [[L.EDGES_LABEL]]  # a path of the Taxonomy


def test_numbers_follow_labeling(xml_root):
    numbers = _tags(xml_root, "Number")
    assert list(numbers) == list(POSE_NAMES)
    for spec in L.NUMBERS:
        el = numbers[spec.name]
        assert el.get("slider") == "true"
        assert float(el.get("min")) == spec.min and float(el.get("max")) == spec.max
        step = float(el.get("step"))
        assert step == pytest.approx(10.0 ** -spec.decimals)
        # Label Studio refuses to submit a value off min + k * step (|diff| > 1e-8): every value
        # shown with spec.decimals must pass, e.g. what the backend returns.
        for value in (spec.min, spec.max, 0.1234, 30.52, -179.99, 7.777, 123.4):
            if not spec.min <= value <= spec.max:
                continue
            shown = round(value, spec.decimals)
            nearest = round((shown - spec.min) / step) * step + spec.min
            assert abs(shown - nearest) <= 1e-8, (spec.name, shown)


def test_choices_and_text(xml_root):
    choices = _tags(xml_root, "Choices")
    quality, dense, cad = choices[L.QUALITY], choices[L.DENSE], choices[L.CAD]
    assert [c.get("value") for c in quality] == list(L.QUALITY_VALUES)
    assert [c.get("value") for c in dense] == list(L.DENSE_VALUES)
    assert quality.get("required") == dense.get("required") == "true"
    assert cad.get("value") == f"${L.DATA_CAD_OPTIONS}" and len(cad) == 0
    command = _tags(xml_root, "TextArea")[L.COMMAND]
    assert command.get("rows") == "1" and command.get("placeholder")
    assert command.get("smartOnly") == "true"  # runs even with Auto-Annotation off
    header_values = [h.get("value") for h in xml_root.iter("Header")]
    assert f"${L.DATA_INSTRUCTIONS}" in header_values


def test_pixel_ranges_cover_the_photos():
    for spec, size in ((L.NUMBER_SPECS["px"], L.PHOTO_SIZE[0]), (L.NUMBER_SPECS["py"], L.PHOTO_SIZE[1])):
        assert spec.min <= -size and spec.max >= 2 * size  # objects cut by the border fit
        assert spec.max - spec.min <= 3 * size  # the photo fills a third of the slider
    big = ET.fromstring(labeling_config.build_config((1600, 1200)))
    numbers = _tags(big, "Number")
    assert (numbers["px"].get("min"), numbers["px"].get("max")) == ("-1600", "3200")
    assert (numbers["py"].get("min"), numbers["py"].get("max")) == ("-1200", "2400")
    assert numbers["azimuth"].get("min") == "-180"


def test_hotkeys_unique_and_free(xml_root):
    keys = [el.get("hotkey") for el in xml_root.iter() if el.get("hotkey")]
    keys += list(L.CAD_HOTKEYS)  # the CAD options (task data) carry these
    assert len(keys) == len(set(k.lower() for k in keys)), keys
    assert not {k.lower() for k in keys} & LS_PLAIN_KEYS
    # every control that Label Studio would otherwise auto-assign a key to has one (a
    # Taxonomy's options get none: 1.23.2 gives only a Choices' options a hotkey action)
    choices = [c for group in xml_root.iter("Choices") for c in group.iter("Choice")]
    for tag, elements in (("Label", list(xml_root.iter("Label"))), ("Choice", choices),
                          ("Number", list(xml_root.iter("Number")))):
        assert all(el.get("hotkey") for el in elements), tag


def test_layout_image_left_controls_right(xml_root):
    # the control column first in the page, shown on the right (row-reverse): Shift+Tab from
    # the command box leaves the labeling area instead of landing on a CAD radio button
    assert "flex" in xml_root.get("style") and "row-reverse" in xml_root.get("style")
    style, right, left = list(xml_root)
    assert style.tag == "Style" and "textarea-regions" in style.text  # page rules, no layout
    assert left.find("Image") is not None
    assert {el.get("name") for el in left.iter() if el.get("name")} >= {L.IMAGE, L.CAD}
    assert {el.get("name") for el in right.iter() if el.get("name")} >= (
        set(POSE_NAMES) | {L.QUALITY, L.DENSE, L.COMMAND})
    # the command box, then the hint / the no-pose warning (one shown, same height), then values
    ids = [el.get("idAttr") for el in right.iter("View") if el.get("idAttr")]
    assert ids == [LC.HINT_ID, LC.NO_POSE_ID]
    for css_id in ids:
        assert f"#{css_id}" in style.text
