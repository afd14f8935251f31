"""Make Label Studio tasks (JSON) from a dataset: one task per object.

Objects whose photo is missing or unreadable, or whose CAD models are missing, are reported on
stderr and skipped. Works offline; the output file is written atomically. The CAD models'
pictures are written to <data root>/cad_thumbnails/ (served like the photos) unless --no-pictures.

examples:
  python scripts/make_tasks.py --data-root demo_data --out tasks.json
  python scripts/make_tasks.py --data-root /data/in3d --out car.json --categories car --limit 100

Image URLs are /data/local-files/?d=<path relative to the data root> by default, which would
need the data root as Label Studio's document root, and Label Studio refuses a local-files storage
on its document root. So start Label Studio with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<a PARENT
folder of the data root>, add a local-files storage for the data root to the project, and pass
--image-url-prefix '/data/local-files/?d=<data root relative to that parent>/'
(scripts/setup_project.py does all three). Or pass the --image-url-prefix of any web server.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from pose6d.cli import fail, open_dataset, parser_from_doc
from pose6d.dataset import INITIAL, ObjectKey
from pose6d.inout import atomic_write_bytes
from pose6d.cad_gallery import write_thumbnails
from pose6d.errors import DataError
from pose6d.tasks import iter_tasks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--data-root", required=True, type=Path,
                        help="dataset root (images/, annotations/, CAD/)")
    parser.add_argument("--out", required=True, type=Path, help="output tasks JSON file")
    parser.add_argument("--image-url-prefix", default=None,
                        help="prefix of image URLs, followed by the root-relative path "
                             "(default: /data/local-files/?d=)")
    parser.add_argument("--no-pictures", action="store_true",
                        help="CAD options by name only (no pictures written or shown)")
    parser.add_argument("--predictions", action="store_true",
                        help="include the initial pose as each task's prediction (default: none; "
                             "the ML backend predicts when a task opens)")
    parser.add_argument("--categories", default=None,
                        help="comma-separated category names (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="write at most N tasks")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    args = parse_args(argv)
    dataset = open_dataset(args.data_root)
    categories = [c for c in args.categories.split(",") if c] if args.categories else None
    keys = dataset.objects(categories=categories)
    if categories:
        found = {k.category for k in keys}
        for cat in categories:
            if cat not in found:
                print(f"warning: no objects of category {cat!r}", file=sys.stderr)
    if not keys:
        print(f"error: no objects found under {args.data_root / INITIAL}", file=sys.stderr)
        return 1

    skipped: list[str] = []

    def on_skip(key: ObjectKey, message: str) -> None:
        skipped.append(str(key))
        tqdm.write(f"skipped {message}", file=sys.stderr)

    if not args.no_pictures:
        try:
            write_thumbnails(dataset, {k.category for k in keys}, progress=not args.quiet)
        except (OSError, DataError) as exc:
            fail(f"cannot write the CAD pictures under {args.data_root}: {exc} "
                 "(or pass --no-pictures)")
    bar = tqdm(keys, desc="tasks", unit="obj", disable=args.quiet, file=sys.stderr)
    tasks = list(iter_tasks(dataset, bar, limit=args.limit, on_skip=on_skip,
                            image_url_prefix=args.image_url_prefix,
                            pictures=not args.no_pictures, predictions=args.predictions))
    bar.close()
    try:
        atomic_write_bytes(args.out, json.dumps(tasks).encode("utf-8"))
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(tasks)} tasks to {args.out}; skipped {len(skipped)} object(s)"
          + (" (see messages above)" if skipped else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m pose6d.cli.make_tasks
    raise SystemExit(main())
