#!/usr/bin/env python
"""Write the deterministic demo dataset (ImageNet3D annotation-tool layout) into a folder.

Example:
    python scripts/make_demo_dataset.py --out /tmp/demo --objects 40 --seed 0
"""
from __future__ import annotations

import sys
from pathlib import Path


import argparse

from pose6d.demo.dataset import DemoDatasetError, MANIFEST, make_demo_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write a synthetic 3D-pose dataset in the ImageNet3D annotation-tool layout: "
                    "CAD/<category>/<NN>.off, images/<category>/<name>.JPEG, "
                    "annotations/ (initial, model-like poses), ground_truth/ (true poses) and "
                    f"{MANIFEST}. The same seed gives byte-identical files.",
        epilog="Re-running into an existing demo dataset replaces its files (labels saved under "
               "annotations_new/ are never touched).")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--objects", type=int, default=40,
                        help="number of annotated objects (default 40; about 0.1 s each)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a demo dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.objects < 1:
        print("error: --objects must be at least 1", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("error: --seed must be >= 0", file=sys.stderr)
        return 2
    try:
        manifest = make_demo_dataset(args.out, args.objects, args.seed, progress=not args.quiet,
                                     force=args.force)
    except DemoDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {manifest['objects']} objects in {manifest['images']} images, "
          f"{len(manifest['categories'])} categories to {args.out}")
    return 0


if __name__ == "__main__":  # python -m pose6d.cli.make_demo_dataset
    raise SystemExit(main())
