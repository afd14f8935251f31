"""A load generator for the real backend: N concurrent annotator-like clients (open a task =
prefetch /predict, then interactive command-box calls chaining the returned Numbers) for a
bounded time, and the backend's memory (summed RSS of its processes, from /proc).

Used by tests/test_load.py and benchmarks/bench_load.py.
"""
from __future__ import annotations

import dataclasses
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from pose6d import labeling
from pose6d.dataset import Dataset

COMMANDS = ("a+", "d-", "x+", "e+", "a-", "d+", "x-", "t+")  # cycled; the pose stays in range


@dataclasses.dataclass
class LoadResult:
    seconds: float
    latencies_ms: dict[str, list[float]]  # by kind: "prefetch", "interactive"
    errors: list[str]

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.latencies_ms.values()) + len(self.errors)

    def all_ms(self) -> list[float]:
        return [x for v in self.latencies_ms.values() for x in v]


def quantiles(values: list[float]) -> tuple[float, float]:
    """(p50, p95) in the values' unit; NaN for an empty list."""
    if not values:
        return float("nan"), float("nan")
    return statistics.median(values), float(np.percentile(values, 95))


# --- the backend's memory, from /proc ---


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (gunicorn's master and workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    """Samples (seconds since start, summed RSS MB of the process tree) every ``interval``."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._done.is_set():
            self.samples.append((time.monotonic() - t0, sum(map(rss_mb, process_tree(self.pid)))))
            self._done.wait(self.interval)

    def stop(self) -> list[tuple[float, float]]:
        self._done.set()
        self.join()
        return self.samples


def second_half_growth(samples: list[tuple[float, float]]) -> float:
    """MB gained over the second half of the run: the least-squares slope of RSS against time
    over the samples of the second half, times its length. A leak grows steadily and shows in
    full; the allocator's swings (a worker's arena freed in the middle, grown back later) are
    spread over every sample instead of deciding the figure alone, as two medians let them."""
    end = samples[-1][0]
    half = [(t, mb) for t, mb in samples if t >= 0.5 * end]
    t = np.array([x for x, _ in half])
    mb = np.array([y for _, y in half])
    if len(half) < 2 or np.ptp(t) == 0:
        return 0.0
    slope = np.polyfit(t, mb, 1)[0]
    return float(slope * (t[-1] - t[0]))


# --- clients ---


def numbers_of(result: list[dict]) -> dict[str, float]:
    return {r["from_name"]: r["value"]["number"] for r in result if r.get("type") == "number"}


def command_context(numbers: dict[str, float], cad: str, command: str) -> list[dict]:
    """What Label Studio sends when the command box is submitted (docs/label_studio_notes.md)."""
    out = [{"from_name": n, "to_name": labeling.IMAGE, "type": "number", "value": {"number": v}}
           for n, v in numbers.items()]
    out.append({"from_name": labeling.CAD, "to_name": labeling.IMAGE, "type": "choices",
                "value": {"choices": [cad]}})
    out.append({"from_name": labeling.COMMAND, "to_name": labeling.IMAGE, "type": "textarea",
                "value": {"text": [command]}})
    return out


def annotator(url: str, tasks: list[dict], deadline: float, result: LoadResult, lock: threading.Lock,
              first: int, auth=None, steps: int = 3) -> None:
    """One client: open a task, refine it ``steps`` times, next task; until ``deadline``."""
    http = requests.Session()
    http.auth = auth
    commands = itertools.cycle(COMMANDS)

    def call(kind: str, body: dict) -> dict | None:
        t0 = time.perf_counter()
        try:
            res = http.post(url + "/predict", json=body, timeout=60)
            ok = res.status_code == 200
            payload = res.json() if ok else None
        except (requests.RequestException, ValueError) as exc:
            ok, payload, res = False, None, exc
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            if ok:
                result.latencies_ms.setdefault(kind, []).append(ms)
            else:
                result.errors.append(f"{kind}: {getattr(res, 'status_code', res)}")
        return payload

    for i in itertools.count(first):
        task = tasks[i % len(tasks)]
        if time.monotonic() >= deadline:
            return
        payload = call("prefetch", {"tasks": [task], "params": {"context": None}})
        if not payload:
            continue
        numbers, cad = numbers_of(payload["results"][0]["result"]), str(task["data"]["cad_index"])
        for _ in range(steps):
            if time.monotonic() >= deadline:
                return
            body = {"tasks": [task], "params": {"context": {"result": command_context(
                numbers, cad, next(commands))}}}
            payload = call("interactive", body)
            if payload and numbers_of(payload["results"][0]["result"]):
                numbers = numbers_of(payload["results"][0]["result"])


def run_load(url: str, tasks: list[dict], clients: int, seconds: float, auth=None) -> LoadResult:
    """``clients`` annotators in threads for ``seconds``; latencies and errors collected."""
    result, lock = LoadResult(seconds, {}, []), threading.Lock()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=annotator, args=(url, tasks, deadline, result, lock, i * 7, auth))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def make_tasks(dataset: Dataset) -> list[dict]:
    """One task per object, as pose6d/tasks.py would make them (only what /predict reads)."""
    out = []
    for i, key in enumerate(dataset.objects()):
        record = dataset.read(key)
        out.append({"id": i + 1, "data": {"object_key": str(key), "cad_index": record.cad_index}})
    return out


def demo_root(path: str | None, objects: int) -> Path:
    if path:
        return Path(path)
    from pose6d.demo.dataset import make_demo_dataset

    root = Path(tempfile.mkdtemp(prefix="pose6d-load-")) / "demo"
    make_demo_dataset(root, objects=objects, seed=0, progress=False)
    return root


# --- the benchmark ---


def report(base: LoadResult, load: LoadResult, samples: list[tuple[float, float]], clients: int,
           workers: int, threads: int) -> None:
    """Print the figures: a table, then one machine-readable 'figure:' line per figure."""
    b50, b95 = quantiles(base.all_ms())
    l50, l95 = quantiles(load.all_ms())
    rss = [mb for _, mb in samples]
    growth = second_half_growth(samples)
    print(f"load: {clients} clients, gunicorn {workers} workers x {threads} threads, "
          f"{load.seconds:.0f} s; {load.count} requests, {len(load.errors)} errors, "
          f"{load.count / load.seconds:.1f} req/s")
    print(f"{'':26s} {'count':>6s} {'p50':>8s} {'p95':>8s}")
    print(f"{'1 client (baseline)':26s} {len(base.all_ms()):6d} {b50:7.1f}ms {b95:7.1f}ms")
    for kind in sorted(load.latencies_ms):
        k50, k95 = quantiles(load.latencies_ms[kind])
        print(f"{f'{clients} clients: {kind}':26s} {len(load.latencies_ms[kind]):6d} {k50:7.1f}ms {k95:7.1f}ms")
    print(f"{f'{clients} clients: all':26s} {len(load.all_ms()):6d} {l50:7.1f}ms {l95:7.1f}ms")
    print(f"backend RSS (all processes): start {rss[0]:.0f} MB, max {max(rss):.0f} MB, "
          f"end {rss[-1]:.0f} MB, second-half growth {growth:+.1f} MB")
    for error in load.errors[:5]:
        print(f"  error: {error}")
    print(f"figure: load p50 | {l50:.1f} ms | baseline 1-client p50 | {b50:.1f} ms")
    print(f"figure: load p95 | {l95:.1f} ms | baseline 1-client p95 | {b95:.1f} ms")
    print(f"figure: load throughput | {load.count / load.seconds:.1f} req/s | baseline 1-client "
          f"| {len(base.all_ms()) / base.seconds:.1f} req/s")
    print(f"figure: load errors | {len(load.errors)} | baseline | 0")
    print(f"figure: load RSS growth 2nd half | {growth:+.1f} MB | RSS at start | {rss[0]:.0f} MB")
