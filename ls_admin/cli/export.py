"""Export pose labels to the ImageNet3D per-image format, BOP, a flat table (CSV + JSON lines),
or the labels derived from the poses: COCO instance masks and 2D-3D correspondences.

Labels come from the synced dataset folder (annotations_new/, default) or straight from a Label
Studio project (--from project --project-id N; URL and API key from --url / --api-key or
LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY). By default the newest completed annotation of each
object; --all-annotations exports every one (from the synced folder this reads the sync store).
Labels a reviewer rejected (pose6d-review) are left out unless --include-rejected.

examples:
  python scripts/export.py --format imagenet3d --data-root demo_data --out out/in3d
  python scripts/export.py --format bop --data-root demo_data --out out/bop --bop-images copy
  python scripts/export.py --format table --data-root demo_data --from project --project-id 3 \\
      --all-annotations --out out/table
  python scripts/export.py --format coco --data-root demo_data --out out/coco --split train
  python scripts/export.py --format correspondences --data-root demo_data --out out/corr

Formats (each output folder gets a README describing it):
  imagenet3d  <out>/<category>/<image name>.npz, 'annotations' = list of per-object dicts, angles
              in RADIANS. "bad quality - no object" -> object_status status_bad. Skipped objects
              are KEPT with their initial pose, skipped=True and object_status status_bad.
              Objects nobody labeled are left out.
  bop         scene_gt.json / scene_camera.json per scene (one scene per category), one BOP
              image per object (the PASCAL3D+ principal point is the object's centre, so each
              object needs its own cam_K), models as PLY in mm: 1 CAD unit = --mm-per-unit mm
              (default 1000; ImageNet3D meshes are ~1 unit = 1 m across). Skipped and bad objects
              are left out (listed in left_out.json). obj_id_map.json maps (category, cad_index).
              mask/, mask_visib/ and scene_gt_info.json as the BOP toolkit writes them, rendered
              from the poses (--no-bop-masks leaves them out).
  table       labels.csv + labels.jsonl: pose in degrees and radians, cad, quality, dense,
              annotator, Label Studio ids, updated_at.
  coco        annotations/instances_<split>.json: one image per photo, one annotation per
              object: visible mask as compressed RLE (a z-buffer over the photo's labelled
              objects), bbox, area, segmentation_amodal, and the pose (pose6d field).
  correspondences  <category>/<name>_<k>.npz per object: visible mask, per-pixel 3D point on
              the CAD model (model frame, float16), projected 3D box corners and keypoints.
  coco and correspondences leave out skipped objects and "bad quality - no object" ones
              (--include-bad keeps the latter) and objects with no visible pixel.

The output folder is written beside it and renamed into place when complete: it must be empty
or absent (or pass --overwrite).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pose6d.cli import fail, open_dataset, parser_from_doc
from pose6d.dataset import DATASET_FOLDERS, INITIAL, SYNCED

FORMATS = ("imagenet3d", "bop", "table", "coco", "correspondences")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--data-root", required=True, type=Path,
                        help="dataset root (annotations/, annotations_new/, CAD/)")
    parser.add_argument("--from", dest="source", choices=("synced", "project"), default="synced",
                        help="where labels come from (default: synced)")
    parser.add_argument("--project-id", type=int, help="Label Studio project (with --from project)")
    parser.add_argument("--url", default=None, help="Label Studio URL (else LABEL_STUDIO_URL)")
    parser.add_argument("--api-key", default=None, help="API key (else LABEL_STUDIO_API_KEY)")
    parser.add_argument("--all-annotations", action="store_true",
                        help="every completed annotation, not only the newest per object")
    parser.add_argument("--sync-store", default=None,
                        help="sync store URL (default: POSE6D_SYNC_STORE or "
                             "annotations_new/.sync.sqlite3)")
    parser.add_argument("--include-rejected", action="store_true",
                        help="also export objects whose annotation a reviewer rejected "
                             "(pose6d-review; left out by default)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--workers", type=int, default=8,
                        help="file-writing threads (default 8); coco, correspondences and bop "
                             "masks render min(this, cores) photos at a time")
    parser.add_argument("--include-bad", action="store_true",
                        help="coco / correspondences: also export \"bad quality - no object\" "
                             "objects (left out by default)")
    bop = parser.add_argument_group("bop")
    bop.add_argument("--split", default="train",
                     help="BOP split folder / COCO instances_<split>.json name (default train)")
    bop.add_argument("--no-bop-masks", dest="bop_masks", action="store_false",
                     help="no mask/, mask_visib/ and scene_gt_info.json (faster)")
    bop.add_argument("--mm-per-unit", type=float, default=1000.0,
                     help="millimetres per CAD unit (default 1000: unit-size meshes are 1 m)")
    bop.add_argument("--bop-images", choices=("link", "copy", "none"), default="link",
                     help="photos in rgb/: symlinks (default), copies, or none")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.source == "project" and args.project_id is None:
        parser.error("--from project needs --project-id")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    return args


def refused_out(out: Path, data_root: Path) -> str | None:
    """Why ``out`` may not be an export folder of ``data_root`` (None: it may). Refused: the data
    root itself, any folder containing it, and any of its own folders, inside or around them."""
    out, root = out.resolve(), data_root.resolve()
    if out == root or out in root.parents:
        return f"is or contains the data root {data_root}"
    for name in DATASET_FOLDERS:
        folder = root / name
        if out == folder or folder in out.parents or out in folder.parents:
            return f"is, contains or lies inside the dataset folder {data_root / name}"
    if out.name in (INITIAL, SYNCED):
        return "is named like an annotations folder"
    return None


def load_labels(args: argparse.Namespace, dataset):
    """The labels to export, from the synced folder or the project."""
    from ls_admin.export_source import labels_from_project, labels_from_synced

    if args.source == "synced":
        return labels_from_synced(dataset, args.all_annotations, args.sync_store)
    try:
        from ls_admin.connection import AdminError, connect
    except ImportError as exc:
        fail(f"cannot connect to Label Studio: ls_admin.connection is not available ({exc})")
    try:
        client = connect(args.url, args.api_key)
    except AdminError as exc:
        fail(str(exc))
    rejected: list[str] = []
    labels = labels_from_project(client, args.project_id, dataset, args.all_annotations,
                                 on_reject=rejected.append)
    for line in rejected[:20]:
        print(f"warning: left out {line}")
    if len(rejected) > 20:
        print(f"warning: ... {len(rejected) - 20} more annotations left out")
    return labels


def render_workers(workers: int) -> int:
    """Photos rendered at a time: --workers, at most one per core (ray casting is CPU work)."""
    return max(1, min(workers, os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    from ls_admin.export_source import ExportError

    args = parse_args(argv)
    dataset = open_dataset(args.data_root)
    refused = refused_out(args.out, args.data_root)
    if refused:
        fail(f"--out {args.out} {refused}; choose a folder outside them (e.g. "
             f"{args.data_root / 'exports' / args.format})")
    start = time.perf_counter()
    try:
        labels = load_labels(args, dataset)
        rejected = 0
        if not args.include_rejected:
            from ls_admin.export_source import without_rejected
            labels, rejected = without_rejected(labels, dataset, args.sync_store)
        progress = not args.quiet
        if args.format == "imagenet3d":
            from ls_admin.export_imagenet3d import export_imagenet3d
            summary = export_imagenet3d(labels, args.out, args.overwrite, args.workers, progress)
        elif args.format == "bop":
            from ls_admin.export_bop import export_bop
            summary = export_bop(labels, dataset, args.out, args.split, args.mm_per_unit,
                                 args.bop_images, args.overwrite, progress, args.bop_masks,
                                 render_workers(args.workers))
        elif args.format == "coco":
            from ls_admin.export_coco import export_coco
            summary = export_coco(labels, dataset, args.out, args.split, args.include_bad,
                                  args.overwrite, render_workers(args.workers), progress)
        elif args.format == "correspondences":
            from ls_admin.export_correspondences import export_correspondences
            summary = export_correspondences(labels, dataset, args.out, args.include_bad,
                                             args.overwrite, render_workers(args.workers),
                                             progress)
        else:
            from ls_admin.export_table import export_table
            summary = export_table(labels, args.out, args.overwrite, progress)
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {args.out}: {exc}")
    took = time.perf_counter() - start
    print(f"exported {summary.objects} labels ({summary.skipped} skipped, {summary.bad} bad"
          + (f", {summary.left_out} left out" if summary.left_out else "")
          + f") as {args.format} to {args.out} in {took:.1f} s")
    if rejected:
        print(f"note: {rejected} labels a reviewer rejected were left out (--include-rejected "
              "keeps them)")
    for note in summary.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.export
    raise SystemExit(main())
