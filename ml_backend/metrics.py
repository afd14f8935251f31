"""Request counters and latency summaries in Prometheus' text format (no extra dependency)."""
from __future__ import annotations

import collections
import threading

import numpy as np


class Metrics:
    """Thread-safe counters by (route, status) and the last 2,000 latencies per route."""

    def __init__(self, window: int = 2000):
        self._lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()
        self.latency: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=window))

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency[route].append(seconds)

    def render(self, extra: dict[str, float] | None = None) -> str:
        lines = ["# TYPE pose6d_requests_total counter"]
        with self._lock:
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'pose6d_requests_total{{route="{route}",status="{status}"}} {n}')
            lines.append("# TYPE pose6d_request_seconds summary")
            for route, values in sorted(self.latency.items()):
                arr = np.asarray(values)
                for q in (0.5, 0.95):
                    lines.append(f'pose6d_request_seconds{{route="{route}",quantile="{q}"}} '
                                 f"{float(np.quantile(arr, q)):.6f}")
                lines.append(f'pose6d_request_seconds_count{{route="{route}"}} {arr.size}')
        for name, value in sorted((extra or {}).items()):
            lines.append(f"pose6d_{name} {value}")
        return "\n".join(lines) + "\n"
