"""A declared body over the limit, refused before routing, is answered as the Api whose Stage
its path falls under: its gatewayResponses override, its CORS headers for an allowed origin, its
Stage's access log and the route's metrics (DESIGN.md §3: every gateway error can be overridden
per Api; §8: gateway errors to an allowed origin carry the CORS headers). It got the built-in
response, unlogged and unlabelled, while the same 413 for a chunked body (found in the chain)
had all of it. So for the 400 of a repeated credential header. Both listeners, through a real
``serve``. (Framing errors and oversized heads are refused by either listener's HTTP parser,
before a request exists: they keep the built-in response.)"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served, _wait_for, serve_in_front

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: shop}}
spec:
  cors:
    allowOrigins: ["https://app.example"]
    allowMethods: [GET, POST]
  gatewayResponses:
    REQUEST_TOO_LARGE: {{statusCode: 413, body: '{{"message":"shop: too large"}}'}}
    BAD_REQUEST: {{headers: {{X-Shop: bad}}}}
  routes:
    - routeKey: "POST /upload"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/upload"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec:
  apiRef: shop
  accessLog: {{enabled: true}}
"""

ORIGIN = "https://app.example"


@pytest.fixture(params=["httptools", "aiohttp"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Served, backends.Backend]]:
    yield from serve_in_front(tmp_path, lambda port: API.format(port=port), backends.ok, "--http-server", request.param)


def _exchange(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request head (no body) and read the answer until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    top, _, body = received.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def _post_head(path: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Origin: {ORIGIN}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _access_log(gateway: Served) -> list[dict[str, object]]:
    return [json.loads(line) for line in gateway.stdout_path.read_text().splitlines() if line.startswith("{")]


def _request_series(gateway: Served, code_class: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    return "\n".join(
        line
        for line in text.splitlines()
        if line.startswith("propylon_requests_total") and f'code_class="{code_class}"' in line
    )


def test_a_declared_body_over_the_limit_gets_the_apis_413(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers, body = _exchange(gateway.port, _post_head("/prod/upload", "Content-Length: 10485761"))
    assert status == 413
    assert json.loads(body) == {"message": "shop: too large"}
    assert headers["x-propylon-error-type"] == "REQUEST_TOO_LARGE"
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["vary"] == "Origin"
    assert headers["connection"] == "close"
    assert backend.lines() == []
    assert _wait_for(lambda: any(e.get("status") == 413 for e in _access_log(gateway)), 5)
    (logged,) = [e for e in _access_log(gateway) if e.get("status") == 413]
    assert logged["routeKey"] == "POST /upload"
    assert logged["errorType"] == "REQUEST_TOO_LARGE"
    assert 'route="POST /upload"' in _request_series(gateway, "4xx")


def test_repeated_credentials_under_a_stage_get_the_apis_400(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, headers, body = _exchange(gateway.port, _post_head("/prod/upload", "x-api-key: a", "x-api-key: b"))
    assert status == 400
    assert json.loads(body) == {"message": "Bad Request"}
    assert headers["x-shop"] == "bad"
    assert headers["access-control-allow-origin"] == ORIGIN
    assert backend.lines() == []
    assert _wait_for(lambda: any(e.get("status") == 400 for e in _access_log(gateway)), 5)


def test_outside_every_stage_the_built_in_response_stays(served: tuple[Served, backends.Backend]) -> None:
    gateway, _ = served
    status, headers, body = _exchange(gateway.port, _post_head("/elsewhere", "Content-Length: 10485761"))
    assert status == 413
    assert json.loads(body) == {"message": "Request Too Long"}
    assert "access-control-allow-origin" not in headers
