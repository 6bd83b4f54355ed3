"""FUNCTION routes through `propylon serve`, with real handler code behind `propylon.function`.

Every handler here is code written for AWS Lambda: plain handlers, Powertools' event-handler
resolvers and parser models, a FastAPI app behind Mangum, the users example. The gateway and
each function run as their own processes on loopback, as a user runs them.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest

from tests import backends

REPO = Path(__file__).resolve().parents[2]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPj/HwADAgH/mvKxWQAAAABJRU5ErkJggg=="
) + bytes(range(256))

SPECS = {
    "echo": "plain.echo",
    "validate": "plain.validate",
    "bare": "plain.bare",
    "text": "plain.text",
    "png": "plain.png",
    "boom": "plain.boom",
    "malformed": "plain.malformed",
    "slow": "plain.slow",
    "rest": "powertools_apps.rest_handler",
    "http": "powertools_apps.http_handler",
    "fastapi": "fastapi_app.handler",
}


def _manifests(ports: dict[str, int], not_json: int) -> str:
    def fn(name: str, version: str, extra: str = "") -> str:
        return f'{{type: FUNCTION, url: "http://127.0.0.1:{ports[name]}", payloadFormatVersion: "{version}"{extra}}}'

    routes = [
        ("ANY /v1/echo/{id}", fn("echo", "1.0")),
        ("ANY /v2/echo/{id}", fn("echo", "2.0")),
        ("ANY /v1/validate/{proxy+}", fn("validate", "1.0")),
        ("ANY /v2/validate/{proxy+}", fn("validate", "2.0")),
        ("GET /v2/bare", fn("bare", "2.0")),
        ("GET /v2/text", fn("text", "2.0")),
        ("POST /v1/png", fn("png", "1.0")),
        ("POST /v2/png", fn("png", "2.0")),
        ("GET /boom", fn("boom", "2.0")),
        ("GET /malformed", fn("malformed", "1.0")),
        ("GET /slow", fn("slow", "2.0", ", timeoutMillis: 300")),
        ("GET /notjson", f'{{type: FUNCTION, url: "http://127.0.0.1:{not_json}"}}'),
        ("GET /down", f'{{type: FUNCTION, url: "http://127.0.0.1:{harness.free_port()}"}}'),
        ("GET /svc/{id}", '{type: FUNCTION, service: {name: echo-fn, port: 80}, payloadFormatVersion: "1.0"}'),
        ("ANY /users", fn("users", "1.0")),
        ("ANY /users/{id}", fn("users", "1.0")),
    ]
    fn_routes = "\n".join(f'    - routeKey: "{key}"\n      integration: {spec}' for key, spec in routes)
    app_routes = [
        ("ANY /rest/{proxy+}", fn("rest", "1.0")),
        ("ANY /mangum1/{proxy+}", fn("fastapi", "1.0")),
    ]
    apps = "\n".join(f'    - routeKey: "{key}"\n      integration: {spec}' for key, spec in app_routes)
    return f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: fn, namespace: shop}}
spec:
  binaryMediaTypes: ["image/*"]
  routes:
{fn_routes}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: fn, basePath: /prod, variables: {{table: users-prod}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: apps, namespace: shop}}
spec:
  binaryMediaTypes: ["image/*"]
  routes:
{apps}
    - routeKey: "$default"
      integration: {fn("http", "2.0")}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: mangum, namespace: shop}}
spec:
  routes:
    - routeKey: "$default"
      integration: {fn("fastapi", "2.0")}
---
apiVersion: v1
kind: Service
metadata: {{name: echo-fn, namespace: shop}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-fn-1, namespace: shop, labels: {{kubernetes.io/service-name: echo-fn}}}}
addressType: IPv4
ports: [{{name: http, port: {ports["echo"]}}}]
endpoints:
  - addresses: [127.0.0.2]  # nothing listens there: refused, skipped, tried elsewhere
  - addresses: [127.0.0.1]
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: apps, namespace: shop}}
spec: {{apiRef: apps, basePath: /, hosts: [apps.example]}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: mangum, namespace: shop}}
spec: {{apiRef: mangum, basePath: /, hosts: [mangum.example]}}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("functions")
    processes = {name: harness.function(spec, tmp) for name, spec in SPECS.items()}
    processes["users"] = harness.function("app.lambda_handler", tmp, path=REPO / "examples/functions/users")
    not_json = backends.Backend(backends.fixed(b"<html>not json</html>"))
    folder = tmp / "manifests"
    folder.mkdir()
    served = None
    try:
        for process in processes.values():
            process.wait()
        ports = {name: p.port for name, p in processes.items()}
        (folder / "fn.yaml").write_text(_manifests(ports, not_json.port))
        served = harness.serve(folder, tmp).wait()
        yield served.port
    finally:
        if served is not None:
            served.stop()
        for process in processes.values():
            process.stop()
        not_json.close()


def _json(body: bytes) -> object:
    return json.loads(body)


def test_payload_1_event_has_the_aws_fields(gateway: int) -> None:
    headers = {"X-Repeat": "one", "Cookie": "a=1; b=2", "User-Agent": "tests/1"}
    status, got, body = harness.request(gateway, "GET", "/prod/v1/echo/a%20b?x=1&x=2&y=%C3%A9", headers=headers)
    assert status == 200, body
    event = _json(body)["event"]  # type: ignore[index]
    assert event["resource"] == "/v1/echo/{id}"
    assert event["path"] == "/v1/echo/a%20b"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["queryStringParameters"] == {"x": "2", "y": "é"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["é"]}
    assert event["headers"]["X-Repeat"] == "one"
    assert event["multiValueHeaders"]["Cookie"] == ["a=1; b=2"]
    assert event["stageVariables"] == {"table": "users-prod"}
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "prod" and context["path"] == "/prod/v1/echo/a%20b"
    assert context["resourcePath"] == "/v1/echo/{id}" and context["httpMethod"] == "GET"
    assert context["requestId"] == harness.header(got, "x-request-id")[0]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "tests/1"
    assert context["identity"]["cognitoIdentityId"] is None
    assert (context["accountId"], context["apiId"], context["protocol"]) == ("shop", "fn", "HTTP/1.1")
    assert isinstance(context["requestTimeEpoch"], int) and context["requestTime"].endswith(" +0000")
    assert "authorizer" not in context


def test_payload_2_event_has_the_aws_fields(gateway: int) -> None:
    headers = {"X-Repeat": "one", "Cookie": "a=1; b=2", "Content-Type": "application/json"}
    status, got, body = harness.request(gateway, "POST", "/prod/v2/echo/7?x=1&x=2", b'{"k": "v"}', headers)
    assert status == 200, body
    seen = _json(body)
    event = seen["event"]  # type: ignore[index]
    assert event["version"] == "2.0" and event["routeKey"] == "ANY /v2/echo/{id}"
    assert event["rawPath"] == "/prod/v2/echo/7" and event["rawQueryString"] == "x=1&x=2"
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"] and event["headers"]["x-repeat"] == "one"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["pathParameters"] == {"id": "7"}
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False
    http_context = event["requestContext"]["http"]
    assert http_context == {
        "method": "POST",
        "path": "/prod/v2/echo/7",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": event["headers"].get("user-agent", ""),
    }
    assert event["requestContext"]["timeEpoch"] > 0 and "multiValueHeaders" not in event
    context = seen["context"]  # type: ignore[index]
    assert context["function_name"] == "plain" and 0 < context["remaining"] <= 300_000
    # The structured answer: headers, multiValueHeaders and each cookie its own Set-Cookie.
    assert harness.header(got, "x-echo") == ["yes"]
    assert harness.header(got, "x-multi") == ["a", "b"]
    assert harness.header(got, "set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_a_repeated_header_is_comma_joined_in_2_and_listed_in_1(gateway: int) -> None:
    raw = "GET /prod/{} HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nX-Dup: b\r\nConnection: close\r\n\r\n"
    for path, check in (
        ("v2/echo/1", lambda e: e["headers"]["x-dup"] == "a,b"),
        ("v1/echo/1", lambda e: e["multiValueHeaders"]["X-Dup"] == ["a", "b"] and e["headers"]["X-Dup"] == "b"),
    ):
        with socket.create_connection(("127.0.0.1", gateway)) as sock:
            sock.sendall(raw.format(path).encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        event = json.loads(data.partition(b"\r\n\r\n")[2])["event"]
        assert check(event), event


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("GET", "/validate/a/b?x=1&x=2", None, {"Cookie": "c=1"}),
        ("POST", "/validate/json", b'{"a": [1, 2]}', {"Content-Type": "application/json"}),
        ("POST", "/validate/png", PNG, {"Content-Type": "image/png"}),
    ],
)
def test_events_validate_against_powertools_parser_models(
    gateway: int, version: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    status, _, answer = harness.request(gateway, method, f"/prod/{version}{path}", body, headers)
    assert status == 200, answer
    assert _json(answer)["model"] == ("APIGatewayProxyEventModel" if version == "v1" else "APIGatewayProxyEventV2Model")  # type: ignore[index]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_binary_body_round_trips_base64(gateway: int, version: str) -> None:
    status, got, body = harness.request(gateway, "POST", f"/prod/{version}/png", PNG, {"Content-Type": "image/png"})
    assert status == 200
    assert harness.header(got, "content-type") == ["image/png"]
    assert body == PNG


def test_a_2_0_answer_without_status_code_is_a_200_json_body(gateway: int) -> None:
    status, got, body = harness.request(gateway, "GET", "/prod/v2/bare")
    assert (status, _json(body)) == (200, {"hello": "/prod/v2/bare"})
    assert harness.header(got, "content-type") == ["application/json"]
    status, _, body = harness.request(gateway, "GET", "/prod/v2/text")
    assert (status, body) == (200, b"just text")


@pytest.mark.parametrize("path", ["/prod/boom", "/prod/malformed", "/prod/notjson", "/prod/down"])
def test_a_raise_a_malformed_or_non_json_answer_or_no_function_is_502(gateway: int, path: str) -> None:
    status, got, body = harness.request(gateway, "GET", path)
    assert (status, _json(body)) == (502, {"message": "Internal server error"})
    assert harness.header(got, "x-propylon-error-type") == ["INTEGRATION_FAILURE"]


def test_a_function_slower_than_timeout_millis_is_504(gateway: int) -> None:
    status, got, body = harness.request(gateway, "GET", "/prod/slow?s=3")
    assert (status, _json(body)) == (504, {"message": "Endpoint request timed out"})
    assert harness.header(got, "x-propylon-error-type") == ["INTEGRATION_TIMEOUT"]


def test_a_service_target_is_balanced_and_a_refusing_endpoint_skipped(gateway: int) -> None:
    for n in range(4):
        status, _, body = harness.request(gateway, "GET", f"/prod/svc/{n}")
        assert status == 200, body
        assert _json(body)["event"]["pathParameters"] == {"id": str(n)}  # type: ignore[index]


def test_the_users_example_answers_with_its_cors_headers(gateway: int) -> None:
    status, got, body = harness.request(gateway, "GET", "/prod/users/1")
    assert (status, _json(body)) == (200, {"id": "1", "name": "Ada"})
    assert harness.header(got, "access-control-allow-origin") == ["*"]
    new = json.dumps({"id": "2", "name": "Grace"}).encode()
    status, _, body = harness.request(gateway, "POST", "/prod/users", new, {"Content-Type": "application/json"})
    assert (status, _json(body)["message"]) == (201, "User created")  # type: ignore[index]
    status, _, body = harness.request(gateway, "GET", "/prod/users")
    assert status == 200 and {"id": "2", "name": "Grace"} in _json(body)  # type: ignore[operator]
    status, _, body = harness.request(gateway, "GET", "/prod/users/9")
    assert (status, _json(body)) == (404, {"error": "User not found"})


@pytest.mark.parametrize("prefix", ["/rest", ""], ids=["rest-1.0", "http-2.0"])
def test_powertools_resolvers_answer_behind_the_gateway(gateway: int, prefix: str) -> None:
    headers = {"Host": "apps.example", "X-Agent": "pt"}
    status, _, body = harness.request(gateway, "GET", f"{prefix}/todos/5?verbose=true", headers=headers)
    assert (status, _json(body)) == (200, {"id": 5, "verbose": True, "agent": "pt"}), body
    headers["Content-Type"] = "application/json"
    status, got, body = harness.request(gateway, "POST", f"{prefix}/todos", b'{"title": "write"}', headers)
    assert (status, _json(body)) == (201, {"title": "write", "done": False})
    assert any(c.startswith("last=write") for c in harness.header(got, "set-cookie"))
    status, _, body = harness.request(gateway, "POST", f"{prefix}/todos", b'{"done": 1}', headers)
    assert status == 422 and "title" in body.decode()
    status, _, body = harness.request(gateway, "GET", f"{prefix}/todos/abc", headers=headers)
    assert status == 422


@pytest.mark.parametrize(("prefix", "host"), [("/mangum1", "apps.example"), ("", "mangum.example")], ids=["1.0", "2.0"])
def test_fastapi_behind_mangum_answers_behind_the_gateway(gateway: int, prefix: str, host: str) -> None:
    headers = {"Host": host, "X-Agent": "mg"}
    status, _, body = harness.request(gateway, "GET", f"{prefix}/items/3?q=hi", headers=headers)
    assert (status, _json(body)) == (200, {"item_id": 3, "q": "hi", "agent": "mg"}), body
    headers["Content-Type"] = "application/json"
    status, got, body = harness.request(gateway, "POST", f"{prefix}/items", b'{"name": "pen", "price": 2}', headers)
    assert (status, _json(body)) == (201, {"name": "pen", "price": 2.0})
    assert any(c.startswith("last=pen") for c in harness.header(got, "set-cookie"))
    status, _, body = harness.request(gateway, "POST", f"{prefix}/items", b'{"name": "pen"}', headers)
    assert status == 422 and "price" in body.decode()
    headers["Content-Type"] = "image/png"
    status, got, body = harness.request(gateway, "POST", f"{prefix}/png", PNG, headers)
    assert (status, body) == (200, PNG)


def test_functions_get_the_trace_continued_or_a_new_one(gateway: int) -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for path in ("/prod/v1/echo/t", "/prod/v2/echo/t"):
        status, _, body = harness.request(gateway, "GET", path, headers={"traceparent": incoming})
        assert status == 200, body
        event = _json(body)["event"]  # type: ignore[index]
        sent = event["headers"]["traceparent"]
        version, trace_id, span_id, flags = sent.split("-")
        assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
        assert span_id != "00f067aa0ba902b7" and len(span_id) == 16  # the gateway's own span
        status, _, body = harness.request(gateway, "GET", path)
        started = _json(body)["event"]["headers"]["traceparent"]  # type: ignore[index]
        assert started.split("-")[1] not in ("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32)
