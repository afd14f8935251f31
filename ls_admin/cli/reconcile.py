"""Repair the synced dataset (annotations_new/) from a Label Studio project's annotations.

Use it after the backend was down or unreachable (webhooks are not re-sent): webhook events whose
writes failed are retried first, every annotation of the project is applied as the webhook would
apply it, annotations deleted in Label Studio are deleted from the sync (each deletion is
permanent, so it is confirmed first: Label Studio must answer 404 for it; an unconfirmed one is
left alone and listed as "not deleted"), and synced files that no longer match are rewritten or
removed. Prints every change; a second run prints "no changes". Safe while the backend runs (they
share the sync store and its locks). The project is read through Label Studio export snapshots
(a temporary "pose6d snapshot" export, deleted once read; the API key needs export rights): about
3 minutes to read 100k annotated tasks, 4.5 minutes for the whole reconcile.

examples:
  export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=<token>
  python scripts/reconcile.py --data-root /data/ls_root/in3d --project-id 3 --dry-run
  python scripts/reconcile.py --data-root /data/ls_root/in3d --project-id 3

--sync-store must be the backend's store (its --sync-store / POSE6D_SYNC_STORE; default: the
SQLite file annotations_new/.sync.sqlite3 in the data root). Exit status: 0 done, 2 error.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from label_sync.store import STORE_ENV
from pose6d.cli import fail, parser_from_doc
from pose6d.dataset import Dataset
from pose6d.errors import DataError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser_from_doc(__doc__)
    p.add_argument("--data-root", required=True, type=Path,
                   help="dataset root the backend syncs into (annotations_new/)")
    p.add_argument("--project-id", required=True, type=int, help="the Label Studio project")
    p.add_argument("--dry-run", action="store_true", help="only print what would change")
    p.add_argument("--url", default=None, help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    p.add_argument("--api-key", default=None,
                   help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--sync-store", default=os.environ.get(STORE_ENV, ""),
                   help="the backend's sync store: a SQLite path or postgresql:// URL "
                        "(default: $POSE6D_SYNC_STORE, else the data root's SQLite file)")
    p.add_argument("--retries", type=int, default=4,
                   help="connection retries with exponential backoff (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ls_admin.connection import AdminError, connect
    from ls_admin.reconcile import reconcile

    args = parse_args(argv)
    logging.getLogger("label_sync").setLevel(logging.ERROR)  # rejections are in the report
    try:
        dataset = Dataset.open(args.data_root)
        client = connect(args.url, args.api_key, retries=args.retries)
        report = reconcile(client, dataset, args.project_id, args.sync_store,
                           dry_run=args.dry_run, progress=not args.quiet)
    except (AdminError, DataError) as exc:
        fail(str(exc))
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":  # python -m ls_admin.cli.reconcile
    raise SystemExit(main())
