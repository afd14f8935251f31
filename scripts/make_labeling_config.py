#!/usr/bin/env python3
"""Generate labeling_config/pose6d.xml (the Label Studio labeling config) from pose6d.labeling.

Every tag name, Number range / step, label, colour and hotkey comes from pose6d/labeling.py and
pose6d/labels.py; this script only lays them out. The committed XML must equal its output:

    python scripts/make_labeling_config.py            # (re)write labeling_config/pose6d.xml
    python scripts/make_labeling_config.py --check    # exit 1 if the committed file is stale
    python scripts/make_labeling_config.py --out -    # print to stdout
"""
from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pose6d import labeling as L  # noqa: E402
from pose6d.inout import atomic_write_bytes  # noqa: E402
from pose6d.labels import DENSE_LABELS, QUALITY_LABELS  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "labeling_config" / "pose6d.xml"

# Layout for a 1366x768 laptop: photo on the left, a 330 px control column on the right.
ROOT_STYLE = "display: flex; flex-wrap: nowrap; align-items: flex-start; gap: 12px"
LEFT_STYLE = "flex: 1 1 auto; min-width: 0"
RIGHT_STYLE = "flex: 0 0 330px; max-width: 330px"
NUMBER_ROW_STYLE = "display: grid; grid-template-columns: 96px 1fr; align-items: center"
SMALL = "font-size: 12px; line-height: 16px; margin: 0"
SECTION_STYLE = "font-size: 13px; margin: 6px 0 0 0"
HEADER_TEXT = ("Fit the overlay to the object: type a command + Enter, or move the sliders. "
               "Smart box: refit distance and centre. Smart Centre click: move the centre.")
COMMAND_PLACEHOLDER = "pose command, Enter to run (needs the pose backend)"


def _fmt(value: float) -> str:
    """A number as short text: 360.0 -> '360', 0.001 -> '0.001'."""
    return f"{value:.10g}"


def _el(parent: ET.Element | None, tag: str, **attrs: str) -> ET.Element:
    """Append an element; attribute names are given in camelCase as Label Studio documents them."""
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return ET.Element(tag, attrs) if parent is None else ET.SubElement(parent, tag, attrs)


def _section(parent: ET.Element, text: str) -> None:
    _el(parent, "Header", value=text, size="6", style=SECTION_STYLE)


def _labels(parent: ET.Element, tag: str, name: str, labels: list[str], **attrs: str) -> None:
    group = _el(parent, tag, name=name, toName=L.IMAGE, **attrs)
    for label in labels:
        _el(group, "Label", value=label, background=L.LABEL_COLOURS[label],
            hotkey=L.LABEL_HOTKEYS[label])


def _image_column(root: ET.Element) -> None:
    left = _el(root, "View", style=LEFT_STYLE)
    _el(left, "Image", name=L.IMAGE, value=f"${L.DATA_IMAGE}", zoom="true", zoomControl="true",
        maxWidth="100%")
    row = _el(left, "View", style="display: flex; flex-wrap: wrap; gap: 8px; margin-top: 4px")
    _labels(row, "RectangleLabels", L.BOX, [L.BOX_LABEL], smart="true", strokeWidth="2",
            opacity="0.15")
    _labels(row, "KeyPointLabels", L.CENTRE, [L.CENTRE_LABEL], smart="true", smartOnly="true")
    _labels(row, "BrushLabels", L.OVERLAY, [L.MESH_LABEL, L.EDGES_LABEL])


def _number_rows(parent: ET.Element) -> None:
    grid = _el(parent, "View", style=NUMBER_ROW_STYLE)
    for spec in L.NUMBERS:
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


def _control_column(root: ET.Element) -> None:
    right = _el(root, "View", style=RIGHT_STYLE)
    _el(right, "Header", value=HEADER_TEXT, size="6", style=SMALL + "; font-weight: normal")
    _el(right, "Header", value=f"${L.DATA_INSTRUCTIONS}", size="6", style=SMALL + "; color: #B00020")
    _el(right, "TextArea", name=L.COMMAND, toName=L.IMAGE, rows="1",
        placeholder=COMMAND_PLACEHOLDER)
    _number_rows(right)
    # The required judgements before the CAD gallery, whose length depends on the category.
    _choices(right, L.QUALITY, QUALITY_LABELS, L.QUALITY_HOTKEYS, "Object quality")
    _choices(right, L.DENSE, DENSE_LABELS, L.DENSE_HOTKEYS, "Dense scene")
    _section(right, "CAD model")
    _el(right, "Choices", name=L.CAD, toName=L.IMAGE, value=f"${L.DATA_CAD_OPTIONS}",
        choice="single-radio", layout="inline")


def build_config() -> str:
    """The labeling config XML text (ends with a newline)."""
    root = _el(None, "View", style=ROOT_STYLE)
    _image_column(root)
    _control_column(root)
    ET.indent(root, space="  ")
    comment = ("<!-- Generated by scripts/make_labeling_config.py from pose6d/labeling.py and "
               "pose6d/labels.py. Do not edit by hand. -->\n")
    return comment + ET.tostring(root, encoding="unicode") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help=f"output file, '-' for stdout (default: {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if --out differs from the generated config")
    args = parser.parse_args(argv)
    text = build_config()
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            print(f"error: {out} is stale; run scripts/make_labeling_config.py", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    atomic_write_bytes(out, text.encode("utf-8"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
