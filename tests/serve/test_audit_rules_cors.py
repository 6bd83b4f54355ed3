"""DESIGN.md §8 CORS on a route that fails closed (task F sweep): such a route runs no other
step, so its 500 came out without the CORS headers and `Vary: Origin`, and a preflight to an
ANY route that fails closed got the 500 instead of the Api's CORS answer. Both listeners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served, send, serve_in_front

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: shop}}
spec:
  cors:
    allowOrigins: ["https://app.example"]
    allowMethods: [GET, POST]
  routes:
    - routeKey: "ANY /broken"
      authorizer: missing
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/broken"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: shop}}
"""

ORIGIN = "https://app.example"


@pytest.fixture(params=["httptools", "aiohttp"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Served, backends.Backend]]:
    respond = backends.fixed(b"from the backend")
    yield from serve_in_front(tmp_path, lambda port: API.format(port=port), respond, "--http-server", request.param)


_send = send


def test_a_failing_closed_routes_500_carries_the_cors_headers(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers = _send("GET", gateway.url("/prod/broken"), {"Origin": ORIGIN})
    assert status == 500
    assert headers["x-propylon-error-type"] == "AUTHORIZER_CONFIGURATION_ERROR"
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["vary"] == "Origin"
    assert backend.lines() == []


def test_a_preflight_to_a_failing_closed_route_gets_the_apis_cors_answer(
    served: tuple[Served, backends.Backend],
) -> None:
    gateway, backend = served
    asked = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    status, headers = _send("OPTIONS", gateway.url("/prod/broken"), asked)
    assert status == 204
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-allow-methods"] == "GET, POST"
    refused = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers = _send("OPTIONS", gateway.url("/prod/broken"), refused)
    assert status == 403
    assert headers["x-propylon-error-type"] == "ACCESS_DENIED"
    assert not [name for name in headers if name.startswith("access-control-")]
    assert backend.lines() == []


def test_without_an_origin_the_500_has_no_cors_headers_but_varies(served: tuple[Served, backends.Backend]) -> None:
    gateway, _ = served
    status, headers = _send("GET", gateway.url("/prod/broken"), {})
    assert status == 500
    assert not [name for name in headers if name.startswith("access-control-")]
    assert headers["vary"] == "Origin"
