"""What an audit found `propylon serve` getting wrong, through real `propylon serve` (both HTTP
servers) and a real loopback backend that is also the FUNCTION server:

* A backend's, a MOCK's or a FUNCTION handler's ``x-propylon-cache`` and
  ``x-propylon-cache-invalidation`` reached the client: on a cached route the client saw two
  ``x-propylon-cache`` headers and the backend's was stored in the cache. The gateway owns them
  (DESIGN.md section 8 "Cache": present exactly when the route caches), as it owns
  ``x-propylon-error-type``.
* A route path written decoded with a non-ASCII literal (``GET /café``) was a diagnostic, so it
  could not be routed; it is reached by ``/caf%C3%A9`` (routing compares decoded segments), and so
  is a non-ASCII basePath.
* A MOCK body substituted twice: a stage variable holding the text ``$context.requestId`` got a
  request id put into it (DESIGN.md section 2.4: substituted in the body, not in values).
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon_compiler import routes
from propylon_config import model
from tests import backends
from tests.serve.test_serve import PROPYLON, Served

OWN = (("x-propylon-cache", "hit"), ("X-Propylon-Cache-Invalidation", "denied"))


def _respond(request: backends.Received) -> backends.Answer:
    if request.path.startswith("/2015-03-31/functions/"):  # the FUNCTION's invocation
        answer = {"statusCode": 200, "headers": dict(OWN), "multiValueHeaders": {}, "body": "fn"}
        return backends.Answer(body=json.dumps(answer).encode(), headers=(("Content-Type", "application/json"),))
    return backends.Answer(body=b"backend", headers=(("Content-Type", "text/plain"), *OWN))


def _manifests(url: str) -> str:
    return f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: audit, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /backend", integration: {{type: HTTP_PROXY, url: "{url}/backend"}}}}
    - {{routeKey: "GET /http", integration: {{type: HTTP, url: "{url}/http"}}}}
    - routeKey: "GET /mock"
      integration:
        type: MOCK
        mock: {{statusCode: 200, headers: {{x-propylon-cache: hit, x-propylon-cache-invalidation: denied}}, body: mock}}
    - {{routeKey: "GET /fn", integration: {{type: FUNCTION, url: "{url}", payloadFormatVersion: "2.0"}}}}
    - routeKey: "GET /body"
      integration: {{type: MOCK, mock: {{body: "v=${{stageVariables.a}};id=$context.requestId"}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: plain, namespace: shop}}
spec:
  apiRef: audit
  basePath: /plain
  variables: {{a: "literal-$context.requestId-text"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: cached, namespace: shop}}
spec:
  apiRef: audit
  basePath: /cached
  cache: {{enabled: true, ttlSeconds: 300}}
---
# Its own Api and Stages, so that what was refused before leaves the cases above served.
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: cafe, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /café", integration: {{type: MOCK, mock: {{body: cafe}}}}}}
    - {{routeKey: "GET /café/{{id}}", integration: {{type: HTTP_PROXY, url: "{url}/c/{{id}}"}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: cafe, namespace: shop}}
spec: {{apiRef: cafe, basePath: /cafe}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: produkt, namespace: shop}}
spec: {{apiRef: cafe, basePath: /prödükt}}
"""


@pytest.fixture(scope="module")
def function() -> Iterator[backends.Backend]:
    server = backends.Backend(_respond, protocol="HTTP/1.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, function: backends.Backend) -> Path:
    folder = tmp_path_factory.mktemp("audit-routing") / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(_manifests(function.url), encoding="utf-8")
    return folder


@pytest.fixture(scope="module", params=["httptools", "aiohttp"])
def served(request: pytest.FixtureRequest, folder: Path) -> Iterator[Served]:
    gateway = Served(folder, folder.parent, "--http-server", request.param)
    yield gateway
    gateway.stop()


def _get(served: Served, target: str) -> tuple[int, list[tuple[str, str]], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name]


def test_validate_accepts_a_non_ascii_route_path_and_base_path(folder: Path) -> None:
    done = subprocess.run([*PROPYLON, "validate", "-f", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not allowed" not in done.stdout + done.stderr


@pytest.mark.parametrize("path", ["/backend", "/http", "/mock", "/fn"])
def test_an_integration_cannot_set_the_gateways_cache_headers(served: Served, path: str) -> None:
    status, headers, _ = _get(served, "/plain" + path)
    assert status == 200
    assert _values(headers, "x-propylon-cache") == [], headers  # the route does not cache: absent
    assert _values(headers, "x-propylon-cache-invalidation") == [], headers
    first = _get(served, "/cached" + path)
    again = _get(served, "/cached" + path)
    assert first[0] == again[0] == 200
    assert _values(first[1], "x-propylon-cache") == ["miss"], first[1]
    assert _values(again[1], "x-propylon-cache") == ["hit"], again[1]  # and the stored copy has none of its own
    assert (
        _values(first[1], "x-propylon-cache-invalidation") == _values(again[1], "x-propylon-cache-invalidation") == []
    )


def test_a_non_ascii_literal_is_routed_by_its_encoded_spelling(served: Served, function: backends.Backend) -> None:
    assert _get(served, "/cafe/caf%C3%A9")[::2] == (200, b"cafe")
    assert _get(served, "/pr%C3%B6d%C3%BCkt/caf%C3%A9")[::2] == (200, b"cafe")
    assert _get(served, "/cafe/cafe")[0] == 404
    status, _, _ = _get(served, "/cafe/caf%C3%A9/%E2%82%AC")
    assert status == 200
    assert function.paths()[-1] == "/c/%E2%82%AC"


def test_a_mock_body_substitutes_once(served: Served) -> None:
    status, headers, body = _get(served, "/plain/body")
    assert status == 200
    request_id = _values(headers, "x-request-id")[0]
    assert body.decode() == f"v=literal-$context.requestId-text;id={request_id}"


@pytest.mark.parametrize("segment", ["café", "李", "prödükt", "a€b"])
def test_printable_non_ascii_literals_are_route_segments(segment: str) -> None:
    assert routes.parse_path(f"/{segment}") == (model.Segment(kind=model.SegmentKind.LITERAL, value=segment),)


@pytest.mark.parametrize("segment", ["a\u00a0b", "a\u2028b", "a\u0085b", "a\u200bb", "caf%C3%A9", "a b"])
def test_invisible_characters_and_escapes_are_still_refused(segment: str) -> None:
    with pytest.raises(routes.RouteKeyError):
        routes.parse_path(f"/{segment}")
