"""`serve --workers 2`: the admin port speaks for every worker, as DESIGN §4 reads.

``POST /admin/stages/<ns>/<stage>/cache/flush`` empties the stage's cache in every worker (each
worker has its own), and ``/metrics`` counts the requests of every worker: worker 0 relays the
flush to, and gathers the pages of, its siblings over unix sockets in a private folder. Real
processes; every TCP port (serve's and the backend's) from tests.ports.free_port.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import backends, redis_servers
from tests.serve.test_usage_plans import _get
from tests.serve.test_workers import workers

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def counting_backend() -> Iterator[int]:
    """A backend that answers ``{"n": <how many requests it has had>}``: a cached answer shows
    which fill of the cache it came from."""
    counter = itertools.count(1)

    def respond(request: backends.Received) -> backends.Answer:
        body = json.dumps({"n": next(counter)}).encode()
        return backends.Answer(body=body, headers=(("Content-Type", "application/json"),))

    with backends.Backend(respond) as backend:
        yield backend.port


def _manifests(folder: Path, backend: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.yaml").write_text(
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: shop, namespace: demo}\n"
        "spec:\n  routes:\n    - routeKey: GET /c\n"
        f"      integration: {{type: HTTP_PROXY, url: 'http://127.0.0.1:{backend}/c'}}\n"
        "---\napiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod, namespace: demo}\n"
        "spec:\n  apiRef: shop\n  cache: {enabled: true, ttlSeconds: 300}\n"
    )
    return folder


async def _on_fresh_connections(url: str, n: int) -> list[tuple[str, int]]:
    """``n`` requests, each on a new connection (the kernel picks a worker for each): the
    x-propylon-cache header and the backend's ``n`` of each answer."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[str, int]:
            async with session.get(url) as response:
                assert response.status == 200
                return response.headers["x-propylon-cache"], int((await response.json())["n"])

        return [await one() for _ in range(n)]


def _post(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_flush_reaches_every_workers_cache(tmp_path: Path, counting_backend: int) -> None:
    redis_servers.require_redis()
    folder = _manifests(tmp_path / "manifests", counting_backend)
    with workers(folder, tmp_path) as served:
        url = f"http://127.0.0.1:{served.port}/prod/c"
        before = asyncio.run(_on_fresh_connections(url, 20))
        # Both workers filled their own cache: two misses, each then served as hits.
        assert sorted(n for cache, n in before if cache == "miss") == [1, 2], before
        status, body = _post(f"http://127.0.0.1:{served.admin}/admin/stages/demo/prod/cache/flush")
        assert (status, json.loads(body)) == (200, {"stage": "demo/prod", "flushed": True})
        after = asyncio.run(_on_fresh_connections(url, 20))
        stale = [answer for answer in after if answer[1] <= 2]
        assert stale == [], f"answers from before the flush: {after}"


def test_metrics_count_every_workers_requests(tmp_path: Path, counting_backend: int) -> None:
    redis_servers.require_redis()
    folder = _manifests(tmp_path / "manifests", counting_backend)
    with workers(folder, tmp_path) as served:
        answers = asyncio.run(_on_fresh_connections(f"http://127.0.0.1:{served.port}/prod/c", 40))
        assert len({n for _, n in answers}) == 2  # both workers served (each missed once)
        status, _, page = _get(f"http://127.0.0.1:{served.admin}/metrics")
        assert status == 200
        counted = {"propylon_requests_total": 0.0, "propylon_cache_total": 0.0}
        for family in text_string_to_metric_families(page.decode()):
            for sample in family.samples:
                if sample.name in counted and sample.labels.get("route") == "GET /c":
                    counted[sample.name] += sample.value
        assert counted == {"propylon_requests_total": 40.0, "propylon_cache_total": 40.0}
        # Histograms add up too: one duration observation per request.
        durations = [
            s.value
            for f in text_string_to_metric_families(page.decode())
            for s in f.samples
            if s.name == "propylon_request_duration_seconds_count"
        ]
        assert sum(durations) == 40.0
