"""Request counters and latency percentiles, rendered in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import defaultdict, deque

import numpy as np

_QUANTILES = (0.5, 0.9, 0.99)


class Metrics:
    """Per-route request counts by status and a window of the latest latencies per route."""

    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.gauges: dict[str, float] = {}
        self.counters: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts[(method, route, status)] += 1
            self.latency[route].append(seconds)
            self.latency_sum[route] += seconds
            self.latency_count[route] += 1

    def inc(self, name: str, by: float = 1.0) -> None:
        with self._lock:
            self.counters[name] += by

    def quantiles(self, route: str) -> dict[float, float]:
        with self._lock:
            lat = np.fromiter(self.latency.get(route, ()), dtype=np.float64)
        if len(lat) == 0:
            return {}
        return {q: float(np.quantile(lat, q)) for q in _QUANTILES}

    def snapshot(self) -> dict[str, object]:
        """A JSON-friendly view (used by ``/metrics?format=json``)."""
        with self._lock:
            routes = sorted(self.latency)
            counts = [
                {"method": m, "route": r, "status": s, "count": c}
                for (m, r, s), c in sorted(self.counts.items())
            ]
        lat = {r: {f"p{int(q * 100)}": v for q, v in self.quantiles(r).items()} for r in routes}
        return {
            "requests": counts,
            "latency_seconds": lat,
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
        }

    def prometheus(self) -> str:
        """The Prometheus exposition text (version 0.0.4)."""
        lines = [
            "# HELP tokrec_requests_total HTTP requests by method, route and status.",
            "# TYPE tokrec_requests_total counter",
        ]
        with self._lock:
            counts = sorted(self.counts.items())
            routes = sorted(self.latency)
            sums = dict(self.latency_sum)
            ns = dict(self.latency_count)
            counters = sorted(self.counters.items())
            gauges = sorted(self.gauges.items())
        for (m, r, s), c in counts:
            lines.append(f'tokrec_requests_total{{method="{m}",route="{_esc(r)}",status="{s}"}} {c}')
        lines += [
            "# HELP tokrec_request_latency_seconds Request latency over the latest requests per route.",
            "# TYPE tokrec_request_latency_seconds summary",
        ]
        for r in routes:
            for q, v in self.quantiles(r).items():
                lines.append(f'tokrec_request_latency_seconds{{route="{_esc(r)}",quantile="{q}"}} {v:.6f}')
            lines.append(f'tokrec_request_latency_seconds_sum{{route="{_esc(r)}"}} {sums.get(r, 0.0):.6f}')
            lines.append(f'tokrec_request_latency_seconds_count{{route="{_esc(r)}"}} {ns.get(r, 0)}')
        for name, v in counters:
            lines += [f"# TYPE tokrec_{name} counter", f"tokrec_{name} {v:g}"]
        for name, v in gauges:
            lines += [f"# TYPE tokrec_{name} gauge", f"tokrec_{name} {v:g}"]
        return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
