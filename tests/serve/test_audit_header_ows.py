"""A header value's surrounding whitespace is not part of it (RFC 9110 section 5.5), on both
``--http-server`` choices alike: a valid API key followed by a space or a tab is that key, a
cache key header is the same key with or without it, and the backend receives the bare value.
Through `propylon serve` and raw sockets (clients would not send the whitespace otherwise)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests import backends
from tests.proxy.conftest import RawResponse
from tests.serve.test_serve import Served

KEY = "ows-key-value-0123456789abc"

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: demo}}
spec:
  routes:
    - routeKey: GET /keyed
      apiKeyRequired: true
      integration: {{type: MOCK, mock: {{statusCode: 200, body: 'keyed'}}}}
    - routeKey: GET /echo
      integration: {{type: HTTP_PROXY, url: "{backend}/echo"}}
    - routeKey: GET /tenant
      cacheKeyParameters: [header.X-Tenant]
      integration: {{type: HTTP_PROXY, url: "{backend}/tenant"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: demo}}
spec:
  apiRef: shop
  routeSettings:
    "GET /tenant": {{cache: {{enabled: true}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: p, namespace: demo}}
spec:
  stages: [{{stageRef: prod}}]
  apiKeySelector: {{matchLabels: {{plan: p}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k1, namespace: demo, labels: {{plan: p}}}}
stringData: {{value: "{key}"}}
"""


@pytest.fixture(scope="module")
def backend() -> Iterator[backends.Backend]:
    with backends.Backend(backends.echo_json) as server:
        yield server


@pytest.fixture(scope="module", params=["httptools", "aiohttp"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: backends.Backend
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("ows")
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(MANIFESTS.format(backend=backend.url, key=KEY))
    gateway = Served(folder, tmp, "--http-server", str(request.param))
    yield gateway
    gateway.stop()


def _raw(served: Served, path: str, *headers: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request with header lines sent exactly as given; the status, headers and body."""
    head = b"GET /prod" + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    response = RawResponse(data)
    return response.status, response.headers, response.body


@pytest.mark.parametrize("after", [b"", b" ", b"\t", b" \t ", b"\t\t"], ids=["bare", "space", "tab", "mixed", "tabs"])
def test_an_api_key_with_trailing_whitespace_is_that_key(served: Served, after: bytes) -> None:
    status, headers, body = _raw(served, "/keyed", b"x-api-key: " + KEY.encode() + after)
    assert (status, body) == (200, b"keyed"), headers


def test_another_key_is_still_refused(served: Served) -> None:
    status, headers, _ = _raw(served, "/keyed", b"x-api-key: " + KEY.encode() + b"x ")
    assert status == 403
    assert headers.get("x-propylon-error-type") == "INVALID_API_KEY"


def test_the_backend_receives_the_value_without_it(served: Served) -> None:
    status, _, body = _raw(served, "/echo", b"X-Thing: a  b\t \t", b"X-Lead:\t  c")
    assert status == 200
    seen = {n.lower(): v for n, v in json.loads(body)["headers"].items()}
    assert (seen["x-thing"], seen["x-lead"]) == ("a  b", "c")  # inner whitespace is the value's own


def test_a_cache_key_header_is_the_same_key_with_or_without_it(served: Served) -> None:
    tenant = "t1"  # each server is a gateway of its own, with its own cache
    first = _raw(served, "/tenant", b"X-Tenant: " + tenant.encode())
    again = _raw(served, "/tenant", b"X-Tenant: " + tenant.encode() + b" \t")
    assert (first[0], first[1].get("x-propylon-cache")) == (200, "miss")
    assert (again[0], again[1].get("x-propylon-cache"), again[2]) == (200, "hit", first[2])
