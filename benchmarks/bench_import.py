#!/usr/bin/env python3
"""Project setup + task import throughput into a real Label Studio (SQLite, loopback), with the
initial-pose predictions, for 1,000 and 10,000 demo objects, next to baselines measured in the
same run on the same Label Studio:

  ours          ls_admin.project.setup_project: project, ML backend, storage, key lookup, tasks
                built while the previous batch of 500 is being imported
  one call      the same tasks built first, then one SDK projects.import_tasks call with all
  no preds      setup_project without predictions (what the predictions cost)
  re-run        setup_project again on the full project (nothing to import)

Goal: 10,000 objects in under 2 minutes. Only --generate objects (default 1,000) are rendered as
demo images; larger counts replicate their annotation records (new object keys, the same photos)
in a copy of the dataset; the output says so.

examples:
  python benchmarks/bench_import.py
  python benchmarks/bench_import.py --objects 1000 --dataset /tmp/demo1000   # reuse a demo dataset
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from ls_admin.connection import connect  # noqa: E402
from ls_admin.local_files import ensure_local_storage  # noqa: E402
from ls_admin.project import SetupOptions, label_config, setup_project  # noqa: E402
from ls_admin.server import LabelStudioServer  # noqa: E402
from ls_admin.backend_process import BackendProcess  # noqa: E402
from pose6d.dataset import INITIAL, Dataset, ObjectKey  # noqa: E402
from pose6d.tasks import object_task  # noqa: E402

GOAL_S = 120.0
REPLICA_K = 100  # replica r of object name_k becomes name_{k + 100 r}: same photo, new key


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(description=doc[0], epilog="\n\n".join(doc[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", default="1000,10000", help="comma-separated object counts")
    p.add_argument("--generate", type=int, default=1000,
                   help="objects rendered as demo images; more are replicated (default 1000)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="an existing demo dataset to start from instead of generating one")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    p.add_argument("--batch-size", type=int, default=500)
    return p.parse_args(argv)


def base_dataset(work: Path, source: Path | None, objects: int) -> Path:
    """The rendered demo dataset (``source`` when given), below the work folder."""
    from pose6d.demo.dataset import make_demo_dataset

    root = work / "base"
    if source is not None:
        root.symlink_to(source.resolve(), target_is_directory=True)
    else:
        t0 = time.perf_counter()
        make_demo_dataset(root, objects=objects, seed=0)
        print(f"generated {objects} demo objects in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return root


def sized_dataset(work: Path, base: Path, count: int) -> tuple[Path, str]:
    """A dataset with exactly ``count`` objects: the base's first ones, or the base replicated
    (annotation records copied under new keys; photos and CAD shared through symlinks)."""
    keys = Dataset(base).objects()
    root = work / f"data_{count}"
    root.mkdir()
    for name in ("images", "CAD"):
        (root / name).symlink_to((base / name).resolve(), target_is_directory=True)
    copies = math.ceil(count / len(keys))
    made = 0
    for r in range(copies):
        for key in keys:
            if made == count:
                break
            new = ObjectKey(key.category, key.name, key.k + REPLICA_K * r)
            target = root / INITIAL / new.category / f"{new.stem}.npz"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(base / INITIAL / key.category / f"{key.stem}.npz", target)
            made += 1
    note = "real demo objects" if copies == 1 else \
        f"{len(keys)} real demo objects x {copies} (replicated records, same photos)"
    return root, note


def run_ours(client, url: str, root: Path, backend: str, title: str, batch: int,
             predictions: bool = True) -> tuple[float, int]:
    t0 = time.perf_counter()
    report = setup_project(client, SetupOptions(root, backend, title=title, batch_size=batch,
                                                predictions=predictions, progress=False), url)
    return time.perf_counter() - t0, report.imported


def run_one_call(client, root: Path, title: str,
                 predictions: bool = False) -> tuple[float, float, int]:
    """(seconds to build the tasks, seconds for the single import call, tasks imported)."""
    dataset = Dataset(root)
    t0 = time.perf_counter()  # from project creation, as for ours (which also connects the backend)
    project = client.projects.create(title=title, label_config=label_config())
    prefix, _ = ensure_local_storage(client, project.id, root)
    tasks = [object_task(dataset, key, image_url_prefix=prefix, predictions=predictions)
             for key in dataset.objects()]
    t1 = time.perf_counter()
    result = client.projects.import_tasks(id=project.id, request=tasks)
    return t1 - t0, time.perf_counter() - t1, int(result.task_count)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.objects.split(",") if c]
    work = (args.work or Path(tempfile.mkdtemp(prefix="pose6d-bench-import-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = base_dataset(work, args.dataset, min(args.generate, max(counts)))
    server = LabelStudioServer(work, data_dir=work / "label-studio")
    rows: list[tuple[int, str, float, int]] = []
    notes = []
    try:
        print("starting Label Studio ...", file=sys.stderr)
        server.start()
        client = connect(server.url, server.token, timeout=600)
        with BackendProcess(base, log_path=work / "backend.log") as backend:
            for count in counts:
                root, note = sized_dataset(work, base, count)
                notes.append(f"{count}: {note}")
                print(f"{count} objects ...", file=sys.stderr)
                s, n = run_ours(client, server.url, root, backend.url, f"ours {count}", args.batch_size)
                rows.append((count, "ours: setup_project, batches of "
                             f"{args.batch_size}, with predictions", s, n))
                s, n = run_ours(client, server.url, root, backend.url, f"ours {count}", args.batch_size)
                rows.append((count, "ours: re-run (nothing new to import)", s, 0))
                build, call, n = run_one_call(client, root, f"one call {count}")
                rows.append((count, "baseline: build all, then ONE import_tasks call", build + call, n))
                rows.append((count, "  of which the import_tasks call alone", call, n))
                s, n = run_ours(client, server.url, root, backend.url, f"no preds {count}",
                                args.batch_size, predictions=False)
                rows.append((count, "baseline: setup_project without predictions", s, n))
    finally:
        server.stop(remove_data=False)
    print(f"\nimport into Label Studio 1.23.2 (SQLite, loopback), work dir {work}")
    print("datasets: " + "; ".join(notes))
    print(f"| {'objects':>7} | {'method':<58} | {'seconds':>7} | {'tasks/s':>7} |")
    print(f"|{'-' * 9}|{'-' * 60}|{'-' * 9}|{'-' * 9}|")
    for count, method, seconds, n in rows:
        rate = f"{n / seconds:>7.0f}" if n else f"{'-':>7}"
        print(f"| {count:>7} | {method:<58} | {seconds:>7.1f} | {rate} |")
    baselines = {c: (sec, n) for c, m, sec, n in rows if m.startswith("baseline: build all")}
    for count, method, seconds, n in rows:
        if method.startswith("ours: setup") and count in baselines:
            base_s, base_n = baselines[count]
            print(f"figure: import {count} objects with predictions | {n / seconds:.0f} tasks/s | "
                  f"one import_tasks call | {base_n / base_s:.0f} tasks/s")
    for count, method, seconds, _ in rows:
        if method.startswith("ours: setup") and count >= 10000:
            verdict = "met" if seconds < GOAL_S else "MISSED"
            print(f"goal: {count} objects in under {GOAL_S:.0f} s: {verdict} ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
