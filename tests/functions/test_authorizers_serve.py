"""REQUEST and TOKEN authorizers through `propylon serve`, their handlers run as real processes.

Every authorizer here is Python handler code run by the ``propylon.function`` runtime on
loopback; the seed's HS256 TOKEN authorizer (examples/token-authorizer) runs unchanged. The
gateway, the functions and an echo backend are separate processes or servers, as a user runs them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import jwt
import pytest

from tests import backends

REPO = Path(__file__).resolve().parents[2]
SECRET = "the-seed-authorizer-secret-0123456789"
USAGE_KEY = "usage-key-from-the-authorizer-0123"


def _echo_or_html(request: backends.Received) -> backends.Answer:
    """GET: the request echoed as JSON; POST: a function service answering HTML."""
    return backends.echo_json(request) if request.method == "GET" else backends.Answer(body=b"<html>not json</html>")


def _manifests(ports: dict[str, int], echo: int) -> str:
    def auth(name: str, kind: str, port: int, extra: str = "", source: str = "$request.header.X-User") -> str:
        return (
            f"apiVersion: propylon.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: {name}, namespace: shop}}\n"
            f'spec:\n  type: {kind}\n  identitySource: ["{source}"]\n'
            f'  function: {{url: "http://127.0.0.1:{port}"{extra}}}\n---\n'
        )

    mock = "{type: MOCK, mock: {statusCode: 200, body: ok}}"
    fn1 = f'{{type: FUNCTION, url: "http://127.0.0.1:{ports["echo"]}", payloadFormatVersion: "1.0"}}'
    fn2 = f'{{type: FUNCTION, url: "http://127.0.0.1:{ports["echo"]}", payloadFormatVersion: "2.0"}}'
    proxy = (
        f'{{type: HTTP_PROXY, url: "http://127.0.0.1:{echo}/seen", requestParameters: '
        '{"overwrite:header.X-Seen-User": "$context.authorizer.user", '
        '"overwrite:header.X-Seen-Principal": "$context.authorizer.principalId"}}'
    )
    return (
        auth("req1", "REQUEST", ports["req"], ', payloadFormatVersion: "1.0", resultTtlSeconds: 0')
        + auth("req2", "REQUEST", ports["req"], ', payloadFormatVersion: "2.0", resultTtlSeconds: 0')
        + auth(
            "simple",
            "REQUEST",
            ports["simple"],
            ', payloadFormatVersion: "2.0", enableSimpleResponses: true, resultTtlSeconds: 0',
        )
        + auth("cached", "REQUEST", ports["cached"], ", resultTtlSeconds: 300")
        + auth("slow", "REQUEST", ports["req"], ", resultTtlSeconds: 0, timeoutMillis: 300")
        + auth("down", "REQUEST", harness.free_port(), ", resultTtlSeconds: 0")
        + auth("notjson", "REQUEST", echo, ", resultTtlSeconds: 0")
        + auth(
            "token",
            "TOKEN",
            ports["seed"],
            ', resultTtlSeconds: 0, identityValidationExpression: "^Bearer [-0-9A-Za-z_.]+$"',
            source="$request.header.Authorization",
        )
        + f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: guarded, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /v1/{{id}}", authorizer: req1, integration: {proxy}}}
    - {{routeKey: "GET /fn1/{{id}}", authorizer: req1, integration: {fn1}}}
    - {{routeKey: "GET /fn2/{{id}}", authorizer: req2, integration: {fn2}}}
    - {{routeKey: "GET /simple", authorizer: simple, integration: {fn2}}}
    - {{routeKey: "GET /cached", authorizer: cached, integration: {mock}}}
    - {{routeKey: "GET /slow", authorizer: slow, integration: {mock}}}
    - {{routeKey: "GET /down", authorizer: down, integration: {mock}}}
    - {{routeKey: "GET /notjson", authorizer: notjson, integration: {mock}}}
    - {{routeKey: "GET /token", authorizer: token, integration: {fn1}}}
    - {{routeKey: "DELETE /token", authorizer: token, integration: {mock}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: guarded, basePath: /prod}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: keyed, namespace: shop}}
spec:
  apiKeySource: AUTHORIZER
  routes:
    - {{routeKey: "GET /keyed", authorizer: req1, apiKeyRequired: true, integration: {mock}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: keyed, namespace: shop}}
spec: {{apiRef: keyed, basePath: /k}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: gold, namespace: shop}}
spec:
  stages: [{{stageRef: keyed}}]
  apiKeySelector: {{matchLabels: {{propylon.dev/usage-plan: gold}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gold-key, namespace: shop, labels: {{propylon.dev/usage-plan: gold}}}}
stringData: {{value: "{USAGE_KEY}"}}
"""
    )


class World:
    def __init__(self, port: int, functions: dict[str, harness.Process]) -> None:
        self.port, self.functions = port, functions

    def get(self, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], Any]:
        status, raw_headers, body = harness.request(self.port, method, path, headers=headers)
        found = {n.lower(): v for n, v in raw_headers}
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode(errors="replace")
        return status, found, parsed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authorizers")
    echo = backends.Backend(_echo_or_html)
    old = os.environ.get("JWT_SECRET")
    os.environ["JWT_SECRET"] = SECRET  # the seed reads it at import, as on Lambda
    functions: dict[str, harness.Process] = {}
    gateway: harness.Process | None = None
    try:
        functions["req"] = harness.function("authorizers.request", tmp)
        functions["cached"] = harness.function("authorizers.request", tmp)
        functions["simple"] = harness.function("authorizers.simple", tmp)
        functions["echo"] = harness.function("plain.echo", tmp)
        functions["seed"] = harness.function(
            "lambda_authorizer.lambda_handler", tmp, path=REPO / "examples" / "token-authorizer"
        )
        for process in functions.values():
            process.wait()
        folder = tmp / "manifests"
        folder.mkdir()
        ports = {name: p.port for name, p in functions.items()}
        (folder / "all.yaml").write_text(_manifests(ports, echo.port))
        gateway = harness.serve(folder, tmp).wait()
        yield World(gateway.port, functions)
    finally:
        if gateway is not None:
            gateway.stop()
        for process in functions.values():
            process.stop()
        echo.close()
        if old is None:
            os.environ.pop("JWT_SECRET", None)
        else:
            os.environ["JWT_SECRET"] = old


def _refused(world: World, path: str, status: int, kind: str, **headers: str) -> None:
    got, found, body = world.get(path, **headers)
    message = {401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error"}[status]
    assert (got, found.get("x-propylon-error-type"), body) == (status, kind, {"message": message})


def test_an_allow_policy_passes_and_its_context_reaches_mappings(world: World) -> None:
    status, _, body = world.get("/prod/v1/7", **{"X-User": "alice"})
    assert status == 200
    assert body["headers"]["X-Seen-User"] == "alice"
    assert body["headers"]["X-Seen-Principal"] == "alice"


def test_request_1_0_event_and_the_functions_authorizer_fields(world: World) -> None:
    status, _, body = world.get("/prod/fn1/7?q=1", **{"X-User": "echo"})
    assert status == 200
    sent = json.loads(body["event"]["requestContext"]["authorizer"]["event"].replace("'", '"'))
    for field in ("type", "methodArn", "resource", "path", "httpMethod", "headers", "multiValueHeaders",
                  "queryStringParameters", "multiValueQueryStringParameters", "pathParameters",
                  "stageVariables", "requestContext"):
        assert field in sent
    assert "body" not in sent
    _, _, body = world.get("/prod/fn1/7", **{"X-User": "alice"})
    authorizer = body["event"]["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "alice" and authorizer["user"] == "alice"


def test_request_2_0_event_carries_route_arn_and_identity_source(world: World) -> None:
    status, _, body = world.get("/prod/fn2/7", **{"X-User": "echo"})
    assert status == 200
    sent = json.loads(body["event"]["requestContext"]["authorizer"]["lambda"]["event"].replace("'", '"'))
    for field in ("version", "type", "routeArn", "identitySource", "routeKey", "rawPath", "rawQueryString",
                  "headers", "requestContext", "pathParameters"):
        assert field in sent
    _, _, body = world.get("/prod/fn2/7", **{"X-User": "alice"})
    assert body["event"]["requestContext"]["authorizer"]["lambda"]["user"] == "alice"


def test_missing_identity_source_is_401_without_invoking(world: World) -> None:
    # The authorizer counts its invocations in its context: the refused requests made none.
    _, _, a = world.get("/prod/fn1/1", **{"X-User": "alice"})
    _refused(world, "/prod/fn1/1", 401, "UNAUTHORIZED")
    _refused(world, "/prod/fn1/1", 401, "UNAUTHORIZED", **{"X-User": ""})
    _, _, b = world.get("/prod/fn1/1", **{"X-User": "alice"})
    calls = [seen["event"]["requestContext"]["authorizer"]["calls"] for seen in (a, b)]
    assert calls[1] == calls[0] + 1


def test_policy_outcomes(world: World) -> None:
    _refused(world, "/prod/v1/1", 401, "UNAUTHORIZED", **{"X-User": "nobody"})  # raise Exception("Unauthorized")
    _refused(world, "/prod/v1/1", 403, "ACCESS_DENIED", **{"X-User": "mallory"})  # explicit Deny wins
    _refused(world, "/prod/v1/1", 403, "ACCESS_DENIED", **{"X-User": "elsewhere"})  # Allow not covering
    _refused(world, "/prod/v1/1", 500, "AUTHORIZER_CONFIGURATION_ERROR", **{"X-User": "empty"})
    _refused(world, "/prod/notjson", 500, "AUTHORIZER_CONFIGURATION_ERROR", **{"X-User": "alice"})
    _refused(world, "/prod/v1/1", 500, "AUTHORIZER_FAILURE", **{"X-User": "crash"})
    _refused(world, "/prod/slow", 500, "AUTHORIZER_FAILURE", **{"X-User": "slow"})
    _refused(world, "/prod/down", 500, "AUTHORIZER_FAILURE", **{"X-User": "alice"})


def test_simple_responses(world: World) -> None:
    status, _, body = world.get("/prod/simple", **{"X-User": "alice"})
    assert status == 200 and body["event"]["requestContext"]["authorizer"]["lambda"]["user"] == "alice"
    _refused(world, "/prod/simple", 403, "ACCESS_DENIED", **{"X-User": "bob"})


def test_the_seed_token_authorizer_runs_unchanged(world: World) -> None:
    token = jwt.encode({"sub": "user-42", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    status, _, body = world.get("/prod/token", Authorization=f"Bearer {token}")
    assert status == 200
    authorizer = body["event"]["requestContext"]["authorizer"]
    assert (authorizer["principalId"], authorizer["userId"]) == ("user-42", "user-42")
    # Its policy allows exactly the methodArn it was given: DESIGN.md section 8's form.
    wrong = jwt.encode({"sub": "user-42"}, "another-secret-entirely-0123456789", algorithm="HS256")
    _refused(world, "/prod/token", 401, "UNAUTHORIZED", Authorization=f"Bearer {wrong}")
    expired = jwt.encode({"sub": "u", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    _refused(world, "/prod/token", 401, "UNAUTHORIZED", Authorization=f"Bearer {expired}")
    _refused(world, "/prod/token", 401, "UNAUTHORIZED", Authorization="Basic abc")  # identityValidationExpression
    _refused(world, "/prod/token", 401, "UNAUTHORIZED")


def test_usage_identifier_key_is_the_api_key_for_authorizer_source(world: World) -> None:
    status, _, _ = world.get("/k/keyed", **{"X-User": "alice", "X-Usage-Key": USAGE_KEY})
    assert status == 200
    _refused(world, "/k/keyed", 403, "INVALID_API_KEY", **{"X-User": "alice", "X-Usage-Key": "wrong-key-0123456789"})
    _refused(world, "/k/keyed", 403, "INVALID_API_KEY", **{"X-User": "alice"})


def test_cached_answers_survive_an_outage(world: World) -> None:
    # Last in the module: it stops the cached authorizer's process.
    assert world.get("/prod/cached", **{"X-User": "alice"})[0] == 200
    _refused(world, "/prod/cached", 403, "ACCESS_DENIED", **{"X-User": "mallory"})
    world.functions["cached"].stop()
    assert world.get("/prod/cached", **{"X-User": "alice"})[0] == 200  # served from the cache
    _refused(world, "/prod/cached", 403, "ACCESS_DENIED", **{"X-User": "mallory"})
    _refused(world, "/prod/cached", 500, "AUTHORIZER_FAILURE", **{"X-User": "carol"})  # never cached
