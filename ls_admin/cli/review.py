"""Review submitted poses and send rejected ones back (the original tool's quality page): a
Label Studio project where a reviewer sees each submitted pose rendered over its photo and
accepts or rejects it (create), and the rejections sent back to the labelling project as
fresh tasks with the reviewer's note (sync).

examples:
  export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=<token>
  pose6d-review create --data-root demo_data/dataset --title pose6d
  pose6d-review create --data-root DATA --project-id 3 --sample 50 --seed 1
  pose6d-review create --data-root DATA --project-id 3 --flagged --backend-url http://127.0.0.1:9090
  pose6d-review sync --data-root DATA

Each subcommand explains itself: pose6d-review create --help. Decisions are kept in the sync
store (annotations_new/.sync.sqlite3, $POSE6D_SYNC_STORE or --sync-store); a synced record then
says review_status reviewed / rejected, and exports leave rejected objects out unless given
--include-rejected. Exit status: 0 done, 2 error (one line on stderr).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pose6d.cli import fail, parser_from_doc
from pose6d.defaults import ENV_PREFIX
from pose6d.errors import DataError, StoreFailure

CREATE_DOC = """Create (or extend) the review project from the submitted annotations of a
labelling project: per object its synced annotation (what annotations_new/ holds), shown as the
photo with that pose and CAD model rendered over it, with Accept / Reject, the reasons (bad CAD
model, more CAD models needed, bad pose, bad image) and a comment.

examples:
  pose6d-review create --data-root DATA --title pose6d                # every synced annotation
  pose6d-review create --data-root DATA --project-id 3 --sample 50 --seed 1
  pose6d-review create --data-root DATA --project-id 3 --flagged --fit-below 0.4

--flagged takes what the report flags: records whose pose was not drawn for the annotator
(pose_rendered false), tasks with an auto-fit score (data.fit_score) below --fit-below, and
objects whose human pose lost a blind A/B rating (pose6d-evaluate). The renders are written to
DATA/qc_review/ and served by Label Studio as local files, like the photos. Re-running adds only
annotations not yet in the review project (a sample is drawn again with the same seed).
With --backend-url the review project gets the backend's sync webhook, so decisions reach the
store at once; without it, pose6d-review sync pulls them.
"""

SYNC_DOC = """Pull the review projects' annotations into the sync store and send every rejection
back: a fresh task for the same object in the labelling project, whose command box and red
instructions line say "Sent back by <reviewer>: <reasons>; <comment>".

examples:
  pose6d-review sync --data-root DATA
  pose6d-review sync --data-root DATA --review-project-id 9

The annotator's corrected submission on that task becomes the object's newest annotation, so the
synced record follows it (its review fields go until it is reviewed again: create adds it to the
review project). Safe to re-run and to kill: a rejection is sent back once (the task's id is
kept in the store at once, and a task made by a run killed before that is found again by its
data.sent_back_for marker).
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", required=True, type=Path, help="dataset root")
    p.add_argument("--sync-store", default=None,
                   help="sync store URL (default: $POSE6D_SYNC_STORE or "
                        "annotations_new/.sync.sqlite3)")
    p.add_argument("--url", default=None, help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    p.add_argument("--api-key", default=None,
                   help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--retries", type=int, default=4,
                   help="connection retries with exponential backoff (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ls_admin.review import DEFAULT_FIT_BELOW, DEFAULT_REVIEW_TITLE

    p = parser_from_doc(__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="{create,sync}")
    for name, doc in (("create", CREATE_DOC), ("sync", SYNC_DOC)):
        head, _, rest = doc.strip().partition("\n\n")
        s = sub.add_parser(name, help=head.split(":")[0].replace("\n", " "), description=head,
                           epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(s)
        if name == "create":
            main = s.add_mutually_exclusive_group(required=True)
            main.add_argument("--project-id", type=int, help="the labelling project's id")
            main.add_argument("--title", help="the labelling project's exact title")
            s.add_argument("--review-title", default=DEFAULT_REVIEW_TITLE,
                           help="the review project's title (default: %(default)s)")
            which = s.add_mutually_exclusive_group()
            which.add_argument("--all", action="store_true",
                               help="every synced annotation (the default)")
            which.add_argument("--sample", type=int, default=None, metavar="N",
                               help="a random sample of N (with --seed)")
            which.add_argument("--flagged", action="store_true", help="what the report flags")
            s.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
            s.add_argument("--fit-below", type=float, default=DEFAULT_FIT_BELOW,
                           help="--flagged: fit scores below this are flagged "
                                "(default: %(default)s)")
            s.add_argument("--backend-url", default=None,
                           help="the pose6d backend as Label Studio reaches it: the review "
                                "project's sync webhook (optional; sync pulls otherwise)")
            user_env, pw_env = ENV_PREFIX + "BASIC_AUTH_USER", ENV_PREFIX + "BASIC_AUTH_PASSWORD"
            s.add_argument("--backend-user", default=os.environ.get(user_env, ""),
                           help=f"basic-auth user of the backend (default: ${user_env})")
            s.add_argument("--backend-password", default=os.environ.get(pw_env, ""),
                           help=f"its password (default: ${pw_env})")
        else:
            s.add_argument("--review-project-id", type=int, action="append", default=None,
                           help="only this review project (repeatable; default: every review "
                                "project made by create)")
    args = p.parse_args(argv)
    if getattr(args, "sample", None) is not None and args.sample < 1:
        p.error("--sample must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from ls_admin.connection import AdminError, connect, normalize_url
    from ls_admin import review as V

    args = parse_args(argv)
    try:
        client = connect(args.url, args.api_key, retries=args.retries)
        if args.command == "create":
            options = V.ReviewOptions(
                data_root=args.data_root, main_project_id=args.project_id, main_title=args.title,
                review_title=args.review_title,
                mode="sample" if args.sample else "flagged" if args.flagged else "all",
                sample=args.sample or 0, seed=args.seed, fit_below=args.fit_below,
                backend_url=normalize_url(args.backend_url, "--backend-url")
                if args.backend_url else None,
                backend_auth=(args.backend_user, args.backend_password)
                if args.backend_user or args.backend_password else None,
                store_url=args.sync_store, progress=not args.quiet)
            print("\n".join(V.create_review(client, options).lines))
        else:
            report = V.sync_reviews(client, args.data_root, args.review_project_id, args.sync_store)
            print("\n".join(report.lines()))
    except (AdminError, DataError, StoreFailure) as exc:
        fail(str(exc))
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.review
    raise SystemExit(main())
