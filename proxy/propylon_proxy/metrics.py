"""A small Prometheus registry: counters and histograms with bounded label sets.

Labels come only from the snapshot (api, stage, route key) or from closed sets (status class),
never from request data, so a client cannot grow the number of series. Rendering follows the
Prometheus text exposition format, version 0.0.4.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence

Labels = tuple[tuple[str, str], ...]
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = list(labels) + ([extra] if extra else [])
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels) -> float:
        return self._values.get(labels, 0.0)

    def retain(self, keep: Callable[[Labels], bool]) -> None:
        with self._lock:
            self._values = {labels: v for labels, v in self._values.items() if keep(labels)}

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for labels, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels_text(labels)} {_number(value)}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self._buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                # Built only for a new series: this runs on every request.
                series = self._series[labels] = ([0] * (len(self._buckets) + 1), [0.0])
            counts, total = series
            counts[bisect.bisect_left(self._buckets, value)] += 1
            total[0] += value

    def retain(self, keep: Callable[[Labels], bool]) -> None:
        with self._lock:
            self._series = {labels: series for labels, series in self._series.items() if keep(labels)}

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, count in zip(self._buckets, counts, strict=False):
                running += count
                lines.append(f"{self.name}_bucket{_labels_text(labels, ('le', _number(bound)))} {running}")
            running += counts[-1]
            lines.append(f"{self.name}_bucket{_labels_text(labels, ('le', '+Inf'))} {running}")
            lines.append(f"{self.name}_sum{_labels_text(labels)} {_number(total[0])}")
            lines.append(f"{self.name}_count{_labels_text(labels)} {running}")
        return lines


class GatewayMetrics:
    """The metric families of section 8, plus the registry that renders them."""

    def __init__(self) -> None:
        self.requests = Counter("propylon_requests_total", "Requests answered, by route and status class.")
        self.request_duration = Histogram(
            "propylon_request_duration_seconds", "Time from request head to the end of the response."
        )
        self.integration_duration = Histogram(
            "propylon_integration_duration_seconds", "Time the integration took to produce a response head."
        )
        self.throttled = Counter(
            "propylon_throttled_total", "Requests refused by a limit, by route and the limit that refused (reason)."
        )
        self.store_failures = Counter(
            "propylon_limit_store_failures_total",
            "Calls to the shared limit store (Redis) that failed or timed out; local limits applied.",
        )
        self.cache = Counter(
            "propylon_cache_total", "Responses of cache-enabled routes, by result (hit, miss, bypass)."
        )
        self._families: list[Counter | Histogram] = [
            self.cache,
            self.requests,
            self.request_duration,
            self.integration_duration,
            self.throttled,
            self.store_failures,
        ]
        # (labels, status // 100) -> the counter's labels: a tuple per request saved. Bounded like
        # the label sets themselves (routes of the snapshots served, times ten status classes).
        self._request_keys: dict[tuple[Labels, int], Labels] = {}

    @staticmethod
    def labels(api: str, stage: str, route: str) -> Labels:
        return (("api", api), ("stage", stage), ("route", route))

    def record(self, labels: Labels, status: int, duration: float, integration: float | None) -> None:
        key = self._request_keys.get((labels, status // 100))
        if key is None:
            key = self._request_keys[(labels, status // 100)] = (*labels, ("code_class", f"{status // 100}xx"))
        self.requests.inc(key)
        self.request_duration.observe(labels, duration)
        if integration is not None:
            self.integration_duration.observe(labels, integration)

    def retain_routes(self, live: set[Labels]) -> None:
        """Forget the series of routes no plan serves any more (issue 8, item 9): without this a
        gateway whose routes churn grows its /metrics forever. Unmatched requests keep theirs."""
        unmatched = self.labels("", "", "")

        def keep(labels: Labels) -> bool:
            route = labels[:3]
            return route == unmatched or route in live or not all(k in ("api", "stage", "route") for k, _ in route)

        for family in self._families:
            family.retain(keep)
        self._request_keys = {key: value for key, value in self._request_keys.items() if keep(key[0])}

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"
