"""The qualification test annotators take before they label: a Label Studio project of objects
with reference poses (create), each annotator's answers scored against them (score), and who
passed (status).

examples:
  export LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=<token>
  pose6d-qualify create --data-root demo_data/dataset --backend-url http://127.0.0.1:9090
  pose6d-qualify score --data-root demo_data/dataset --html qualification.html
  pose6d-qualify status --data-root demo_data/dataset

Each subcommand explains itself: pose6d-qualify create --help. Results are kept in the sync store
(annotations_new/.sync.sqlite3, $POSE6D_SYNC_STORE or --sync-store), where the backend started
with --require-qualification reads them, and pose6d-report shows them. Exit status: 0 done,
2 error (one line on stderr).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pose6d.cli import fail, parser_from_doc
from pose6d.defaults import ENV_PREFIX
from pose6d.errors import DataError, StoreFailure

CREATE_DOC = """Create (or bring up to date) the qualification project: the objects that have a
reference pose, with the same labeling config, backend and live overlay as the labelling project.

examples:
  pose6d-qualify create --data-root DATA --backend-url http://127.0.0.1:9090
  pose6d-qualify create --data-root DATA --backend-url http://127.0.0.1:9090 \\
      --from synced --keys car/n03770679_1_0,chair/n03001627_7_1 --min-objects 2

References come from DATA/ground_truth/ (all of it, or --keys), or with --from synced from the
synced records of the objects named by --keys (a file with one category/name_k per line, or a
comma-separated list). A copy of them is kept in the sync store: editing a synced record later
does not change the test. Every annotator gets every test task: maximum_annotations is set
through the API (Label Studio Community has no setting for it) to --annotators. The pass rule
given here is kept with the project (score uses it unless given other flags). Re-running adds
only objects not yet in the project; the references already there are kept as they were.
"""

SCORE_DOC = """Score every annotator of the qualification project against the reference poses and
keep the result (pass / fail and the figures) in the sync store.

examples:
  pose6d-qualify score --data-root DATA
  pose6d-qualify score --data-root DATA --project-id 7 --html qualification.html
  pose6d-qualify score --data-root DATA --max-median-deg 15 --min-acc 0.7 --min-objects 5

Per annotator (their newest answer per object): median rotation error and Acc@pi/6 / Acc@pi/18
(a skip or "no object" on an object counts as 180 degrees), median centre error (px), CAD choice
and quality agreement. Default pass rule (or the one given at create): median rotation error
<= 10 deg and Acc@pi/6 >= 0.8 on at least 10 objects. Results are written in one transaction at
the end (a run killed midway changes nothing); an unchanged result is not rewritten. Then the
sync applies the annotations it held for annotators who have now passed (backend started with
--require-qualification).
"""

STATUS_DOC = """Who passed the qualification test: the results kept in the sync store (no Label
Studio needed).

examples:
  pose6d-qualify status --data-root DATA
  pose6d-qualify status --data-root DATA --html qualification.html
"""


SHORT = {"create": "create the qualification project (idempotent)",
         "score": "score every annotator, keep pass / fail in the sync store",
         "status": "who passed (from the sync store)"}


def _common(p: argparse.ArgumentParser, label_studio: bool = True) -> None:
    p.add_argument("--data-root", required=True, type=Path, help="dataset root")
    p.add_argument("--sync-store", default=None,
                   help="sync store URL (default: $POSE6D_SYNC_STORE or "
                        "annotations_new/.sync.sqlite3)")
    if label_studio:
        p.add_argument("--url", default=None, help="Label Studio URL (default: $LABEL_STUDIO_URL)")
        p.add_argument("--api-key", default=None,
                       help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
        p.add_argument("--retries", type=int, default=4,
                       help="connection retries with exponential backoff (default: %(default)s)")


def _rule_flags(p: argparse.ArgumentParser, defaults: str) -> None:
    p.add_argument("--min-objects", type=int, default=None,
                   help=f"objects an annotator must be scored on (default: {defaults} 10)")
    p.add_argument("--max-median-deg", type=float, default=None,
                   help=f"largest median rotation error, degrees (default: {defaults} 10)")
    p.add_argument("--min-acc", type=float, default=None,
                   help=f"smallest Acc@pi/6, a fraction (default: {defaults} 0.8)")


def _project_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--title", default="pose6d qualification",
                   help="the qualification project's title (default: %(default)s)")
    p.add_argument("--project-id", type=int, default=None,
                   help="the project's id instead of its title")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser_from_doc(__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="{create,score,status}")
    for name, doc in (("create", CREATE_DOC), ("score", SCORE_DOC), ("status", STATUS_DOC)):
        head, _, rest = doc.strip().partition("\n\n")
        s = sub.add_parser(name, help=SHORT[name], description=head,
                           epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(s, label_studio=name != "status")
        if name == "create":
            s.add_argument("--backend-url", required=True,
                           help="the pose6d ML backend as Label Studio reaches it")
            _project_flags(s)
            s.add_argument("--from", dest="source", default="ground_truth",
                           choices=("ground_truth", "synced"),
                           help="where the reference poses come from (default: %(default)s)")
            s.add_argument("--keys", default=None,
                           help="only these objects: a file with one category/name_k per line, "
                                "or a comma-separated list (needed with --from synced)")
            s.add_argument("--annotators", type=int, default=100,
                           help="maximum_annotations: how many annotators may take each test "
                                "task (default: %(default)s)")
            s.add_argument("--image-url-prefix", default=None,
                           help="serve images from <prefix><path below the data root>")
            user_env, pw_env = ENV_PREFIX + "BASIC_AUTH_USER", ENV_PREFIX + "BASIC_AUTH_PASSWORD"
            s.add_argument("--backend-user", default=os.environ.get(user_env, ""),
                           help=f"basic-auth user of the backend (default: ${user_env})")
            s.add_argument("--backend-password", default=os.environ.get(pw_env, ""),
                           help=f"its password (default: ${pw_env})")
            _rule_flags(s, "the stored rule, else")
        if name == "score":
            _project_flags(s)
            _rule_flags(s, "the rule given at create, else")
        if name in ("score", "status"):
            s.add_argument("--html", type=Path, default=None,
                           help="also write the results as an HTML page (a row per annotator)")
        s.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    if getattr(args, "annotators", 1) < 1:
        p.error("--annotators must be >= 1")
    return args


def _rule(args: argparse.Namespace, stored: dict | None = None):
    """The pass rule from the flags; None when no flag was given (the stored rule applies)."""
    from ls_admin.qualify import PassRule

    given = {k: v for k, v in (("min_objects", args.min_objects),
                               ("max_median_deg", args.max_median_deg),
                               ("min_acc", args.min_acc)) if v is not None}
    if not given:
        return None
    return PassRule(**{**(stored or {}), **given})


def _write_html(path: Path, rows: list[dict], rule_text: str) -> None:
    from ls_admin.report_html import CSS, qualification_section
    from pose6d.inout import atomic_write_bytes

    body = "".join(qualification_section(rows)) + f"<p class=note>pass rule: {rule_text}</p>"
    page = ("<!doctype html><html><head><meta charset=utf-8><title>pose6d qualification</title>"
            f"<style>{CSS}</style></head><body><h1>pose6d qualification</h1>{body}</body></html>")
    try:
        atomic_write_bytes(path, page.encode())
    except OSError as exc:
        fail(f"cannot write {path}: {exc}")
    print(f"HTML written to {path}")


def main(argv: list[str] | None = None) -> int:
    from ls_admin.connection import AdminError, connect, normalize_url, resolve_url
    from ls_admin import qualify as Q
    from ls_admin.project import find_project, parse_keys
    from pose6d.dataset import Dataset

    args = parse_args(argv)
    try:
        dataset = Dataset.open(args.data_root)
        if args.command == "status":
            rows = Q.result_rows(Q.stored_results(dataset, args.sync_store))
            print(Q.format_table(rows) if rows else "no qualification results yet "
                  "(pose6d-qualify score)")
            if args.html:
                _write_html(args.html, rows, "as each row's scoring")
            return 0
        client = connect(args.url, args.api_key, retries=args.retries)
        if args.command == "create":
            options = Q.QualifyOptions(
                data_root=args.data_root, title=args.title, project_id=args.project_id,
                backend_url=normalize_url(args.backend_url, "--backend-url"), source=args.source,
                keys=parse_keys(args.keys) if args.keys else None, annotators=args.annotators,
                rule=_rule(args, _stored_rule(dataset, args, client)), store_url=args.sync_store,
                image_url_prefix=args.image_url_prefix, progress=not args.quiet,
                backend_auth=(args.backend_user, args.backend_password)
                if args.backend_user or args.backend_password else None)
            report = Q.create_qualification(client, options, resolve_url(args.url))
            print("\n".join(report.lines()))
            return 0
        project = find_project(client, args.title, args.project_id)
        if project is None:
            raise AdminError(f"no project titled {args.title!r} (pose6d-qualify create first, "
                             "or pass --project-id)")
        result = Q.score_qualification(client, dataset, project.id,
                                       _rule(args, _stored_rule(dataset, args, client, project.id)),
                                       args.sync_store)
    except (AdminError, DataError, StoreFailure) as exc:
        fail(str(exc))
    rows = Q.result_rows(result.results)
    print(f"qualification project {result.project_id}; pass: {result.rule.text()}")
    print(Q.format_table(rows) if rows else "no answers yet")
    print(f"{sum(r['passed'] for r in rows)} of {len(rows)} annotators passed; "
          f"{result.changed} results changed in the store"
          + ("" if result.released is None else
             f"; {result.released} held annotations applied now"))
    if result.rejected:
        print(f"warning: {len(result.rejected)} answers left out (not valid labels), e.g. "
              f"{result.rejected[0]}")
    if args.html:
        _write_html(args.html, rows, result.rule.text())
    return 0


def _stored_rule(dataset, args: argparse.Namespace, client, project_id: int | None = None
                 ) -> dict | None:
    """The pass rule kept with the project (flags given override only their own part)."""
    from label_sync.quality_store import QualityStore
    from label_sync.store import default_store_url, store_exists
    from ls_admin.project import find_project

    url = default_store_url(dataset.root, args.sync_store)
    if not store_exists(url):
        return None
    if project_id is None:
        found = find_project(client, args.title, args.project_id)
        if found is None:
            return None
        project_id = found.id
    store = QualityStore(url)
    try:
        with store.transaction() as tx:
            qc = tx.project(project_id)
    finally:
        store.close()
    return qc.settings.get("pass_rule") if qc else None


if __name__ == "__main__":  # python -m ls_admin.cli.qualify
    raise SystemExit(main())
