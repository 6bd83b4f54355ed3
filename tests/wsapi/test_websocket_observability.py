"""What a WebSocket Api leaves in the access log and on /metrics, and what its MOCKs answer.

Through `propylon serve` with the real `websockets` client and a recording HTTP backend, the
way an operator sees it: the admin `/metrics` scrape (parsed as Prometheus parses it) and the
access-log lines on stdout. A refused `$connect` is counted under its route's labels and never
breaks the page (DESIGN.md sections 4 and 8); upgrades (101) and `@connections` calls (200,
204) are logged with the status the client got, and `$connect` lines carry the integration's
status and latency; a WebSocket MOCK substitutes `${stageVariables.x}` and
`$context.requestId` as an HTTP MOCK does (section 2.4).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.proxy import scrape
from tests.serve.test_serve import Served, _wait_for
from tests.wsapi.test_websocket_serve import Backend

KEY = "ws-observability-key-0123456789"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def _manifests(backend: str) -> str:
    return f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  routes:
    - routeKey: "$connect"
      integration: {{type: HTTP, url: "{backend}/ok-connect"}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: HTTP, url: "{backend}/default"}}
    - routeKey: mock
      routeResponseSelectionExpression: "$default"
      integration: {{type: MOCK, mock: {{statusCode: 200, body: 'mocked ${{stageVariables.v}} $context.requestId'}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: talk}}
spec: {{apiRef: chat, basePath: /live, accessLog: {{enabled: true}}, variables: {{v: sv}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: refused, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      integration: {{type: HTTP, url: "{backend}/connect"}}
    - routeKey: "$default"
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: refused, namespace: talk}}
spec: {{apiRef: refused, basePath: /refused, accessLog: {{enabled: true}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: keyed, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      apiKeyRequired: true
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ""}}}}
    - routeKey: "$default"
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: keyed, namespace: talk}}
spec: {{apiRef: keyed, basePath: /keyed}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: tiny, namespace: talk}}
spec:
  stages: [{{stageRef: keyed}}]
  quota: {{limit: 2, period: DAY}}
  apiKeySelector: {{matchLabels: {{propylon.dev/usage-plan: tiny}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k1, namespace: talk, labels: {{propylon.dev/usage-plan: tiny}}}}
stringData: {{value: "{KEY}"}}
"""


class World:
    def __init__(self, tmp: Path) -> None:
        self.backend = Backend()
        self.backend.refuse_connect = True  # /connect answers 401; /ok-connect 200
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(_manifests(self.backend.url))
        self.served = Served(folder, tmp)

    def ws(self, base: str) -> str:
        return f"ws://127.0.0.1:{self.served.port}{base}"

    def metrics(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.served.admin}/metrics", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def manage(self, method: str, connection_id: str, body: bytes = b"") -> int:
        url = f"http://127.0.0.1:{self.served.internal}/live/@connections/{connection_id}"
        request = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()
            return int(answer.status)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.served.stdout_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> None:
        self.served.stop()
        self.backend.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("ws-observability"))
    yield w
    w.stop()


def _line(world: World, **fields: Any) -> dict[str, Any]:
    """The access-log line with these field values (waiting for the writer thread)."""

    def found() -> dict[str, Any] | None:
        return next((line for line in world.log_lines() if fields.items() <= line.items()), None)

    assert _wait_for(lambda: found() is not None, 10), (fields, world.log_lines())
    line = found()
    assert line is not None
    return line


async def test_a_quota_refused_connect_is_counted_under_its_route_and_metrics_keep_working(world: World) -> None:
    for _ in range(2):
        async with connect(world.ws("/keyed"), additional_headers={"x-api-key": KEY}):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(world.ws("/keyed"), additional_headers={"x-api-key": KEY}):
            pass
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers.get("x-propylon-error-type") == "QUOTA_EXCEEDED"
    keyed = {"api": "talk/keyed", "stage": "talk/keyed", "route": "$connect"}
    for _ in range(2):  # every scrape, not only the first after the refusal
        status, page = world.metrics()
        assert status == 200, page
        assert scrape.value(page, "propylon_throttled_total", **keyed, reason="quota") == 1
        assert scrape.value(page, "propylon_requests_total", **keyed, code_class="4xx") == 1


async def test_upgrades_and_connections_calls_are_logged_and_counted_with_the_status_sent(world: World) -> None:
    async with connect(world.ws("/live")) as client:
        await client.send("hello")
        assert await client.recv() == "default:hello"
        connection_id = next(c[1] for c in world.backend.calls if c[0] == "/default")
        assert world.manage("GET", connection_id) == 200
        assert world.manage("POST", connection_id, b"pushed") == 200
        assert await client.recv() == "pushed"
        assert world.manage("DELETE", connection_id) == 204
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await client.recv()
    managed = f"/live/@connections/{connection_id}"
    for method, status in (("GET", 200), ("POST", 200), ("DELETE", 204)):
        line = _line(world, httpMethod=method, path=managed)
        assert line["status"] == status, line
    upgrade = _line(world, path="/live", routeKey="$connect")
    assert upgrade["status"] == 101, upgrade
    assert upgrade["integrationStatus"] == 200, upgrade  # $connect's HTTP integration answered 200
    assert isinstance(upgrade["integrationLatencyMs"], int), upgrade
    assert upgrade["errorType"] is None
    status, page = world.metrics()
    assert status == 200
    chat = {"api": "talk/chat", "stage": "talk/live"}
    for route in ("$connect", ""):
        assert scrape.value(page, "propylon_requests_total", **chat, route=route, code_class="5xx") == 0
    assert scrape.value(page, "propylon_requests_total", **chat, route="$connect", code_class="2xx") >= 1
    assert scrape.value(page, "propylon_requests_total", **chat, route="", code_class="2xx") >= 3


async def test_a_connect_refused_by_its_integration_logs_the_integrations_status(world: World) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(world.ws("/refused")):
            pass
    assert refused.value.response.status_code == 403
    line = _line(world, path="/refused", routeKey="$connect")
    assert line["status"] == 403 and line["errorType"] == "ACCESS_DENIED", line
    assert line["integrationStatus"] == 401, line
    assert isinstance(line["integrationLatencyMs"], int), line


async def test_a_websocket_mock_substitutes_stage_variables_and_the_request_id(world: World) -> None:
    async with connect(world.ws("/live")) as client:
        await client.send(json.dumps({"action": "mock"}))
        first = await client.recv()
        await client.send(json.dumps({"action": "mock"}))
        second = await client.recv()
    assert isinstance(first, str) and isinstance(second, str)
    assert re.fullmatch(f"mocked sv {UUID}", first), first
    assert re.fullmatch(f"mocked sv {UUID}", second), second
    assert first != second  # each message is a request of its own
