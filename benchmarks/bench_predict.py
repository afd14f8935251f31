#!/usr/bin/env python3
"""/predict latency for one task over HTTP (the real backend under gunicorn, on loopback) next to
the overlay render alone for the same task, measured in the same run.

Goal: the request adds less than 30% over rendering. Prints p50 / p95 of both and the overhead.

Then auto-fit at prefill (--prefill-fit): the first open of each object (fitted on the spot)
and later opens (the fit read from annotations_new/.fits), next to the plain /predict above.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from ls_admin.backend_process import BackendProcess  # noqa: E402
from pose6d.dataset import Dataset  # noqa: E402
from pose6d.inout import image_size  # noqa: E402
from pose6d.labeling import shown_pose  # noqa: E402
from pose6d.renderer import render  # noqa: E402
from ml_backend.overlay_regions import overlay_regions  # noqa: E402


def demo_root(path: str | None) -> Path:
    if path:
        return Path(path)
    from pose6d.demo.dataset import make_demo_dataset

    root = Path(tempfile.mkdtemp(prefix="pose6d-bench-")) / "demo"
    make_demo_dataset(root, objects=12, seed=0, progress=False)
    return root


def task_of(dataset: Dataset, key) -> dict:
    return {"id": 1, "data": {"object_key": str(key)}}


def quantiles(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), float(np.percentile(values, 95))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="dataset to use (default: a fresh 12-object demo dataset)")
    p.add_argument("--repeats", type=int, default=60)
    args = p.parse_args(argv)
    import requests

    dataset = Dataset(demo_root(args.data_root))
    # The object with the largest mesh: the slowest case.
    key = max(dataset.objects(), key=lambda k: float(np.prod(np.diff(dataset.read(k).bbox.reshape(2, 2), axis=0))))  # largest
    record = dataset.read(key)
    mesh = dataset.cad.mesh(key.category, record.cad_index)
    width, height = image_size(dataset.image_path(key))
    pose = shown_pose(record.pose)
    render(mesh, pose, width, height)
    alone, regions = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        render(mesh, pose, width, height)
        t1 = time.perf_counter()
        overlay_regions(mesh, pose, width, height)
        alone.append((t1 - t0) * 1000)
        regions.append((time.perf_counter() - t1) * 1000)
    with BackendProcess(dataset.root) as backend:
        http = requests.Session()
        body = {"tasks": [task_of(dataset, key)], "params": {"context": None}}
        http.post(backend.url + "/predict", json=body).raise_for_status()  # warm caches
        request_ms = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = http.post(backend.url + "/predict", json=body)
            request_ms.append((time.perf_counter() - t0) * 1000)
            res.raise_for_status()
    plain, cold, warm = prefill_opens(dataset, args.repeats)
    r50, r95 = quantiles(alone)
    g50, g95 = quantiles(regions)
    q50, q95 = quantiles(request_ms)
    print(f"/predict for one task: {key} ({len(mesh.faces)} triangles, {width}x{height}), "
          f"{args.repeats} requests")
    print(f"{'':22s} {'p50':>8s} {'p95':>8s}")
    print(f"{'overlay render alone':22s} {r50:7.1f}ms {r95:7.1f}ms")
    print(f"{'overlay regions (+RLE)':22s} {g50:7.1f}ms {g95:7.1f}ms")
    print(f"{'/predict over HTTP':22s} {q50:7.1f}ms {q95:7.1f}ms")
    print(f"request overhead over rendering: p50 {100 * (q50 / r50 - 1):.0f}%, "
          f"over the overlay regions: p50 {100 * (q50 / g50 - 1):.0f}%  (goal < 30%)")
    (c50, c95), (w50, w95), (p50, p95) = quantiles(cold), quantiles(warm), quantiles(plain)
    print(f"\nopening each of the {len(cold)} objects in turn: without --prefill-fit p50 "
          f"{p50:.1f}ms p95 {p95:.1f}ms; with it, later opens (fit cached) p50 {w50:.1f}ms "
          f"p95 {w95:.1f}ms, the first open of an object not fitted ahead p50 {c50:.0f}ms "
          f"p95 {c95:.0f}ms")
    return 0


def prefill_opens(dataset: Dataset, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """/predict times (ms) over all objects: a plain backend's ``repeats`` opens, then a
    --prefill-fit backend's first open of each object and ``repeats`` later opens (fits cached),
    each spread over the objects in the same order."""
    import requests

    keys = dataset.objects()

    def opens(args: list[str], count: int, first: bool = False) -> tuple[list[float], list[float]]:
        with BackendProcess(dataset.root, args=args) as backend:
            http = requests.Session()

            def open_ms(key) -> float:
                t0 = time.perf_counter()
                res = http.post(backend.url + "/predict", json={"tasks": [task_of(dataset, key)]})
                res.raise_for_status()
                return (time.perf_counter() - t0) * 1000

            cold = [open_ms(key) for key in keys] if first else []
            return cold, [open_ms(keys[i % len(keys)]) for i in range(count)]

    _, plain = opens([], repeats)
    cold, warm = opens(["--prefill-fit"], repeats, first=True)
    return plain, cold, warm


if __name__ == "__main__":
    raise SystemExit(main())
