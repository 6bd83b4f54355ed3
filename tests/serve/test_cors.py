"""Issue 12, CORS through `propylon serve`, as a browser sees it (DESIGN.md sections 1 and 8):
preflights answered by the gateway (the backend never sees them), the actual request decorated,
disallowed origin/method/header refused without CORS headers, credentials, wildcard, and a
later step's refusal (API key 403) readable by an allowed origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served, send, serve_in_front

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  cors:
    allowOrigins: ["https://myapp.example"]
    allowMethods: [GET, POST]
    allowHeaders: [Content-Type, Authorization]
    exposeHeaders: [X-Total]
    maxAge: 600
    allowCredentials: true
  routes:
    - routeKey: "ANY /items"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/items"}}
    - routeKey: "ANY /keyed"
      apiKeyRequired: true
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/keyed"}}
    - routeKey: "POST /orders"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/orders"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: users}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: public, namespace: shop}}
spec:
  cors:
    allowOrigins: ["*"]
    allowMethods: [GET]
  routes:
    - routeKey: "ANY /items"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/public"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: plain, namespace: shop}}
spec:
  routes:
    - routeKey: "POST /orders"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/plain"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: plain, namespace: shop}}
spec: {{apiRef: plain}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: pub, namespace: shop}}
spec: {{apiRef: public}}
"""

ORIGIN = "https://myapp.example"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, backends.Backend]]:
    yield from serve_in_front(tmp_path, lambda port: API.format(port=port), backends.fixed(b"from the backend"))


def _send(method: str, url: str, **headers: str) -> tuple[int, dict[str, str]]:
    return send(method, url, {k.replace("_", "-"): v for k, v in headers.items()})


def _cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


def test_preflight_is_answered_by_the_gateway(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers = _send(
        "OPTIONS",
        gateway.url("/prod/items"),
        Origin=ORIGIN,
        Access_Control_Request_Method="POST",
        Access_Control_Request_Headers="content-type, authorization",
    )
    assert status == 204
    assert _cors_headers(headers) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "Content-Type, Authorization",
        "access-control-max-age": "600",
    }
    assert headers["vary"] == "Origin"
    assert backend.lines() == []  # the backend never saw the preflight


@pytest.mark.parametrize(
    "origin, method, asked",
    [
        ("https://evil.example", "POST", ""),  # origin not listed (credentials: no "*" fallback)
        (ORIGIN, "DELETE", ""),  # method not allowed
        (ORIGIN, "POST", "X-Secret"),  # header not allowed
    ],
)
def test_disallowed_preflight_is_403_without_cors_headers(
    served: tuple[Served, backends.Backend], origin: str, method: str, asked: str
) -> None:
    gateway, backend = served
    extra = {"Access_Control_Request_Headers": asked} if asked else {}
    status, headers = _send(
        "OPTIONS", gateway.url("/prod/items"), Origin=origin, Access_Control_Request_Method=method, **extra
    )
    assert status == 403
    assert headers["x-propylon-error-type"] == "ACCESS_DENIED"
    assert _cors_headers(headers) == {}
    assert backend.lines() == []


def test_actual_request_from_an_allowed_origin_is_decorated(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers = _send("GET", gateway.url("/prod/items"), Origin=ORIGIN)
    assert status == 200
    assert backend.lines() == ["GET /items"]
    assert _cors_headers(headers) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "X-Total",
    }
    assert headers["vary"] == "Origin"


def test_actual_request_from_another_origin_gets_no_cors_headers(served: tuple[Served, backends.Backend]) -> None:
    gateway, _ = served
    status, headers = _send("GET", gateway.url("/prod/items"), Origin="https://evil.example")
    assert status == 200  # served, but the browser will not let the page read it
    assert _cors_headers(headers) == {}
    assert headers["vary"] == "Origin"


def test_a_later_refusal_is_readable_by_an_allowed_origin(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers = _send("GET", gateway.url("/prod/keyed"), Origin=ORIGIN)
    assert status == 403  # the API key step refused: no key
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-allow-credentials"] == "true"
    assert backend.lines() == []


def test_wildcard_without_credentials_answers_star(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers = _send(
        "OPTIONS", gateway.url("/pub/items"), Origin="https://any.example", Access_Control_Request_Method="GET"
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    status, headers = _send("GET", gateway.url("/pub/items"), Origin="https://any.example")
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert backend.lines() == ["GET /public"]


def test_preflight_is_answered_for_a_path_with_no_options_route(served: tuple[Served, backends.Backend]) -> None:
    """A browser preflights `POST /orders` though only `POST /orders` is declared: AWS answers it,
    and so does the gateway; the backend never sees an OPTIONS request."""
    gateway, backend = served
    status, headers = _send("OPTIONS", gateway.url("/prod/orders"), Origin=ORIGIN, Access_Control_Request_Method="POST")
    assert status == 204
    assert headers["access-control-allow-origin"] == ORIGIN
    status, headers = _send("OPTIONS", gateway.url("/prod/orders"), Origin=ORIGIN, Access_Control_Request_Method="PUT")
    # DESIGN.md §8: a preflight for a disallowed method is 403, whether or not a route has it.
    assert status == 403 and headers["x-propylon-error-type"] == "ACCESS_DENIED"
    assert _cors_headers(headers) == {}
    status, headers = _send("OPTIONS", gateway.url("/prod/orders"), Origin=ORIGIN, Access_Control_Request_Method="GET")
    # An allowed method with no route of its own is answered too, as API Gateway answers every
    # preflight of a CORS-enabled Api: the browser's next request then gets its 404, readable.
    assert status == 204 and headers["access-control-allow-origin"] == ORIGIN
    status, headers = _send("OPTIONS", gateway.url("/prod/orders"), Access_Control_Request_Method="POST")
    assert status == 404  # not a preflight (no Origin): OPTIONS /orders has no route
    assert backend.lines() == []


def test_a_404_of_a_cors_enabled_api_is_readable_by_an_allowed_origin(
    served: tuple[Served, backends.Backend],
) -> None:
    gateway, backend = served
    for method, path in (("GET", "/prod/nothing-here"), ("DELETE", "/prod/orders")):
        status, headers = _send(method, gateway.url(path), Origin=ORIGIN)
        assert status == 404 and headers["x-propylon-error-type"] == "RESOURCE_NOT_FOUND"
        assert headers["access-control-allow-origin"] == ORIGIN
        assert headers["access-control-allow-credentials"] == "true"
        assert "Origin" in headers["vary"]
    status, headers = _send("GET", gateway.url("/prod/nothing-here"), Origin="https://evil.example")
    assert status == 404 and _cors_headers(headers) == {} and "Origin" in headers["vary"]
    assert backend.lines() == []


def test_an_api_without_cors_gets_no_preflight_answer(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers = _send(
        "OPTIONS", gateway.url("/plain/orders"), Origin=ORIGIN, Access_Control_Request_Method="POST"
    )
    assert status == 404
    assert _cors_headers(headers) == {}
    assert backend.lines() == []
