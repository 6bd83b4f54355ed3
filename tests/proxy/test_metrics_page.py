"""The /metrics page's numbers: observations are kept in plain numbers and copied into
prometheus-client only when the page is rendered (metrics.py), so the page must show exactly
what was recorded, bucket by bucket, and forget retired routes."""

from __future__ import annotations

import re

from propylon_proxy import metrics


def _sample(page: str, name: str, **labels: str) -> float | None:
    for line in page.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if found is None or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        if have == labels:
            return float(found.group(3))
    return None


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    gm = metrics.GatewayMetrics()
    route = gm.labels("shop", "shop/prod", "GET /hello")
    for seconds in (0.0001, 0.00025, 0.0003, 0.001, 0.7, 31.0):
        gm.record(route, 200, seconds, None)
    page = gm.render()
    labels = {"api": "shop", "stage": "shop/prod", "route": "GET /hello", "code_class": "2xx"}
    name = "propylon_request_duration_seconds_bucket"
    assert _sample(page, name, **labels, le="0.00025") == 2  # a bound holds its own value
    assert _sample(page, name, **labels, le="0.0005") == 3
    assert _sample(page, name, **labels, le="0.001") == 3 + 1
    assert _sample(page, name, **labels, le="1.0") == 5
    assert _sample(page, name, **labels, le="30.0") == 5
    assert _sample(page, name, **labels, le="+Inf") == 6
    assert _sample(page, "propylon_request_duration_seconds_count", **labels) == 6
    total = _sample(page, "propylon_request_duration_seconds_sum", **labels)
    assert total is not None and abs(total - 31.70165) < 1e-9
    # No integration latency was recorded: that family has no series for the route.
    assert _sample(page, "propylon_integration_duration_seconds_count", **labels) is None


def test_counters_by_status_class_and_later_observations_show_on_the_next_page() -> None:
    gm = metrics.GatewayMetrics()
    route = gm.labels("shop", "shop/prod", "GET /hello")
    labels = {"api": "shop", "stage": "shop/prod", "route": "GET /hello"}
    gm.record(route, 200, 0.001, 0.0005)
    gm.record(route, 404, 0.001, None)
    first = gm.render()
    assert _sample(first, "propylon_requests_total", **labels, code_class="2xx") == 1
    assert _sample(first, "propylon_requests_total", **labels, code_class="4xx") == 1
    gm.record(route, 201, 0.001, 0.0005)
    gm.store_failures.inc(())
    second = gm.render()
    assert _sample(second, "propylon_requests_total", **labels, code_class="2xx") == 2
    assert _sample(second, "propylon_integration_duration_seconds_count", **labels, code_class="2xx") == 2
    assert _sample(second, "propylon_limit_store_failures_total") == 1
    assert gm.requests.value((*route, ("code_class", "2xx"))) == 2


def test_retired_routes_leave_the_page_and_start_from_zero_if_they_return() -> None:
    gm = metrics.GatewayMetrics()
    old = gm.labels("shop", "shop/prod", "GET /old")
    gm.record(old, 200, 0.001, None)
    gm.retain_routes(set())
    assert 'route="GET /old"' not in gm.render()
    gm.record(old, 200, 0.001, None)
    labels = {"api": "shop", "stage": "shop/prod", "route": "GET /old"}
    assert _sample(gm.render(), "propylon_requests_total", **labels, code_class="2xx") == 1


def test_duration_histograms_carry_the_requests_labels_code_class_included() -> None:
    """DESIGN.md section 8: both histograms have the labels of propylon_requests_total; a
    WebSocket upgrade's 101 is a success (2xx: the class set is 2xx ... 5xx)."""
    gm = metrics.GatewayMetrics()
    route = gm.labels("shop", "shop/prod", "GET /hello")
    bound = gm.series(route)  # the plan's path (RouteSeries) and the unrouted one (record)
    bound.record(200, 0.001, 0.0005)
    bound.record(503, 0.002, 0.001)
    gm.record(route, 101, 0.003, None)
    gm.record(route, 404, 0.004, None)
    page = gm.render()
    labels = {"api": "shop", "stage": "shop/prod", "route": "GET /hello"}
    for code_class, count, integrated in (("2xx", 2, 1), ("5xx", 1, 1), ("4xx", 1, None)):
        assert _sample(page, "propylon_requests_total", **labels, code_class=code_class) == count
        assert _sample(page, "propylon_request_duration_seconds_count", **labels, code_class=code_class) == count
        assert (
            _sample(page, "propylon_integration_duration_seconds_count", **labels, code_class=code_class) == integrated
        )
    assert _sample(page, "propylon_request_duration_seconds_count", **labels) is None  # no series without a class
    assert 'code_class="1xx"' not in page


def test_a_series_with_the_wrong_labels_is_left_out_and_the_page_still_renders() -> None:
    """One bad increment (labels missing, or not the family's) must never fail every scrape."""
    gm = metrics.GatewayMetrics()
    route = gm.labels("shop", "shop/prod", "GET /hello")
    gm.record(route, 200, 0.001, None)
    gm.throttled.inc((("reason", "quota"),))  # api, stage and route missing
    gm.cache.inc((*route, ("reason", "hit")))  # a label the family does not have
    gm.request_duration.observe((("route", "x"),), 0.1)
    gm.store_failures.inc((("api", "x"),))  # an unlabelled family given labels
    gm.throttled.inc((*route, ("reason", "quota")))
    for _ in range(2):
        page = gm.render()
        assert _sample(page, "propylon_requests_total", **dict(route), code_class="2xx") == 1
        assert _sample(page, "propylon_throttled_total", **dict(route), reason="quota") == 1
        assert _sample(page, "propylon_throttled_total", reason="quota") is None
        assert _sample(page, "propylon_limit_store_failures_total") == 0
        assert 'route="x"' not in page
