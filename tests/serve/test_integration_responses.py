"""Issue 12, integration responses on HTTP integrations, through `propylon serve` against a
loopback backend that answers the status the request names and records what it received
(DESIGN.md sections 2.5, 3; the custom FUNCTION half is tests/functions/test_custom_functions_serve.py)."""

from __future__ import annotations

import gzip
import http.client
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from tests.serve.test_serve import Served

API = r"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: shop, namespace: shop}
spec:
  routes:
    - routeKey: "GET /r/{code}"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/status/{code}"
        responseParameters:
          "400": {"overwrite:header.X-Final": "'four hundred'"}
        responses:
          - selectionPattern: "4\\d\\d"
            statusCode: 400
            headers: {X-Kind: client}
            responseTemplates:
              application/json: '{"error": $input.json(''$.message''), "was": $input.path(''$.status'')}'
              application/xml: '<error>$input.path(''$.message'')</error>'
          - selectionPattern: "503"
            statusCode: 502
            headers: {X-Kind: unavailable}
          - selectionPattern: "20"
            statusCode: 418
          - statusCode: 200
            headers: {Cache-Control: "max-age=60"}
            responseTemplates: {application/json: '{"count": $input.path(''$.items'').size()}'}
    - routeKey: "GET /no-default/{code}"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/status/{code}"
        responses: [{selectionPattern: "404", statusCode: 410}]
    - routeKey: "GET /override/{code}"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/status/{code}"
        responses:
          - statusCode: 200
            responseTemplates:
              application/json: |-
                #set($body = $input.path('$'))
                #if($body.status == 202)
                #set($context.responseOverride.status = 299)
                #set($context.responseOverride.header.Location = "/later/$body.status")
                #end
                {"status": $body.status}
    - routeKey: "GET /broken"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/text"
        responses: [{statusCode: 200, responseTemplates: {application/json: '$input.path(''$.x'')'}}]
    - routeKey: "GET /zipped"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/gzip"
        responses: [{statusCode: 200, responseTemplates: {application/json: '{"n": $input.path(''$.items'').size()}'}}]
    - routeKey: "GET /typed"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/status/200"
        responses:
          - statusCode: 200
            headers: {Content-Type: text/html, X-Kind: typed}
            responseTemplates: {application/json: '{"a": 1}'}
    - routeKey: "POST /templated"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/status/201"
        requestTemplates: {application/json: '{"v": $input.json(''$.v'')}'}
        responses:
          - selectionPattern: "201"
            statusCode: 200
            responseTemplates: {application/json: '{"saved": $input.path(''$.got.v'')}'}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: shop}
"""


class _Backend(http.server.ThreadingHTTPServer):
    """``/status/NNN`` answers NNN with a JSON body (and echoes a JSON request body back);
    ``/text`` answers text; ``/gzip`` a gzip-encoded JSON body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.received.append((self.command, self.path, body))
                coding = None
                if self.path.startswith("/status/"):
                    status = int(self.path.rsplit("/", 1)[1])
                    answer = {"message": f"backend said {status}", "status": status, "items": [1, 2]}
                    if body:
                        answer["got"] = json.loads(body)
                    data, kind = json.dumps(answer).encode(), "application/json"
                elif self.path == "/gzip":
                    status, kind, coding = 200, "application/json", "gzip"
                    data = gzip.compress(json.dumps({"items": [1, 2, 3]}).encode())
                else:
                    status, data, kind = 200, b"plain text", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("X-Backend", "yes")
                if coding:
                    self.send_header("Content-Encoding", coding)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, _Backend]]:
    tmp = tmp_path_factory.mktemp("responses")
    backend = _Backend()
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.replace("PORT", str(backend.server_address[1])))
    gateway: Served | None = None
    try:
        gateway = Served(folder, tmp)
        yield gateway, backend
    finally:
        if gateway is not None:
            gateway.stop()
        backend.shutdown()
        backend.server_close()


def _get(
    gateway: Served, path: str, method: str = "GET", body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_the_default_response_renders_its_template(served: tuple[Served, _Backend]) -> None:
    status, headers, body = _get(served[0], "/prod/r/200")
    assert status == 200
    assert json.loads(body) == {"count": 2}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "max-age=60"  # the response's static header
    assert headers["content-length"] == str(len(body))
    assert "x-kind" not in headers


def test_a_rendered_body_has_one_content_type_its_templates(served: tuple[Served, _Backend]) -> None:
    # DESIGN.md 2.5: the response Content-Type is the template's type; a static Content-Type
    # on the same response was sent as a second, contradicting header.
    connection = http.client.HTTPConnection("127.0.0.1", served[0].port, timeout=10)
    try:
        connection.request("GET", "/prod/typed")
        response = connection.getresponse()
        body = response.read()
        types = [v for k, v in response.getheaders() if k.lower() == "content-type"]
        kind = response.getheader("X-Kind")
    finally:
        connection.close()
    assert (response.status, body, types, kind) == (200, b'{"a": 1}', ["application/json"], "typed")


def test_a_status_no_pattern_matches_gets_the_default(served: tuple[Served, _Backend]) -> None:
    # "20" would match the start of "201" (and "4\d\d" is no match for 500): a pattern must
    # match the whole status, so both get the default response.
    for code in ("201", "500"):
        status, headers, body = _get(served[0], f"/prod/r/{code}")
        assert (status, json.loads(body)) == (200, {"count": 2})
        assert headers["cache-control"] == "max-age=60"


@pytest.mark.parametrize(
    ("accept", "content_type", "expected"),
    [
        (None, "application/json", b'{"error": "backend said 404", "was": 404}'),
        ("application/xml", "application/xml", b"<error>backend said 404</error>"),
        ("text/html, application/xml;q=0.9", "application/xml", b"<error>backend said 404</error>"),
        ("application/xml;q=0.5, application/json", "application/json", b'{"error": "backend said 404", "was": 404}'),
        ("text/csv", "application/json", b'{"error": "backend said 404", "was": 404}'),
    ],
)
def test_the_template_is_chosen_by_accept(
    served: tuple[Served, _Backend], accept: str | None, content_type: str, expected: bytes
) -> None:
    headers_sent = {"Accept": accept} if accept else {}
    status, headers, body = _get(served[0], "/prod/r/404", **headers_sent)
    assert status == 400
    assert body == expected
    assert headers["content-type"] == content_type
    assert headers["x-kind"] == "client"
    # responseParameters apply afterwards, keyed by the final status (400, not the backend's 404).
    assert headers["x-final"] == "four hundred"


def test_a_response_without_template_passes_the_body_through(served: tuple[Served, _Backend]) -> None:
    status, headers, body = _get(served[0], "/prod/r/503")
    assert status == 502
    assert json.loads(body) == {"message": "backend said 503", "status": 503, "items": [1, 2]}
    assert headers["x-kind"] == "unavailable"
    assert headers["x-backend"] == "yes"
    assert "x-propylon-error-type" not in headers  # the backend's answer, not a gateway error


def test_no_match_and_no_default_returns_the_backend_answer(served: tuple[Served, _Backend]) -> None:
    status, headers, body = _get(served[0], "/prod/no-default/500")
    assert status == 500
    assert json.loads(body)["message"] == "backend said 500"
    assert "x-propylon-error-type" not in headers
    status, _, body = _get(served[0], "/prod/no-default/404")
    assert status == 410
    assert json.loads(body)["status"] == 404


def test_response_override_sets_status_and_headers(served: tuple[Served, _Backend]) -> None:
    status, headers, body = _get(served[0], "/prod/override/202")
    assert status == 299
    assert headers["location"] == "/later/202"
    assert json.loads(body) == {"status": 202}
    status, headers, body = _get(served[0], "/prod/override/200")
    assert status == 200
    assert "location" not in headers
    assert json.loads(body) == {"status": 200}


def test_a_template_that_fails_at_run_time_is_500(served: tuple[Served, _Backend]) -> None:
    status, headers, body = _get(served[0], "/prod/broken")
    assert status == 500
    assert json.loads(body) == {"message": "Internal server error"}
    assert headers["x-propylon-error-type"] == "API_CONFIGURATION_ERROR"


def test_a_compressed_backend_body_is_decoded_for_the_template(served: tuple[Served, _Backend]) -> None:
    status, headers, body = _get(served[0], "/prod/zipped", **{"Accept-Encoding": "gzip"})
    assert (status, json.loads(body)) == (200, {"n": 3})
    assert "content-encoding" not in headers


def test_request_and_response_templates_together(served: tuple[Served, _Backend]) -> None:
    gateway, backend = served
    before = len(backend.received)
    status, _, body = _get(
        gateway, "/prod/templated", "POST", b'{"v": [7], "dropped": 1}', **{"Content-Type": "application/json"}
    )
    assert (status, json.loads(body)) == (200, {"saved": [7]})
    assert backend.received[before:] == [("POST", "/status/201", b'{"v": [7]}')]


def test_a_failing_request_template_sends_nothing_upstream(served: tuple[Served, _Backend]) -> None:
    gateway, backend = served
    before = len(backend.received)
    status, headers, _ = _get(gateway, "/prod/templated", "POST", b"not json", **{"Content-Type": "application/json"})
    assert status == 500
    assert headers["x-propylon-error-type"] == "API_CONFIGURATION_ERROR"
    assert len(backend.received) == before
