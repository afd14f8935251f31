"""Blind A/B evaluation in Label Studio: which of two poses of an object fits its photo better.

`create` makes (or updates) an evaluation project: per object that both sources have, the photo
twice with each pose's overlay drawn on it (the edges the annotator sees), left and right at
random. Which side is which is kept only in the sync store, never in the task's data or the
pictures' names, so raters (who can see data columns in Label Studio Community) cannot tell.
The rater picks "Left fits better", "About the same" or "Right fits better" (keys 1, 2, 3).
`results` pulls every rating from the project (the backend's webhook also stores them as they
come) and prints, per category and overall, how often B beat A with a 95% interval (Wilson
score; ties apart), and the objects where A won: the ones a reviewer should look at.

examples:
  export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=<token>
  pose6d-evaluate create --data-root demo_data/dataset
  pose6d-evaluate create --data-root demo_data/dataset --title "new model vs humans" \\
      --a file:new_model.jsonl --b synced --categories car,chair --limit 200 --seed 7
  pose6d-evaluate results --data-root demo_data/dataset --csv eval.csv --html eval.html

Pose sources: initial (annotations/: the pretrained model), synced (annotations_new/: the
human labels), ground_truth (demo datasets), or file:PATH (a JSON / JSON-lines predictions file,
the format of the backend's --pose-source file:PATH). An evaluation is named by its --title:
re-running create adds only objects not in it yet (a pair is never re-drawn or re-randomised);
against a new or emptied project it imports the pairs again except those already rated (kept
in the store; --re-ask asks again). Images are served by Label Studio as local files, like
setup_project's (LABEL_STUDIO_LOCAL_FILES_* settings), or from --image-url-prefix. The sync
backend must have the same --sync-store for ratings to arrive by webhook (results pulls them
anyway). Exit status: 0 done, 2 error (one line on stderr).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pose6d.cli import fail, parser_from_doc

DEFAULT_TITLE = "pose6d evaluation"  # ls_admin.evaluate.DEFAULT_TITLE (not imported: light --help)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", required=True, type=Path,
                   help="dataset root (images/, annotations/, annotations_new/, CAD/)")
    p.add_argument("--url", default=None, help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    p.add_argument("--api-key", default=None,
                   help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--title", default=DEFAULT_TITLE,
                   help="the evaluation's name and project title (default: %(default)s)")
    p.add_argument("--project-id", type=int, default=None,
                   help="use this existing project instead of looking it up by title")
    p.add_argument("--sync-store", default=None,
                   help="store URL (default: $POSE6D_SYNC_STORE or annotations_new/.sync.sqlite3)")
    p.add_argument("--retries", type=int, default=4,
                   help="connection retries with exponential backoff (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{create,results}")
    create = sub.add_parser("create", help="make or update the evaluation project",
                            description="Make or update the evaluation project (pose6d-evaluate "
                                        "--help explains it, with examples).")
    _common(create)
    create.add_argument("--a", default="initial",
                        help="source A, the one under test (default: %(default)s)")
    create.add_argument("--b", default="synced",
                        help="source B, whose win rate is reported (default: %(default)s)")
    create.add_argument("--categories", default=None, help="comma-separated categories (default: all)")
    create.add_argument("--limit", type=int, default=None,
                        help="at most N objects in the evaluation (those already in it count)")
    create.add_argument("--seed", type=int, default=None,
                        help="sides from this seed, per object (default: random)")
    create.add_argument("--re-ask", action="store_true",
                        help="import rated pairs again into a new project (default: only unrated)")
    create.add_argument("--image-url-prefix", default=None,
                        help="serve the pictures from <prefix><path below the data root> instead "
                             "of Label Studio local files")
    results = sub.add_parser("results", help="pull the ratings; win rates, the objects A won",
                             description="Pull the ratings; B's win rate per category and "
                                         "overall, the objects A won (pose6d-evaluate --help "
                                         "explains it, with examples).")
    _common(results)
    results.add_argument("--csv", type=Path, default=None, help="write the figures as CSV")
    results.add_argument("--html", type=Path, default=None, help="write them as an HTML page")
    results.add_argument("--no-pull", action="store_true",
                         help="only the store (no Label Studio): what the webhook brought")
    args = parser.parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    from label_sync.store import default_store_url
    from ls_admin.connection import AdminError, connect, resolve_url
    from pose6d.errors import DataError, StoreFailure

    args = parse_args(argv)
    store_url = default_store_url(args.data_root, args.sync_store)
    try:
        if args.command == "create":
            from ls_admin.evaluate import CreateOptions, create

            options = CreateOptions(
                data_root=args.data_root, store_url=store_url, title=args.title,
                project_id=args.project_id, a=args.a, b=args.b,
                categories=[c for c in args.categories.split(",") if c] if args.categories else None,
                limit=args.limit, seed=args.seed, re_ask=args.re_ask,
                image_url_prefix=args.image_url_prefix, progress=not args.quiet)
            client = connect(args.url, args.api_key, retries=args.retries)
            print("\n".join(create(client, options, resolve_url(args.url)).lines()))
            return 0
        return _results(args, store_url)
    except (AdminError, DataError, StoreFailure) as exc:
        fail(str(exc))


def _results(args: argparse.Namespace, store_url: str) -> int:
    from label_sync.quality_store import EVALUATION, QualityStore
    from ls_admin.connection import AdminError, connect
    from ls_admin.evaluate_results import (format_results, pull_ratings, require_evaluation,
                                           store_results, to_csv)
    from ls_admin.project import find_project
    from pose6d.dataset import Dataset
    from pose6d.inout import atomic_write_bytes

    Dataset.open(args.data_root)
    store = QualityStore(store_url)
    name = args.title
    try:
        if not args.no_pull:
            client = connect(args.url, args.api_key, retries=args.retries)
            project = find_project(client, args.title, args.project_id)
            if project is None:
                print(f"no project titled {args.title!r} in Label Studio: ratings from the store only")
            else:
                with store.transaction() as tx:
                    known = tx.project(project.id)
                if known is None or known.kind != EVALUATION:
                    raise AdminError(f"project {project.id} is not an evaluation made by "
                                     "pose6d-evaluate create (not in this store)")
                name = str(known.settings.get("evaluation", name))
                print(pull_ratings(client, store, project.id).line(project.id))
        evaluations = require_evaluation(store_results(store), name)
    finally:
        store.close()
    print("\n\n".join(format_results(e) for e in evaluations))
    try:
        if args.csv:
            atomic_write_bytes(args.csv, to_csv(evaluations).encode())
            print(f"CSV written to {args.csv}")
        if args.html:
            from ls_admin.report_html import evaluation_page

            atomic_write_bytes(args.html, evaluation_page(evaluations).encode())
            print(f"HTML written to {args.html}")
    except OSError as exc:
        fail(f"cannot write the results: {exc}")
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.evaluate
    raise SystemExit(main())
