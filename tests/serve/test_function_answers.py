"""What a FUNCTION's answer may and may not make the gateway write, through `propylon serve`
(both HTTP servers) and a real loopback function server speaking the Lambda Runtime Interface
Emulator protocol, whose canned raw answers are chosen by the event (DESIGN.md sections 2.2,
2.3, 2.5, 8). A review proved each of these broken:

* A ``statusCode`` of 1xx was written as the final response, body and all, on a connection
  kept alive: the body (``HTTP/1.1 200 OK ... SMUGGLED``) became a forged second response the
  client (or a pooling front proxy) took as the answer to this request or the next one. A
  final status outside 200..599 is malformed -> 502; ``$context.responseOverride.status`` of
  1xx is a template that cannot be rendered -> 500 API_CONFIGURATION_ERROR; and neither writer
  writes any reply below 200 as a final response (a MOCK or integration response configured
  with one: 502).
* Answers that crashed the gateway (500 DEFAULT_5XX, a traceback) instead of being malformed:
  a statusCode of non-ASCII digits, a lone surrogate in the body, JSON nested too deep to
  parse; from an authorizer the last is 500 AUTHORIZER_CONFIGURATION_ERROR.
* A function's ``x-propylon-error-type`` header reached the client ("A backend's
  x-propylon-error-type never reaches the client").
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests import backends
from tests.serve.test_serve import Served

SMUGGLE = "HTTP/1.1 200 OK\\r\\nContent-Length: 8\\r\\n\\r\\nSMUGGLED"
DEEP = b"[" * 100_000 + b"]" * 100_000

ANSWERS: dict[str, bytes] = {
    "ok": b'{"statusCode":200,"body":"fine"}',
    "status-100": b'{"statusCode":100,"body":"' + SMUGGLE.encode() + b'"}',
    "status-100-text": b'{"statusCode":"100","body":"' + SMUGGLE.encode() + b'"}',
    "status-101": b'{"statusCode":101,"headers":{"Upgrade":"websocket","Connection":"Upgrade"},"body":"'
    + SMUGGLE.encode()
    + b'"}',
    "status-103": b'{"statusCode":103,"headers":{"Link":"</x>"},"body":"' + SMUGGLE.encode() + b'"}',
    "status-199": b'{"statusCode":199,"body":"' + SMUGGLE.encode() + b'"}',
    "status-superscript": '{"statusCode":"\u00b2\u00b2\u00b2","body":"x"}'.encode(),
    "status-arabic-digits": '{"statusCode":"\u0662\u0660\u0660","body":"x"}'.encode(),
    "body-surrogate": b'{"statusCode":200,"body":"a\\ud800b"}',
    "bare-surrogate": b'"a\\ud800b"',
    "deep": DEEP,
    "deep-in-body": b'{"statusCode":200,"body":' + DEEP + b"}",
    "error-type-header": b'{"statusCode":200,"headers":{"x-propylon-error-type":"THROTTLED",'
    b'"X-Request-Id":"forged"},"body":"x"}',
    "error-type-multi": b'{"statusCode":200,"multiValueHeaders":{"X-Propylon-Error-Type":["THROTTLED"],'
    b'"x-request-id":["forged","again"]},"body":"x"}',
}


def _respond(request: backends.Received) -> backends.Answer:
    assert request.path == "/2015-03-31/functions/function/invocations", request.path
    event = json.loads(request.body)
    if "authorizationToken" in event:  # the TOKEN authorizer
        token = event["authorizationToken"]
        body = DEEP if token == "deep" else json.dumps({"principalId": "u", "policyDocument": {}}).encode()
    elif "case" in event:  # a custom FUNCTION's event: the request body, passed through
        body = ANSWERS[event["case"]]
    else:
        body = ANSWERS[(event.get("path") or event.get("rawPath") or "").rsplit("/", 1)[-1]]
    return backends.Answer(body=body, headers=(("Content-Type", "application/json"),))


def _manifests(url: str) -> str:
    return f"""\
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: token, namespace: shop}}
spec:
  type: TOKEN
  identitySource: ["$request.header.Authorization"]
  function: {{url: "{url}", resultTtlSeconds: 0}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: fn, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /v1/{{case}}"
      integration: {{type: FUNCTION, url: "{url}", payloadFormatVersion: "1.0"}}
    - routeKey: "GET /v2/{{case}}"
      integration: {{type: FUNCTION, url: "{url}", payloadFormatVersion: "2.0"}}
    - routeKey: "GET /guarded"
      authorizer: token
      integration: {{type: MOCK, mock: {{statusCode: 200, body: guarded}}}}
    - routeKey: "POST /custom/override"
      integration:
        type: FUNCTION
        proxy: false
        url: "{url}"
        responses:
          - statusCode: 200
            responseTemplates:
              application/json: |-
                #set($context.responseOverride.status = $input.path('$.statusCode'))
                $input.path('$.body')
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: fn, basePath: /prod}}
---
# A 1xx written in the manifest is refused when compiled (this Api is left out, so its paths
# are 404 and nothing is smuggled; tests/compiler/testdata/integrations-interim-status.in.yaml).
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: interim, namespace: shop}}
spec:
  routes:
    - routeKey: "POST /custom/static"
      integration:
        type: FUNCTION
        proxy: false
        url: "{url}"
        responses: [{{statusCode: 100}}]
    - routeKey: "GET /mock-101"
      integration:
        type: MOCK
        mock: {{statusCode: 101, headers: {{Upgrade: websocket}}, body: "{SMUGGLE}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: interim, namespace: shop}}
spec: {{apiRef: interim, basePath: /interim}}
"""


@pytest.fixture(scope="module", params=["httptools", "aiohttp"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"function-answers-{request.param}")
    function = backends.Backend(_respond, protocol="HTTP/1.1")
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(_manifests(function.url))
    gateway: Served | None = None
    try:
        gateway = Served(folder, tmp, "--http-server", request.param)
        yield gateway
    finally:
        if gateway is not None:
            gateway.stop()
        function.close()


def _one_response(sock: socket.socket, quiet: float = 0.5) -> tuple[bytes, dict[str, list[str]], bytes, bytes]:
    """Read one response off ``sock`` (Content-Length framed), then whatever else arrives in
    the next ``quiet`` seconds: (status line, headers, body, what followed)."""
    data = b""
    deadline = time.monotonic() + 15
    sock.settimeout(0.5)
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        data += _recv(sock, data)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(headers.get("content-length", ["0"])[0])
    while len(rest) < length and time.monotonic() < deadline:
        rest += _recv(sock, rest)
    sock.settimeout(quiet)
    try:
        while more := sock.recv(65536):  # anything more, a second response above all
            rest += more
    except TimeoutError:
        pass
    return status_line.encode("latin-1"), headers, rest[:length], rest[length:]


def _recv(sock: socket.socket, so_far: bytes) -> bytes:
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return b""
    if not data:
        pytest.fail(f"the connection closed mid-response after {so_far!r}")
    return data


def _exchange(port: int, first: bytes) -> tuple[bytes, dict[str, list[str]], bytes, bytes, bytes]:
    """``first`` then a plain GET on one kept-alive connection: the first response (status line,
    headers, body), whatever followed it, and the status line and body of the second."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        status, headers, body, after = _one_response(sock)
        sock.sendall(b"GET /prod/v1/ok HTTP/1.1\r\nHost: x\r\n\r\n")
        second, _, second_body, _ = _one_response(sock, quiet=0.01)
    return status, headers, body, after, second + b" " + second_body


def _get(path: str, **headers: str) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def _post(path: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


INTEGRATION_FAILURE = (b"HTTP/1.1 502 Bad Gateway", "INTEGRATION_FAILURE", b'{"message": "Internal server error"}')
NOT_FOUND = (b"HTTP/1.1 404 Not Found", "RESOURCE_NOT_FOUND", b'{"message": "Not Found"}')
CONFIGURATION_ERROR = (
    b"HTTP/1.1 500 Internal Server Error",
    "API_CONFIGURATION_ERROR",
    b'{"message": "Internal server error"}',
)


ONE_XX: dict[str, tuple[bytes, tuple[bytes, str, bytes]]] = {
    **{
        f"{version}-{case}": (_get(f"/prod/{version}/{case}"), INTEGRATION_FAILURE)
        for version in ("v1", "v2")
        for case in ("status-100", "status-100-text", "status-101", "status-103", "status-199")
    },
    "override-100": (_post("/prod/custom/override", {"case": "status-100"}), CONFIGURATION_ERROR),
    "override-103": (_post("/prod/custom/override", {"case": "status-103"}), CONFIGURATION_ERROR),
    "integration-response-100": (_post("/interim/custom/static", {"case": "ok"}), NOT_FOUND),
    "mock-101": (_get("/interim/mock-101"), NOT_FOUND),
}


@pytest.mark.parametrize("case", list(ONE_XX))
def test_a_1xx_answer_is_never_written_as_the_final_response(served: Served, case: str) -> None:
    request_bytes, expected = ONE_XX[case]
    status, headers, body, after, second = _exchange(served.port, request_bytes)
    assert (status, headers.get("x-propylon-error-type"), body) == (expected[0], [expected[1]], expected[2])
    assert after == b"", f"a second response followed the first: {after!r}"
    # The connection stays in step: the next request gets its own answer.
    assert second == b"HTTP/1.1 200 OK fine"


def test_a_2xx_override_still_applies(served: Served) -> None:
    status, _, body, after, _ = _exchange(served.port, _post("/prod/custom/override", {"case": "ok"}))
    assert (status, body, after) == (b"HTTP/1.1 200 OK", b"fine", b"")


@pytest.mark.parametrize(
    "path",
    [
        "/prod/v1/status-superscript",
        "/prod/v2/status-superscript",
        "/prod/v1/status-arabic-digits",
        "/prod/v2/status-arabic-digits",
        "/prod/v1/body-surrogate",
        "/prod/v2/body-surrogate",
        "/prod/v2/bare-surrogate",
        "/prod/v1/deep",
        "/prod/v2/deep",
        "/prod/v2/deep-in-body",
    ],
)
def test_a_malformed_answer_is_502_never_a_crash(served: Served, path: str) -> None:
    logged = len(served.stderr())
    status, headers, body, after, second = _exchange(served.port, _get(path))
    assert (status, headers.get("x-propylon-error-type"), body) == (
        INTEGRATION_FAILURE[0],
        [INTEGRATION_FAILURE[1]],
        INTEGRATION_FAILURE[2],
    )
    assert after == b"" and second == b"HTTP/1.1 200 OK fine"
    assert "Traceback" not in served.stderr()[logged:]


def test_an_authorizer_answer_nested_too_deep_is_a_configuration_error(served: Served) -> None:
    logged = len(served.stderr())
    status, headers, body, _, _ = _exchange(served.port, _get("/prod/guarded", Authorization="deep"))
    assert (status, headers.get("x-propylon-error-type"), body) == (
        b"HTTP/1.1 500 Internal Server Error",
        ["AUTHORIZER_CONFIGURATION_ERROR"],
        b'{"message": "Internal Server Error"}',
    )
    assert "Traceback" not in served.stderr()[logged:]


@pytest.mark.parametrize("case", ["error-type-header", "error-type-multi"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_function_cannot_set_the_gateways_own_headers(served: Served, version: str, case: str) -> None:
    status, headers, body, _, _ = _exchange(served.port, _get(f"/prod/{version}/{case}"))
    assert (status, body) == (b"HTTP/1.1 200 OK", b"x")
    assert "x-propylon-error-type" not in headers, headers
    assert len(headers["x-request-id"]) == 1 and headers["x-request-id"][0] not in ("forged", "again"), headers
