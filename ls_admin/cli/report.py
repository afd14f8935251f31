"""Labelling report: progress, pretrained-model accuracy, annotator agreement, ground-truth tests.

Prints a summary and writes a self-contained HTML page with plots (PNG inline). Figures use
ImageNet3D's metrics: Acc@pi/6, Acc@pi/18 (share of rotation errors below 30 / 10 degrees) and
the median rotation error, with R = Rip(theta) Rx(e - pi/2) Rz(-a).

examples:
  python scripts/report.py --data-root demo_data --out report.html
  python scripts/report.py --data-root demo_data --project-id 3 --out report.html --json report.json
  python scripts/report.py --data-root demo_data --out report.html --masks masks.html

Labels come from the Label Studio project with --project-id (URL / key from --url / --api-key or
LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY; every annotation, annotator emails), else from the sync
store of the synced folder (every annotation), else from annotations_new/ (newest per object:
no agreement figures then). Ground-truth figures need ground_truth/ records in the dataset.
--masks writes a second page: the derived masks (what the coco / bop / correspondences exports
contain) over a sample of photos per category, to check by eye.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from pose6d.cli import fail, open_dataset, parser_from_doc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ls_admin.report import QUALIFY_ACC, QUALIFY_MIN

    parser = parser_from_doc(__doc__)
    parser.add_argument("--data-root", required=True, type=Path, help="dataset root")
    parser.add_argument("--out", type=Path, default=Path("report.html"),
                        help="HTML report (default report.html)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--masks", type=Path, default=None,
                        help="also write the derived-masks page (HTML) here")
    parser.add_argument("--masks-per-category", type=int, default=3,
                        help="photos per category on the masks page (default 3)")
    parser.add_argument("--project-id", type=int, default=None,
                        help="read labels from this Label Studio project")
    parser.add_argument("--url", default=None, help="Label Studio URL (else LABEL_STUDIO_URL)")
    parser.add_argument("--api-key", default=None, help="API key (else LABEL_STUDIO_API_KEY)")
    parser.add_argument("--sync-store", default=None,
                        help="sync store URL (default: POSE6D_SYNC_STORE or "
                             "annotations_new/.sync.sqlite3)")
    parser.add_argument("--qualify-acc", type=float, default=QUALIFY_ACC,
                        help=f"Acc@pi/6 an annotator's labels on ground-truth objects need to be "
                             f"on target (default {QUALIFY_ACC}; the qualification test itself "
                             "is pose6d-qualify)")
    parser.add_argument("--qualify-min", type=int, default=QUALIFY_MIN,
                        help=f"ground-truth objects an annotator needs for that (default {QUALIFY_MIN})")
    return parser.parse_args(argv)


def _client(args: argparse.Namespace):
    try:
        from ls_admin.connection import AdminError, connect
    except ImportError as exc:
        fail(f"cannot connect to Label Studio: ls_admin.connection is not available ({exc})")
    try:
        return connect(args.url, args.api_key)
    except AdminError as exc:
        fail(str(exc))


def _json_safe(value):
    """NaN -> None so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    from ls_admin.export_source import ExportError
    from ls_admin.report import build_report, format_summary, load_inputs
    from ls_admin.report_html import render_html
    from pose6d.inout import atomic_write_bytes

    args = parse_args(argv)
    dataset = open_dataset(args.data_root)
    client = _client(args) if args.project_id is not None else None
    rejected: list[str] = []
    try:
        inputs = load_inputs(dataset, client, args.project_id, args.sync_store,
                             on_reject=rejected.append)
    except ExportError as exc:
        fail(str(exc))
    report = build_report(inputs, args.qualify_acc, args.qualify_min)
    print(format_summary(report))
    if rejected:
        print(f"warning: {len(rejected)} annotations left out (the sync would reject them), "
              f"e.g. {rejected[0]}")
    try:
        atomic_write_bytes(args.out, render_html(report).encode())
        if args.json:
            atomic_write_bytes(args.json, json.dumps(_json_safe(report), indent=1).encode())
        if args.masks:
            from ls_admin.export_source import newest_per_object
            from ls_admin.report_masks import masks_page
            page = masks_page(newest_per_object(inputs.labels), dataset, args.masks_per_category)
            atomic_write_bytes(args.masks, page.encode())
            print(f"derived masks page written to {args.masks}")
    except ExportError as exc:  # the masks page: a CAD model or photo size missing
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the report: {exc}")
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.report
    raise SystemExit(main())
