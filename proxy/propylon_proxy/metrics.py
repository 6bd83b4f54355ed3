"""The gateway's Prometheus metrics, on prometheus-client with a registry of their own.

Labels come only from the snapshot (api, stage, route key) or from closed sets (status class,
throttle reason, cache result), never from request data, so a client cannot grow the number of
series. The module keeps the small API its callers had (``Counter.inc(labels)``,
``Histogram.observe(labels, value)``, ``retain``, ``render``) so no caller changes.

Hot path: ``family.labels(...)`` validates and hashes label values on every call, and every
child value takes a thread lock on each update (a histogram two). Observations therefore go to
plain Python numbers kept per label tuple (one dict lookup, one ``bisect`` for a histogram, no
lock: everything that records or renders runs on the event loop's thread), and are copied into
the prometheus-client children only when the page is rendered. Measured (issue 15, perf-hot2):
``GatewayMetrics.record`` 3.2 -> 0.8 us per request in process.

A label tuple that does not name exactly a family's labels (a caller's bug, such as a counter
increment made before the request's route labels were known) is left out of the page and
logged once when the page is rendered: it is never bound, so it can never make ``/metrics``
fail, and checking happens once per series, not per increment (the hot path stays a lookup).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from propylon_config import model

Labels = tuple[tuple[str, str], ...]
# 0.25 ms … 30 s: a gateway's own overhead is sub-millisecond, backends reach seconds.
DEFAULT_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
ROUTE_LABELS = ("api", "stage", "route")
# propylon_requests_total and both duration histograms: DESIGN.md section 8, "same labels".
REQUEST_LABELS = (*ROUTE_LABELS, "code_class")
CACHE_RESULTS = ("hit", "miss", "bypass")  # propylon_cache_total{result}: what the response cache records

# `_created` series double the exposition for no use to a gateway's dashboards.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

log = logging.getLogger("propylon.metrics")


def code_class(status: int) -> str:
    """The ``code_class`` label of a status: ``2xx`` ... ``5xx`` (DESIGN.md section 8's closed set).

    A WebSocket upgrade is answered 101 and then served: it is a success, counted as ``2xx``
    (the access log keeps the 101). Called once per series, never per request."""
    return f"{max(status // 100, 2)}xx"


def route_labels(stage: model.Stage | None, route: model.Route | None) -> Labels:
    """The route labels of a request no plan bound them for (unmatched, or refused before its
    route's labels were set): the stage's api and id and the route key, empty when unknown."""
    return GatewayMetrics.labels(
        stage.api if stage else "", stage.id if stage else "", route.route_key if route else ""
    )


class _Family:
    """One metric family with its label tuples bound to children once."""

    name: str

    def __init__(self, family: Any, labelnames: Sequence[str]) -> None:
        self._family = family
        self._labelnames = tuple(labelnames)
        self._children: dict[Labels, Any] = {}
        self._names = frozenset(labelnames)
        self._refused: set[Labels] = set()  # malformed label tuples already logged (bounded: code paths)

    def _child(self, labels: Labels) -> Any:
        """The prometheus-client child of ``labels``, or None when they do not name exactly this
        family's labels (then the series is left out of the page instead of failing it)."""
        child = self._children.get(labels)
        if child is None:
            if not self._labelnames:
                child = self._family if not labels else None
            elif len(labels) == len(self._labelnames) and {name for name, _ in labels} == self._names:
                values = dict(labels)
                try:
                    child = self._family.labels(*(values[name] for name in self._labelnames))
                except (KeyError, ValueError):
                    child = None
            if child is None:
                if labels not in self._refused:
                    self._refused.add(labels)
                    log.warning(
                        "metric %s: series %r does not have labels %s; left out", self.name, labels, self._labelnames
                    )
                return None
            self._children[labels] = child
        return child

    def retain(self, keep: Callable[[Labels], bool]) -> None:
        for labels in [labels for labels in self._children if not keep(labels)]:
            del self._children[labels]
            if self._labelnames:
                values = dict(labels)
                self._family.remove(*(values[name] for name in self._labelnames))
        self._forget(keep)

    def _forget(self, keep: Callable[[Labels], bool]) -> None:
        """Drop the plain numbers of the series ``keep`` refuses."""

    def sync(self) -> None:
        """Copy the plain numbers into the prometheus-client children (before rendering)."""


class Counter(_Family):
    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), registry: CollectorRegistry | None = None
    ) -> None:
        self.name = name
        super().__init__(
            prometheus_client.Counter(name, help_text, labelnames, registry=registry or CollectorRegistry()),
            labelnames,
        )

        # labels -> [count]: a cell, which a caller may keep (``cell``) and add to without a lookup.
        self._counts: dict[Labels, list[float]] = {}

    def cell(self, labels: Labels) -> list[float]:
        """The series' count as a one-item list, created at 0 (then it is rendered)."""
        found = self._counts.get(labels)
        if found is None:
            found = self._counts[labels] = [0.0]
        return found

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        found = self._counts.get(labels)
        if found is None:
            self._counts[labels] = [amount]
        else:
            found[0] += amount

    def value(self, labels: Labels) -> float:
        found = self._counts.get(labels)
        return found[0] if found is not None else 0.0

    def _forget(self, keep: Callable[[Labels], bool]) -> None:
        self._counts = {labels: cell for labels, cell in self._counts.items() if keep(labels)}

    def sync(self) -> None:
        malformed = []
        for labels, (count,) in self._counts.items():
            child = self._child(labels)
            if child is None:
                malformed.append(labels)
            else:
                child._value.set(count)
        for labels in malformed:
            del self._counts[labels]


class Histogram(_Family):
    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = REQUEST_LABELS,
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.name = name
        super().__init__(
            prometheus_client.Histogram(
                name, help_text, labelnames, registry=registry or CollectorRegistry(), buckets=tuple(buckets)
            ),
            labelnames,
        )
        # prometheus-client's own bounds (with +Inf); a value falls in the first bucket whose
        # bound is >= it, as in its Histogram.observe.
        self._bounds = tuple(float(b) for b in buckets) + (() if buckets and buckets[-1] == math.inf else (math.inf,))
        # labels -> [sum, count of bucket 0, bucket 1, ...] (not cumulative; sync accumulates).
        self._series: dict[Labels, list[float]] = {}

    def series(self, labels: Labels) -> list[float]:
        """The series' numbers (a caller may keep them for ``observe_into``), created empty."""
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = [0.0] * (len(self._bounds) + 1)
        return found

    def observe(self, labels: Labels, value: float) -> None:
        self.observe_into(self.series(labels), value)

    def observe_into(self, series: list[float], value: float) -> None:
        series[0] += value
        series[bisect.bisect_left(self._bounds, value) + 1] += 1

    def _forget(self, keep: Callable[[Labels], bool]) -> None:
        self._series = {labels: series for labels, series in self._series.items() if keep(labels)}

    def sync(self) -> None:
        malformed = []
        for labels, series in self._series.items():
            child = self._child(labels)
            if child is None:
                malformed.append(labels)
                continue
            child._sum.set(series[0])
            for bucket, count in zip(child._buckets, series[1:], strict=True):
                bucket.set(count)
        for labels in malformed:
            del self._series[labels]


class GatewayMetrics:
    """The metric families of DESIGN.md section 8, in a registry of this gateway's own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "propylon_requests_total",
            "Requests answered, by route and status class.",
            REQUEST_LABELS,
            registry,
        )
        self.request_duration = Histogram(
            "propylon_request_duration_seconds",
            "Time from request head to the end of the response.",
            registry=registry,
        )
        self.integration_duration = Histogram(
            "propylon_integration_duration_seconds",
            "Time the integration took to produce a response head.",
            registry=registry,
        )
        self.cache = Counter(
            "propylon_cache_total",
            "Responses of cache-enabled routes, by route and result (hit, miss or bypass).",
            (*ROUTE_LABELS, "result"),
            registry,
        )
        self.throttled = Counter(
            "propylon_throttled_total",
            "Requests refused by a limit, by route and the limit that refused (reason).",
            (*ROUTE_LABELS, "reason"),
            registry,
        )
        self.store_failures = Counter(
            "propylon_limit_store_failures_total",
            "Calls to the shared limit store (Redis) that failed or timed out; local limits applied.",
            (),
            registry,
        )
        self.access_log_dropped = Counter(
            "propylon_access_log_dropped_total",
            "Access-log lines dropped because stdout was too slow to take them (requests never wait).",
            (),
            registry,
        )
        self._families: list[_Family] = [
            self.requests,
            self.request_duration,
            self.integration_duration,
            self.cache,
            self.throttled,
        ]
        # (labels, status // 100) -> the labels of the counter and both histograms: a tuple per
        # request saved. Bounded like the label sets themselves (routes served, times the classes).
        self._request_keys: dict[tuple[Labels, int], Labels] = {}

    @staticmethod
    def labels(api: str, stage: str, route: str) -> Labels:
        return (("api", api), ("stage", stage), ("route", route))

    def record(self, labels: Labels, status: int, duration: float, integration: float | None) -> None:
        key = self._request_keys.get((labels, status // 100))
        if key is None:
            key = self._request_keys[(labels, status // 100)] = (*labels, ("code_class", code_class(status)))
        self.requests.inc(key)
        self.request_duration.observe(key, duration)
        if integration is not None:
            self.integration_duration.observe(key, integration)

    def series(self, labels: Labels) -> RouteSeries:
        """One route's request series, for its plan to keep (``RoutePlan.series``)."""
        return RouteSeries(self, labels)

    def record_cache(self, labels: Labels, hit: bool) -> None:
        """The response cache's hook: one call per lookup on a caching stage."""
        self.cache.inc((*labels, ("result", "hit" if hit else "miss")))

    def retain_routes(self, live: set[Labels]) -> None:
        """Forget the series of routes no plan serves any more (issue 8, item 9): without this a
        gateway whose routes churn grows its /metrics forever. Unmatched requests keep theirs."""
        unmatched = self.labels("", "", "")

        def keep(labels: Labels) -> bool:
            route = labels[:3]
            return route == unmatched or route in live or not all(k in ROUTE_LABELS for k, _ in route)

        for family in self._families:
            family.retain(keep)
        self._request_keys = {key: value for key, value in self._request_keys.items() if keep(key[0])}

    def render(self) -> str:
        for family in (*self._families, self.store_failures, self.access_log_dropped):
            family.sync()
        page: bytes = prometheus_client.generate_latest(self.registry)
        return page.decode()


def merge(pages: Sequence[str]) -> str:
    """One page of several gateways' pages (``serve --workers``: worker 0 answers /metrics for
    all), each sample the sum of the workers' samples with its name and labels. Sound because
    every family here is a counter or a histogram (cumulative buckets, sum and count all add
    up); families and series keep the order they first appear in."""
    families: dict[str, Metric] = {}
    samples: dict[str, dict[tuple[str, Labels], float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                samples[family.name] = {}
            into = samples[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                into[key] = into.get(key, 0.0) + sample.value
    for name, metric in families.items():
        for (sample_name, labels), value in samples[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(families.values())))
    return prometheus_client.generate_latest(registry).decode()


class _Collected(Collector):
    """Metrics already gathered, for ``generate_latest``."""

    def __init__(self, found: list[Metric]) -> None:
        self._found = found

    def collect(self) -> list[Metric]:
        return self._found


class _ClassSeries:
    """One route's series for one status class: its count cell and both histograms' numbers."""

    __slots__ = ("count", "duration", "integration", "key")

    def __init__(self, owner: GatewayMetrics, key: Labels) -> None:
        self.key = key
        self.count = owner.requests.cell(key)
        self.duration = owner.request_duration.series(key)
        self.integration: list[float] | None = None  # bound on the first integration timing (MOCKs have none)


class RouteSeries:
    """One route's request series, held by its plan so that recording a request looks nothing up.

    ``GatewayMetrics.record`` finds three series per request by their label tuples (each tuple
    hashed again every time); here the series are bound on first use, per status class (the
    histograms carry ``code_class`` like the counter, DESIGN.md section 8), so a request costs
    one small-int dict lookup; a route never asked renders no series, as before. A series the
    metrics drop (``retain_routes``: the route left the snapshot) keeps being added to by the
    old plan's requests still running, which no page shows any more. Measured in process
    (issue 15, perf-shell): recording a request 0.69 -> 0.33 us.
    """

    __slots__ = ("_classes", "_metrics", "labels")

    def __init__(self, owner: GatewayMetrics, labels: Labels) -> None:
        self._metrics = owner
        self.labels = labels
        self._classes: dict[int, _ClassSeries] = {}  # status // 100 -> its series

    def record(self, status: int, duration: float, integration: float | None) -> None:
        owner = self._metrics
        bound = self._classes.get(status // 100)
        if bound is None:
            key = (*self.labels, ("code_class", code_class(status)))
            bound = self._classes[status // 100] = _ClassSeries(owner, key)
        bound.count[0] += 1
        owner.request_duration.observe_into(bound.duration, duration)
        if integration is not None:
            series = bound.integration
            if series is None:
                series = bound.integration = owner.integration_duration.series(bound.key)
            owner.integration_duration.observe_into(series, integration)
