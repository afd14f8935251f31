#!/usr/bin/env python3
"""Load on the real backend (gunicorn, loopback): N concurrent clients, each acting like an
annotator (open a task = prefetch /predict, then three interactive command-box calls chaining
the returned Numbers), for a bounded time.

Prints the request count, errors, p50 / p95 latency under load next to the same calls from one
client alone (the baseline, measured in the same run), and the backend's memory: the summed RSS
of all its processes (master and workers, read from /proc) sampled over the run, and its growth
over the second half (a leak keeps growing after warm-up; allocator warm-up does not).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the load harness

from load_harness import (RssSampler, demo_root, make_tasks, report,  # noqa: E402
                          run_load)
from ls_admin.backend_process import BackendProcess  # noqa: E402
from pose6d.dataset import Dataset  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="dataset to use (default: a fresh demo dataset)")
    p.add_argument("--objects", type=int, default=12, help="demo dataset size (default 12)")
    p.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="15 s of load (for run_all / CI)")
    args = p.parse_args(argv)
    seconds = 15.0 if args.quick else args.seconds
    dataset = Dataset(demo_root(args.data_root, args.objects))
    tasks = make_tasks(dataset)
    with BackendProcess(dataset.root, args=["--workers", str(args.workers), "--threads",
                                            str(args.threads), "--log-level", "WARNING"]) as backend:
        run_load(backend.url, tasks, args.workers * args.threads, 2.0)  # warm every worker
        base = run_load(backend.url, tasks, 1, min(5.0, seconds / 4))
        sampler = RssSampler(backend.proc.pid)
        sampler.start()
        load = run_load(backend.url, tasks, args.clients, seconds)
        samples = sampler.stop()
    report(base, load, samples, args.clients, args.workers, args.threads)
    return 1 if load.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
