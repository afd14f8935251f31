#!/usr/bin/env python3
"""The 100k-object run (issue #12): Label Studio on PostgreSQL, two backend processes sharing a
PostgreSQL sync store, and every admin step over N objects (default 100,000), through the
project's real code paths. Run by hand; no network. On 2 cores: ~5 min with --import-only,
the full 100k run about 40 minutes, --memory-only about 20.

Steps and what is measured (each import next to its baseline, measured in the same run):
  1. dataset   --generate demo objects rendered (pose6d.demo.dataset), their records replicated
               under new keys up to N (same photos; benchmarks/bench_import.py's replication)
  2. servers   a throwaway PostgreSQL (tests/postgres_server.py) with two databases: Label
               Studio's and the sync store; Label Studio 1.23.2 on it; two backend processes
               (gunicorn) with POSE6D_SYNC_STORE on it
  3. import    ls_admin.project.setup_project of N tasks (time, tasks/s), baseline: the same tasks
               built first, then ONE plain SDK projects.import_tasks call into a second project
  4. events    a third project gets N tasks each with one annotation (imported in batches with
               ls_admin.project.import_batches: Label Studio fires no annotation webhook for
               imported annotations, checked: no record is written before step 4 sends), read
               back (ls_admin.reconcile.fetch_annotations, export snapshots: real ids and
               updated_at; baseline: the paged task listing of --listing-sample tasks), then posted
               as N ANNOTATION_CREATED webhook bodies alternately to the two backends from
               --clients concurrent clients: events/s, p50 / p95, errors, records written
  5. reconcile ls_admin.reconcile.reconcile over the annotated project (time), then a second run
               that must change nothing
  6. exports   `pose6d-export` (ls_admin.cli.export.main) of the N synced objects, per format,
               and of the annotated project in Label Studio (--from project) in one format
  7. memory    RSS of each backend (gunicorn master + workers, from /proc) after the events, then
               after /predict warmed --warm objects on each (in two halves); the second half's
               growth per object is extrapolated to N (the caches are bounded: 200,000 initial
               records, 65,536 image sizes). --memory-only measures it instead: steps 1 and 7
               alone, one backend opening every one of the N objects, RSS after each tenth

examples:
  python benchmarks/bench_scale.py                      # the full run: 100,000 objects
  python benchmarks/bench_scale.py --objects 2000 --warm 500   # a quick check (~5 min)
  python benchmarks/bench_scale.py --import-only                # steps 1-3 (~5 min)
  python benchmarks/bench_scale.py --memory-only                # steps 1 and 7, all N warm
  python benchmarks/bench_scale.py --dataset /tmp/demo1000 --work /tmp/scale --keep
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the PostgreSQL server, the load harness, payloads

import ls_payloads  # noqa: E402
from bench_import import base_dataset, run_one_call, run_ours, sized_dataset  # noqa: E402
from load_harness import process_tree, quantiles, rss_mb  # noqa: E402
from postgres_server import PostgresServer  # noqa: E402
from ls_admin.backend_process import BackendProcess  # noqa: E402
from ls_admin.connection import connect  # noqa: E402
from ls_admin.local_files import ensure_local_storage  # noqa: E402
from ls_admin.project import DEFAULT_BATCH, import_batches, label_config  # noqa: E402
from ls_admin.reconcile import fetch_annotations, reconcile  # noqa: E402
from ls_admin.server import LabelStudioServer  # noqa: E402
from pose6d.dataset import SYNCED, Dataset  # noqa: E402
from pose6d.tasks import object_task  # noqa: E402

EXPORT_FORMATS = ("imagenet3d", "bop", "table")
RECORD_CACHE = 200_000  # ml_backend.pose_source.DatasetPoseSource's bound (initial records)


@dataclasses.dataclass
class Row:
    """One line of the figures table."""

    step: str
    figure: str
    baseline: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(description=doc[0], epilog="\n\n".join(doc[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=100_000, help="objects N (default 100000)")
    p.add_argument("--generate", type=int, default=1000,
                   help="demo objects rendered; the rest are replicated records (default 1000)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="an existing demo dataset to replicate instead of rendering one")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    p.add_argument("--import-only", action="store_true",
                   help="steps 1-3 only: the import next to its baseline")
    p.add_argument("--memory-only", action="store_true",
                   help="steps 1 and 7 only, without Label Studio: one backend opens all N "
                        "objects with /predict, RSS after each tenth")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"setup_project's batch size (default {DEFAULT_BATCH})")
    p.add_argument("--predictions", action="store_true",
                   help="import the initial poses as predictions too (setup_project --predictions)")
    p.add_argument("--listing-sample", type=int, default=10_000,
                   help="annotated tasks read through the paged listing, the read back's "
                        "baseline (default 10000)")
    p.add_argument("--clients", type=int, default=8, help="concurrent webhook senders (default 8)")
    p.add_argument("--workers", type=int, default=1, help="gunicorn workers per backend (default 1)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    p.add_argument("--warm", type=int, default=4000,
                   help="objects /predict touches on each backend for the warm memory (default "
                        "4000; capped at N)")
    return p.parse_args(argv)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def say(text: str) -> None:
    """Progress on stderr, with the wall-clock time (the full run is long)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- servers ---


def label_studio_env(pg: PostgresServer, database: str) -> dict[str, str]:
    """Label Studio on PostgreSQL (docs/label_studio_notes.md: DJANGO_DB and POSTGRE_*)."""
    return {"DJANGO_DB": "default", "POSTGRE_NAME": database, "POSTGRE_USER": "postgres",
            "POSTGRE_PASSWORD": "", "POSTGRE_HOST": "127.0.0.1", "POSTGRE_PORT": str(pg.port)}


def start_backends(root: Path, store_url: str, work: Path, args: argparse.Namespace,
                   count: int = 2) -> list[BackendProcess]:
    """``count`` backend processes on one dataset, sharing the PostgreSQL sync store."""
    backends = []
    for i in range(count):
        backend = BackendProcess(root, log_path=work / f"backend{i}.log",
                                 env={"POSE6D_SYNC_STORE": store_url},
                                 args=["--workers", str(args.workers), "--threads",
                                       str(args.threads), "--log-level", "WARNING"])
        backends.append(backend.start())
    return backends


# --- step 3: import ---


def import_step(client, url: str, root: Path, backend_url: str, args: argparse.Namespace,
                n: int) -> list[Row]:
    """setup_project of the N objects, then the baseline: one import_tasks call of the same."""
    say(f"import: setup_project of {n} tasks ...")
    ours_s, ours_n = run_ours(client, url, root, backend_url, "ours", args.batch_size,
                              predictions=args.predictions)
    say(f"import: ours {ours_n} tasks in {ours_s:.0f} s; baseline: one import_tasks call ...")
    build_s, call_s, base_n = run_one_call(client, root, "one call", args.predictions)
    base_s = build_s + call_s
    say(f"import: baseline {base_n} tasks in {base_s:.0f} s (call alone {call_s:.0f} s)")
    verdict = "faster" if ours_s <= base_s else "SLOWER"
    return [Row("import (setup_project, batches of %d%s)" % (
                    args.batch_size, ", with predictions" if args.predictions else ""),
                f"{ours_s:.0f} s, {ours_n / ours_s:.0f} tasks/s ({ours_n} tasks; {verdict})",
                f"one import_tasks call: {base_s:.0f} s, {base_n / base_s:.0f} tasks/s "
                f"(building {build_s:.0f} s + call {call_s:.0f} s)")]


# --- step 4: annotations in Label Studio, then webhook events ---


def annotated_task(dataset: Dataset, key, prefix: str) -> dict:
    """The object's task with one submitted annotation: its initial pose as the six Numbers and
    its CAD, quality "good", dense "no" (the shape tests/ls_payloads.py documents)."""
    task = object_task(dataset, key, image_url_prefix=prefix)
    record = dataset.read(key)
    degrees = {k: round(v, 3) for k, v in record.pose.as_degrees().items()}
    task["annotations"] = [{"result": ls_payloads.pose_result(**degrees,
                                                              cad=str(record.cad_index))}]
    return task


def annotate_in_label_studio(client, root: Path, batch: int) -> tuple[int, float, int]:
    """(project id, seconds, tasks): a project whose N tasks each carry one annotation."""
    dataset = Dataset(root)
    start = time.perf_counter()
    project = client.projects.create(title="annotated", label_config=label_config())
    prefix, _ = ensure_local_storage(client, project.id, root)
    tasks = (annotated_task(dataset, key, prefix) for key in dataset.objects())
    imported = import_batches(client, project.id, tasks, batch)
    return project.id, time.perf_counter() - start, imported


def _json_default(value: Any) -> Any:
    """Datetimes as Label Studio's webhooks render them (DRF ISO 8601, "Z")."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def webhook_bodies(client, project_id: int) -> list[bytes]:
    """ANNOTATION_CREATED bodies for every annotation of the project, with Label Studio's own
    annotation and task ids and updated_at (read back as reconcile reads them)."""
    project = ls_payloads.project(project_id)
    return [json.dumps({"action": "ANNOTATION_CREATED", "annotation": annotation, "task": task,
                        "project": project}, default=_json_default).encode()
            for annotation, task in fetch_annotations(client, project_id)]


def paged_listing(client, project_id: int, count: int) -> int:
    """The baseline of the read back: the first ``count`` annotated tasks through the paged task
    listing with their annotations (how reconcile read them before export snapshots)."""
    pages = client.tasks.list(project=project_id, fields="all", page_size=100)
    return sum(len(task.annotations or []) for task in itertools.islice(pages, count))


@dataclasses.dataclass
class PostResult:
    seconds: float
    latencies_ms: list[float]
    errors: list[str]


def post_all(urls: list[str], path: str, bodies: list[bytes], clients: int) -> PostResult:
    """POST every body once, alternately to each URL, from ``clients`` concurrent threads (each
    with its own keep-alive session); latency per request, non-2xx answers as errors (the webhook answers 201)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}

    def client(first: int) -> None:
        http = requests.Session()
        for i in range(first, len(bodies), clients):
            t0 = time.perf_counter()
            try:
                res = http.post(urls[i % len(urls)] + path, data=bodies[i], headers=headers,
                                timeout=120)
                error = None if res.ok else f"{res.status_code} {res.text[:200]}"
            except requests.RequestException as exc:
                error = str(exc)[:200]
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                (errors.append(error) if error else latencies.append(ms))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return PostResult(time.perf_counter() - start, latencies, errors)


def synced_records(root: Path) -> int:
    return sum(1 for _ in (root / SYNCED).rglob("*.npz")) if (root / SYNCED).is_dir() else 0


def events_step(client, root: Path, backends: list[BackendProcess], args: argparse.Namespace,
                n: int) -> tuple[list[Row], int, list[bytes]]:
    """Step 4; returns the rows, the annotated project's id and the bodies sent."""
    say(f"events: importing {n} tasks with one annotation each ...")
    project_id, import_s, imported = annotate_in_label_studio(client, root, args.batch_size)
    before = synced_records(root)
    say(f"events: {imported} annotated tasks in {import_s:.0f} s; reading them back ...")
    read_s, bodies = timed(lambda: webhook_bodies(client, project_id))
    say(f"events: {len(bodies)} annotations read in {read_s:.0f} s; baseline: the paged listing "
        f"of the first {args.listing_sample} ...")
    list_s, listed = timed(lambda: paged_listing(client, project_id, args.listing_sample))
    say(f"events: {listed} listed in {list_s:.0f} s; posting to 2 backends ...")
    result = post_all([b.url for b in backends], "/webhook", bodies, args.clients)
    written = synced_records(root)
    p50, p95 = quantiles(result.latencies_ms)
    for error in result.errors[:5]:
        say(f"events: error {error}")
    rows = [
        Row("annotations into LS (import with annotations)",
            f"{import_s:.0f} s for {imported} tasks; records written by it: {before} "
            "(LS sends no annotation webhook for imported annotations)"),
        Row("read back (reconcile's fetch_annotations: export snapshots)",
            f"{read_s:.0f} s, {len(bodies) / read_s:.0f} annotations/s",
            f"the paged task listing (fields=all, 100 a page), first {listed} tasks: "
            f"{list_s:.0f} s, {listed / list_s:.0f} annotations/s"),
        Row(f"webhook events -> 2 backends ({args.workers}x{args.threads} each), "
            f"{args.clients} clients",
            f"{len(bodies) / result.seconds:.0f} events/s, p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
            f"{len(result.errors)} errors, {written} records written ({result.seconds:.0f} s)")]
    return rows, project_id, bodies


# --- step 5: reconcile; step 6: exports ---


def reconcile_step(client, root: Path, project_id: int, store_url: str) -> list[Row]:
    """Reconcile twice: the second run must change nothing."""
    rows = []
    for run in ("first", "second"):
        say(f"reconcile: {run} run ...")
        seconds, report = timed(lambda: reconcile(client, Dataset(root), project_id, store_url,
                                                  progress=False))
        head = report.lines()[0]
        rows.append(Row(f"reconcile, {run} run", f"{seconds:.0f} s, {len(report.changes)} "
                        f"changes, {len(report.rejected)} rejected ({report.annotations} "
                        "annotations)"))
        say(f"reconcile: {head} in {seconds:.0f} s")
        for line in report.lines()[1:6]:
            say(f"reconcile:   {line}")
    return rows


def export_step(root: Path, work: Path, store_url: str, n: int, url: str, token: str,
                project_id: int) -> list[Row]:
    """`pose6d-export` (its main) of the synced folder in each format, then of the project in
    Label Studio (export snapshots) in the first format."""
    from ls_admin.cli.export import main as export_main

    rows = []
    project = ["--from", "project", "--project-id", str(project_id), "--url", url,
               "--api-key", token]
    for fmt, source in [(fmt, []) for fmt in EXPORT_FORMATS] + [(EXPORT_FORMATS[0], project)]:
        name = f"export {fmt}" + (" --from project" if source else "")
        say(f"{name} ...")
        out = work / "exports" / (fmt + ("_project" if source else ""))
        seconds, code = timed(lambda: export_main(["--format", fmt, "--data-root", str(root),
                                                   "--out", str(out), "--sync-store", store_url,
                                                   "--overwrite", "--quiet", *source]))
        rows.append(Row(name, f"{seconds:.0f} s, {n / seconds:.0f} objects/s"
                        + ("" if code == 0 else f" (exit code {code})")))
    return rows


# --- step 7: memory ---


def backend_rss(backend: BackendProcess) -> tuple[float, list[float]]:
    """(summed RSS MB of the backend's processes, each process's RSS MB)."""
    each = [rss_mb(pid) for pid in process_tree(backend.proc.pid)]
    return sum(each), each


def predict_body(task_id: int, data: dict) -> bytes:
    """The /predict body of a task open (no context)."""
    return json.dumps({"tasks": [{"id": task_id, "data": data}],
                       "params": {"context": None}}).encode()


def predict_bodies(bodies: list[bytes], count: int) -> list[bytes]:
    """/predict bodies for the first ``count`` objects of the webhook ``bodies``."""
    tasks = (json.loads(body)["task"] for body in bodies[:count])
    return [predict_body(task["id"], task["data"]) for task in tasks]


def memory_step(backends: list[BackendProcess], bodies: list[bytes], args: argparse.Namespace,
                n: int) -> list[Row]:
    """RSS after the events, then after /predict touched ``--warm`` objects on each backend, in
    two halves: the first half pays the one-time warm-up (meshes, renderer, allocator), the
    second half's growth per object is what each further object costs (the caches hold up to
    RECORD_CACHE initial records), extrapolated to N."""
    warm = min(args.warm, len(bodies))
    calls = predict_bodies(bodies, warm)
    half = warm // 2
    rows = []
    for i, backend in enumerate(backends):
        after, _ = backend_rss(backend)
        say(f"memory: backend {i + 1}: {after:.0f} MB; warming {warm} objects with /predict ...")
        first = post_all([backend.url], "/predict", calls[:half], args.clients)
        middle, _ = backend_rss(backend)
        second = post_all([backend.url], "/predict", calls[half:], args.clients)
        total, each = backend_rss(backend)
        per_object_kb = (total - middle) * 1024 / max(1, warm - half)
        # A negative growth is the allocator handing memory back, not objects costing less.
        projected = total + max(0.0, per_object_kb) * (min(n, RECORD_CACHE) - warm) / 1024
        seconds = first.seconds + second.seconds
        errors = len(first.errors) + len(second.errors)
        rows.append(Row(
            f"backend {i + 1} memory (RSS, master + {args.workers} worker(s))",
            f"after events {after:.0f} MB; {half} objects warm {middle:.0f} MB; {warm} warm "
            f"{total:.0f} MB (per process {', '.join(f'{mb:.0f}' for mb in each)}); 2nd half "
            f"{per_object_kb:+.1f} KB/object -> ~{projected:.0f} MB with {n} warm (extrapolated); "
            f"/predict {warm / seconds:.0f}/s, {errors} errors"))
    return rows


def memory_curve(root: Path, work: Path, args: argparse.Namespace, n: int,
                 slices: int = 10) -> list[Row]:
    """--memory-only: one backend process (the default SQLite sync store) opens every one of the
    N objects once with /predict, RSS read after each tenth: what 100k warm objects cost."""
    dataset = Dataset(root)
    calls = [predict_body(i + 1, object_task(dataset, key)["data"])
             for i, key in enumerate(dataset.objects())]
    backend = BackendProcess(root, log_path=work / "backend_memory.log",
                             args=["--workers", str(args.workers), "--threads",
                                   str(args.threads), "--log-level", "WARNING"]).start()
    try:
        probe = requests.post(backend.url + "/predict", data=calls[0],
                              headers={"Content-Type": "application/json"}, timeout=120).json()
        if not probe["results"] or not probe["results"][0]:
            raise SystemExit(f"/predict answered no prediction: {str(probe)[:300]}")
        curve, warm, errors, seconds = [backend_rss(backend)[0]], [0], 0, 0.0
        say(f"memory: {curve[0]:.0f} MB at start; opening {len(calls)} objects with /predict ...")
        step = math.ceil(len(calls) / slices)
        for start in range(0, len(calls), step):
            result = post_all([backend.url], "/predict", calls[start:start + step], args.clients)
            errors += len(result.errors)
            seconds += result.seconds
            curve.append(backend_rss(backend)[0])
            warm.append(min(start + step, len(calls)))
            say(f"memory: {warm[-1]} objects warm: {curve[-1]:.0f} MB")
    finally:
        backend.stop()
    marks = ", ".join(f"{mb:.0f}" for mb in curve)
    mid = len(curve) // 2
    tail_kb = (curve[-1] - curve[mid]) * 1024 / max(1, warm[-1] - warm[mid])
    return [Row(f"backend memory, all {len(calls)} objects opened (RSS, master + {args.workers} "
                "worker(s))", f"MB after 0, 10, ..., 100 % of them: {marks}; second half "
                f"{tail_kb:+.1f} KB/object; /predict {len(calls) / seconds:.0f}/s, {errors} errors")]


# --- the run ---


def print_table(rows: list[Row], args: argparse.Namespace, note: str, n: int) -> None:
    setting = ("one backend process, no Label Studio" if args.memory_only else
               "Label Studio 1.23.2 and the sync store on one PostgreSQL")
    print(f"\nscale run: {n} objects ({note}); {setting}; {os.cpu_count()} cores, "
          f"{platform.machine()}, Python {platform.python_version()}")
    print("command: python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]))
    width = max(len(r.step) for r in rows)
    print(f"| {'step':<{width}} | figure | baseline (same run) |")
    print(f"|{'-' * (width + 2)}|--------|---------------------|")
    for r in rows:
        print(f"| {r.step:<{width}} | {r.figure} | {r.baseline or '-'} |")


def run(args: argparse.Namespace, work: Path) -> int:
    n = args.objects
    say(f"dataset: {min(args.generate, n)} demo objects, replicated to {n} ...")
    base = base_dataset(work, args.dataset, min(args.generate, n))
    root, note = sized_dataset(work, base, n)
    rows: list[Row] = []
    if args.memory_only:
        return finish(memory_curve(root, work, args, n), args, note, n)
    with PostgresServer() as pg:
        pg.create_database("labelstudio")
        store_url = pg.create_database("pose6d")
        server = LabelStudioServer(work, data_dir=work / "label-studio",
                                   extra_env=label_studio_env(pg, "labelstudio"))
        backends: list[BackendProcess] = []
        try:
            say("starting Label Studio on PostgreSQL (first start: migrations) ...")
            server.start()
            client = connect(server.url, server.token, timeout=3600)
            backends = start_backends(root, store_url, work, args)
            rows += import_step(client, server.url, root, backends[0].url, args, n)
            if args.import_only:
                return finish(rows, args, note, n)
            event_rows, project_id, bodies = events_step(client, root, backends, args, n)
            rows += event_rows
            rows += reconcile_step(client, root, project_id, store_url)
            rows += export_step(root, work, store_url, n, server.url, server.token, project_id)
            rows += memory_step(backends, bodies, args, n)
            return finish(rows, args, note, n)
        finally:
            for backend in backends:
                backend.stop()
            server.stop(remove_data=False)


def finish(rows: list[Row], args: argparse.Namespace, note: str, n: int) -> int:
    """Print the table; 1 when an import was slower than its baseline (the issue's bar)."""
    print_table(rows, args, note, n)
    return 1 if any("SLOWER" in r.figure for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = (args.work or Path(tempfile.mkdtemp(prefix="pose6d-bench-scale-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say(f"work folder {work}")
    try:
        return run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
