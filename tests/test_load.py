"""Load on the real backend (gunicorn 2 workers x 4 threads, loopback, a small demo dataset):
8 concurrent annotator-like clients (prefetch + interactive calls) for a bounded time.

No errors, and memory stays flat: the summed RSS of the backend's processes may not grow by
more than LEAK_BOUND_MB over the second half of the run (after warm-up). A real leak keeps
growing with every request; to show the check can fail, the same run against a backend whose
pose source keeps 256 KB per call (about what holding on to each call's rendered masks would
cost) must exceed the bound. Growth is the RSS trend (least-squares slope) over the second half,
so that one swing of the allocator does not decide it. Sensitivity: at the ~80 req/s seen on 2
shared cores, a leak of roughly 30 KB per request or more is caught in the 8 s second half.
Full-length figures: ``python benchmarks/bench_load.py`` (60 s).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from load_harness import (RssSampler, make_tasks, quantiles, report, run_load,
                          second_half_growth)
from ls_admin.backend_process import BackendProcess
from pose6d.dataset import Dataset

SECONDS = 16.0
LEAK_SECONDS = 10.0
CLIENTS, WORKERS, THREADS = 8, 2, 4
LEAK_BOUND_MB = 20.0  # the allocator's swings reach ~8-14 MB; a leak shows as 100+ MB
LEAK_PER_CALL = 256 * 1024
_LEAKED: list[bytes] = []


def leaky_source(dataset):
    """A pose source that keeps LEAK_PER_CALL bytes per call: the deliberate leak
    (``--pose-source python:test_load:leaky_source``)."""
    from ml_backend.pose_source import DatasetPoseSource

    class Leaky(DatasetPoseSource):
        def initial(self, key):
            _LEAKED.append(b"x" * LEAK_PER_CALL)  # touched pages: counted in RSS
            return super().initial(key)

    return Leaky(dataset)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Dataset:
    from pose6d.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("load") / "demo"
    make_demo_dataset(root, objects=8, seed=0, progress=False)
    return Dataset(root)


def loaded_run(dataset: Dataset, seconds: float, log: Path, extra: list[str] | None = None):
    """Start the backend, warm every worker, run the load while sampling RSS; returns
    (1-client baseline, load result, RSS samples)."""
    args = ["--workers", str(WORKERS), "--threads", str(THREADS), "--log-level", "WARNING",
            *(extra or [])]
    tasks = make_tasks(dataset)
    # The tests folder on the backend's path: --pose-source python:test_load:leaky_source.
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent)}
    with BackendProcess(dataset.root, log_path=log, args=args, env=env) as backend:
        run_load(backend.url, tasks, WORKERS * THREADS, 2.0)
        base = run_load(backend.url, tasks, 1, 2.0)
        sampler = RssSampler(backend.proc.pid)
        sampler.start()
        load = run_load(backend.url, tasks, CLIENTS, seconds)
        samples = sampler.stop()
    return base, load, samples


def test_load_without_errors_and_flat_memory(demo, tmp_path, capsys):
    t0 = time.monotonic()
    base, load, samples = loaded_run(demo, SECONDS, tmp_path / "backend.log")
    with capsys.disabled():
        print()
        report(base, load, samples, CLIENTS, WORKERS, THREADS)
    assert not load.errors, load.errors[:5]
    assert set(load.latencies_ms) == {"prefetch", "interactive"}
    assert load.count >= 100, f"only {load.count} requests in {SECONDS:.0f} s"
    p50, p95 = quantiles(load.all_ms())
    assert p95 < 5000, f"p95 {p95:.0f} ms"
    assert len(samples) >= 20 and min(mb for _, mb in samples) > 50  # the sampler saw the workers
    growth = second_half_growth(samples)
    assert growth < LEAK_BOUND_MB, f"backend RSS grew {growth:.1f} MB over the second half"
    assert time.monotonic() - t0 < 60


def test_the_memory_check_catches_a_leak(demo, tmp_path, capsys):
    base, load, samples = loaded_run(demo, LEAK_SECONDS, tmp_path / "backend.log",
                                     ["--pose-source", "python:test_load:leaky_source"])
    growth = second_half_growth(samples)
    second_half = sum(1 for _ in load.all_ms()) / 2
    with capsys.disabled():
        print(f"\nleaky backend: {load.count} requests, RSS growth over the second half "
              f"{growth:+.1f} MB (about {second_half * LEAK_PER_CALL / 2**20:.0f} MB leaked)")
    assert not load.errors
    assert growth > LEAK_BOUND_MB, "a 256 KB-per-call leak went unnoticed"
