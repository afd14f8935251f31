"""Auto-fit the initial pose of every object of a dataset to its photo; one JSON line each.

Example:
    pose6d-auto-fit --data-root /data/demo --out fitted.jsonl --workers 2
    python scripts/auto_fit.py --data-root /data/demo --out fitted.jsonl    (the same)
"""
from __future__ import annotations

import argparse
import sys

from pose6d.cli import fail
from pose6d.fitting.batch import fit_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fit every object's initial pose (annotations/<category>/<name>_<k>.npz: "
                    "the model's pose, CAD model and box) to its photo: the pose whose rendered "
                    "silhouette best matches the photo's edges and the object's foreground, "
                    "kept close to the initial pose. Writes one JSON line per object: "
                    "object_key, azimuth, elevation, theta (degrees), distance, px, py, "
                    "cad_index, score and initial_score (0-1: how well the silhouette explains "
                    "the photo), seconds; or object_key and error for an object that cannot be "
                    "fitted (the others go on). The dataset is not modified.",
        epilog="Fitting takes about 0.5-1.5 s per object and core; --workers runs several "
               "processes.")
    parser.add_argument("--data-root", required=True,
                        help="dataset folder (images/, annotations/, CAD/)")
    parser.add_argument("--out", required=True, help="output file (JSON lines), overwritten")
    parser.add_argument("--keys", nargs="+", metavar="KEY",
                        help="only these objects, as category/name_k (default: all)")
    parser.add_argument("--categories", nargs="+", metavar="CATEGORY",
                        help="only objects of these categories")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (default 1; each uses one core)")
    parser.add_argument("--all-cads", action="store_true",
                        help="fit every CAD model of the category and write the suggested one "
                             "(another model only when it explains the photo clearly better)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workers < 1:
        fail("--workers must be at least 1")
    try:
        summary = fit_dataset(args.data_root, args.out, keys=args.keys,
                              categories=args.categories, workers=args.workers,
                              all_cads=args.all_cads, progress=not args.quiet)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {args.out}: {exc}", code=1)
    print(f"fitted {summary['fitted']} of {summary['objects']} objects "
          f"({summary['errors']} errors) in {summary['seconds']:.1f} s -> {summary['out']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m pose6d.cli.auto_fit
    raise SystemExit(main())
