"""Set up a Label Studio project for a dataset: labeling config, interactive ML backend, sync
webhook, images, and one task per object with the pretrained pose as a prediction.

Safe to re-run: the project is found by --project-id or by its exact --title and updated, the
backend and webhook are not duplicated, and only objects not yet in the project are imported.

examples:
  export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=<token>
  python scripts/setup_project.py --data-root /data/ls_root/in3d --backend-url http://127.0.0.1:9090
  python scripts/setup_project.py --data-root demo_data/dataset --backend-url http://127.0.0.1:9090 \\
      --title "cars, first 100" --categories car --limit 100

The API key is a personal access token (Label Studio: Account & Settings) or a legacy token.
--backend-url is the backend's address as Label Studio sees it; the backend must be running
(Label Studio checks it when connecting). Images are served by Label Studio as local files by
default: it must run with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a parent folder of --data-root. Otherwise give
--image-url-prefix (e.g. https://files.lab.org/in3d/); the image's path below the data root is
appended. Exit status: 0 done, 2 error (one line on stderr).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pose6d.defaults import ENV_PREFIX
from pose6d.cli import fail, parser_from_doc
from pose6d.dataset import Dataset
from pose6d.errors import DataError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser_from_doc(__doc__)
    p.add_argument("--data-root", required=True, type=Path,
                   help="dataset root (images/, annotations/, CAD/)")
    p.add_argument("--backend-url", required=True,
                   help="the pose6d ML backend as Label Studio reaches it, e.g. http://127.0.0.1:9090")
    p.add_argument("--url", default=None, help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    p.add_argument("--api-key", default=None,
                   help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--title", default="pose6d", help="project title (default: %(default)s)")
    p.add_argument("--project-id", type=int, default=None,
                   help="use this existing project instead of looking it up by title")
    p.add_argument("--categories", default=None, help="comma-separated categories (default: all)")
    p.add_argument("--keys", default=None,
                   help="only these objects: a file with one category/name_k per line, or a "
                        "comma-separated list")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N selected objects (those already imported count)")
    # ls_admin.project.DEFAULT_BATCH, not imported here: --help stays light
    p.add_argument("--batch-size", type=int, default=2000,
                   help="tasks per import request (default: %(default)s)")
    p.add_argument("--image-url-prefix", default=None,
                   help="serve images from URLs <prefix><path below the data root> instead of "
                        "Label Studio local files")
    p.add_argument("--predictions", action="store_true",
                   help="also import the initial pose as each task's prediction (without the "
                        "overlay: a task opened from the Data Manager then shows no overlay until "
                        "the first command). Default: none; the backend predicts when a task opens")
    p.add_argument("--no-pictures", action="store_true",
                   help="CAD choice by name only (default: the models' pictures, written to "
                        "<data root>/cad_thumbnails/ and served by Label Studio like the photos)")
    p.add_argument("--prefill-fit", action="store_true",
                   help="fit every new object's pose to its photo ahead (auto-fit; about 1 s per "
                        "object and worker), store the fit score as data.fit_score and add a "
                        "Data Manager view sorted by it, hardest first. The backend shows the "
                        "fitted poses when started with --prefill-fit (it reads these fits)")
    p.add_argument("--fit-workers", type=int, default=1,
                   help="processes for --prefill-fit (default: %(default)s; each uses a core)")
    p.add_argument("--retries", type=int, default=4,
                   help="connection retries with exponential backoff (default: %(default)s)")
    user_env, password_env = ENV_PREFIX + "BASIC_AUTH_USER", ENV_PREFIX + "BASIC_AUTH_PASSWORD"
    p.add_argument("--backend-user", default=os.environ.get(user_env, ""),
                   help=f"basic-auth user of the backend, if it has one (default: ${user_env})")
    p.add_argument("--backend-password", default=os.environ.get(password_env, ""),
                   help=f"its password (default: ${password_env})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        p.error("--limit must be >= 0")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.fit_workers < 1:
        p.error("--fit-workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from ls_admin.connection import AdminError, connect, normalize_url, resolve_url
    from ls_admin.project import SetupOptions, parse_keys, setup_project

    args = parse_args(argv)
    try:
        Dataset.open(args.data_root)
        options = SetupOptions(
            data_root=args.data_root, backend_url=normalize_url(args.backend_url, "--backend-url"),
            title=args.title, project_id=args.project_id,
            categories=[c for c in args.categories.split(",") if c] if args.categories else None,
            keys=parse_keys(args.keys) if args.keys else None, limit=args.limit,
            batch_size=args.batch_size, image_url_prefix=args.image_url_prefix,
            predictions=args.predictions, pictures=not args.no_pictures, progress=not args.quiet,
            prefill_fit=args.prefill_fit, fit_workers=args.fit_workers,
            backend_auth=(args.backend_user, args.backend_password)
            if args.backend_user or args.backend_password else None)
        client = connect(args.url, args.api_key, retries=args.retries)
        report = setup_project(client, options, resolve_url(args.url))
    except (AdminError, DataError) as exc:
        fail(str(exc))
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.setup_project
    raise SystemExit(main())
