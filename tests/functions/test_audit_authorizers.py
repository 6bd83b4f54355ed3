"""Authorizer functions and the function client against the contract, through `propylon serve`.

The auditor's findings, each as a user meets it: a REQUEST authorizer's cached answer is reused
only for the very identity values it was given (a repeated header or query parameter cannot
carry an answer over to another tenant); ``$request.path.*`` and ``$context.*`` identity sources
reach the function (and what cannot be found is refused by the compiler); a policy without a
principal, or (payload 1.0) with a context value that is not a string, number or boolean, is a
500 AUTHORIZER_CONFIGURATION_ERROR while Powertools' helpers keep working; an empty invocation
answer is a 502 (FUNCTION) or a 500 AUTHORIZER_CONFIGURATION_ERROR (authorizer), never
``200 null``; and a WebSocket $connect authorizer gets AWS's WebSocket authorizer event.

The authorizers are handler code (tests/functions/handlers/audit_authorizers.py) run by
``propylon.function``; each records the events it was given, so the tests see what the function
was shown and how often it was asked.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
from websockets.asyncio.client import connect

from propylon_compiler import authorizers as compiled_authorizers
from tests import backends
from tests.cli.test_validate import propylon

EVENTS_ENV = "AUDIT_AUTHORIZER_EVENTS"


def _authorizer(name: str, kind: str, port: int, sources: list[str], extra: str = "") -> str:
    return (
        f"apiVersion: propylon.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: {name}, namespace: audit}}\n"
        f"spec:\n  type: {kind}\n  identitySource: {json.dumps(sources)}\n"
        f'  function: {{url: "http://127.0.0.1:{port}"{extra}}}\n---\n'
    )


def _manifests(ports: dict[str, int]) -> str:
    mock = "{type: MOCK, mock: {statusCode: 200, body: ok}}"
    echo2 = f'{{type: FUNCTION, url: "http://127.0.0.1:{ports["echo"]}", payloadFormatVersion: "2.0"}}'
    empty1 = f'{{type: FUNCTION, url: "http://127.0.0.1:{ports["empty"]}", payloadFormatVersion: "1.0"}}'
    empty2 = f'{{type: FUNCTION, url: "http://127.0.0.1:{ports["empty"]}", payloadFormatVersion: "2.0"}}'
    nothing2 = f'{{type: FUNCTION, url: "http://127.0.0.1:{ports["nothing"]}", payloadFormatVersion: "2.0"}}'
    all_context = [f"$context.{name}" for name in compiled_authorizers.CONTEXT_SOURCES]
    return (
        _authorizer(
            "tenant",
            "REQUEST",
            ports["tenant"],
            ["$request.header.X-Tenant", "$request.header.X-Case"],
            ", resultTtlSeconds: 300",
        )
        + _authorizer(
            "tenantq",
            "REQUEST",
            ports["tenant"],
            ["$request.querystring.tenant", "$request.header.X-Case"],
            ", resultTtlSeconds: 300",
        )
        + _authorizer(
            "tenant2",
            "REQUEST",
            ports["tenant_v2"],
            ["$request.header.X-Tenant", "$request.header.X-Case"],
            ', payloadFormatVersion: "2.0", enableSimpleResponses: true, resultTtlSeconds: 300',
        )
        + _authorizer("bypath", "REQUEST", ports["by_path"], ["$request.path.id"], ", resultTtlSeconds: 300")
        + _authorizer(
            "byip",
            "REQUEST",
            ports["anyone"],
            ["$context.identity.sourceIp", "$request.header.X-Case"],
            ", resultTtlSeconds: 0",
        )
        # At most 8 identity sources an Authorizer: the names in two halves.
        + _authorizer(
            "allcontext1",
            "REQUEST",
            ports["anyone"],
            all_context[:7],
            ', payloadFormatVersion: "2.0", resultTtlSeconds: 0',
        )
        + _authorizer(
            "allcontext2",
            "REQUEST",
            ports["anyone"],
            all_context[7:],
            ', payloadFormatVersion: "2.0", resultTtlSeconds: 0',
        )
        + _authorizer("answers", "TOKEN", ports["answers"], ["$request.header.X-Answer"], ", resultTtlSeconds: 0")
        + _authorizer(
            "answers2",
            "REQUEST",
            ports["answers"],
            ["$request.header.X-Answer"],
            ', payloadFormatVersion: "2.0", resultTtlSeconds: 0',
        )
        + _authorizer(
            "simple2",
            "REQUEST",
            ports["simple_powertools"],
            ["$request.header.X-User"],
            ', payloadFormatVersion: "2.0", enableSimpleResponses: true, resultTtlSeconds: 0',
        )
        + _authorizer("emptyauth", "REQUEST", ports["empty"], ["$request.header.X-User"], ", resultTtlSeconds: 0")
        + _authorizer("wsauth", "REQUEST", ports["connect"], ["$request.querystring.token"], ", resultTtlSeconds: 0")
        + f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: guarded, namespace: audit}}
spec:
  routes:
    - {{routeKey: "GET /h", authorizer: tenant, integration: {mock}}}
    - {{routeKey: "GET /q", authorizer: tenantq, integration: {mock}}}
    - {{routeKey: "GET /h2", authorizer: tenant2, integration: {mock}}}
    - {{routeKey: "GET /p/{{id}}", authorizer: bypath, integration: {mock}}}
    - {{routeKey: "GET /ip", authorizer: byip, integration: {mock}}}
    - {{routeKey: "GET /ctx/{{id}}", authorizer: allcontext1, integration: {mock}}}
    - {{routeKey: "GET /ctx2/{{id}}", authorizer: allcontext2, integration: {mock}}}
    - {{routeKey: "GET /answers", authorizer: answers, integration: {mock}}}
    - {{routeKey: "GET /answers2", authorizer: answers2, integration: {echo2}}}
    - {{routeKey: "GET /simple2", authorizer: simple2, integration: {echo2}}}
    - {{routeKey: "GET /emptyauth", authorizer: emptyauth, integration: {mock}}}
    - {{routeKey: "GET /empty1", integration: {empty1}}}
    - {{routeKey: "GET /empty2", integration: {empty2}}}
    - {{routeKey: "GET /nothing2", integration: {nothing2}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: audit}}
spec: {{apiRef: guarded, basePath: /prod}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: audit}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  routes:
    - {{routeKey: "$connect", authorizer: wsauth, integration: {{type: MOCK, mock: {{statusCode: 200}}}}}}
    - {{routeKey: "$default", integration: {{type: MOCK, mock: {{statusCode: 200}}}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: audit}}
spec: {{apiRef: chat, basePath: /ws}}
"""
    )


class World:
    def __init__(self, port: int, events: Path) -> None:
        self.port, self.events = port, events

    def get(self, path: str, *headers: tuple[str, str]) -> tuple[int, dict[str, str], Any]:
        """GET ``path`` with ``headers`` as given: a name may repeat."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest("GET", path, skip_host=any(n.lower() == "host" for n, _ in headers))
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            raw = response.read()
            found = {n.lower(): v for n, v in response.getheaders()}
        finally:
            connection.close()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return response.status, found, body

    def seen(self, handler: str) -> list[dict[str, Any]]:
        """The events ``handler`` was invoked with so far, oldest first."""
        if not self.events.exists():
            return []
        lines = [json.loads(line) for line in self.events.read_text().splitlines() if line]
        return [line["event"] for line in lines if line["handler"] == handler]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("audit-authorizers")
    events = tmp / "events.jsonl"
    old = os.environ.get(EVENTS_ENV)
    os.environ[EVENTS_ENV] = str(events)  # the handlers' processes inherit it
    empty = backends.Backend(backends.fixed(b""))  # 200 with an empty body to every invocation: not JSON
    functions: dict[str, harness.Process] = {}
    gateway: harness.Process | None = None
    try:
        for name in ("tenant", "tenant_v2", "by_path", "anyone", "answers", "simple_powertools", "connect", "nothing"):
            functions[name] = harness.function(f"audit_authorizers.{name}", tmp)
        functions["echo"] = harness.function("plain.echo", tmp)
        for process in functions.values():
            process.wait()
        folder = tmp / "manifests"
        folder.mkdir()
        ports = {name: p.port for name, p in functions.items()} | {"empty": empty.port}
        (folder / "all.yaml").write_text(_manifests(ports))
        gateway = harness.serve(folder, tmp).wait()
        yield World(gateway.port, events)
    finally:
        if gateway is not None:
            gateway.stop()
        for process in functions.values():
            process.stop()
        empty.close()
        if old is None:
            os.environ.pop(EVENTS_ENV, None)
        else:
            os.environ[EVENTS_ENV] = old


def _refused(answer: tuple[int, dict[str, str], Any], status: int, kind: str) -> None:
    message = {401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error"}[status]
    got, headers, body = answer
    assert (got, headers.get("x-propylon-error-type"), body) == (status, kind, {"message": message})


# 1. The cache key is every value the function could have read.


def test_a_repeated_header_answer_is_not_reused_for_another_tenant(world: World) -> None:
    case = ("X-Case", "header-1.0")
    before = len(world.seen("tenant"))
    # The 1.0 event's headers carry the last value (A): allowed, and cached for [B, A] only.
    assert world.get("/prod/h", ("X-Tenant", "B"), ("X-Tenant", "A"), case)[0] == 200
    # Tenant B alone was never judged: the function is asked, and denies it.
    _refused(world.get("/prod/h", ("X-Tenant", "B"), case), 403, "ACCESS_DENIED")
    assert len(world.seen("tenant")) == before + 2
    # The same values again are served from the cache, without asking.
    assert world.get("/prod/h", ("X-Tenant", "B"), ("X-Tenant", "A"), case)[0] == 200
    assert len(world.seen("tenant")) == before + 2


def test_a_repeated_query_parameter_answer_is_not_reused_for_another_tenant(world: World) -> None:
    case = ("X-Case", "query-1.0")
    assert world.get("/prod/q?tenant=B&tenant=A", case)[0] == 200
    _refused(world.get("/prod/q?tenant=B", case), 403, "ACCESS_DENIED")
    shown = world.seen("tenant")[-1]
    assert shown["queryStringParameters"] == {"tenant": "B"}


def test_a_2_0_answer_for_comma_joined_values_is_not_reused_for_one_of_them(world: World) -> None:
    case = ("X-Case", "header-2.0")
    assert world.get("/prod/h2", ("X-Tenant", "B"), ("X-Tenant", "A"), case)[0] == 200
    # The 2.0 event shows the values comma-joined, in its headers and its identitySource alike.
    shown = world.seen("tenant_v2")[-1]
    assert shown["headers"]["x-tenant"] == "B,A"
    assert shown["identitySource"] == ["B,A", "header-2.0"]
    _refused(world.get("/prod/h2", ("X-Tenant", "B"), case), 403, "ACCESS_DENIED")
    assert world.seen("tenant_v2")[-1]["identitySource"] == ["B", "header-2.0"]


# 2. $request.path.* and $context.* identity sources.


def test_a_path_parameter_identity_source_reaches_the_function_and_keys_its_cache(world: World) -> None:
    before = len(world.seen("by_path"))
    assert world.get("/prod/p/one")[0] == 200
    _refused(world.get("/prod/p/deny"), 403, "ACCESS_DENIED")
    assert world.get("/prod/p/one")[0] == 200  # cached for "one"
    assert [e["pathParameters"] for e in world.seen("by_path")[before:]] == [{"id": "one"}, {"id": "deny"}]


def test_a_context_identity_source_reaches_the_function(world: World) -> None:
    before = len(world.seen("anyone"))
    assert world.get("/prod/ip", ("X-Case", "ip"))[0] == 200
    assert len(world.seen("anyone")) == before + 1
    _refused(world.get("/prod/ip"), 401, "UNAUTHORIZED")  # the header source is still required


def test_every_context_variable_the_compiler_accepts_is_found(world: World) -> None:
    # A source that could not be found would make every request a 401 without asking.
    headers = (("User-Agent", "audit-agent/1"), ("Host", "api.example:8080"))
    values: list[str] = []
    for path in ("/prod/ctx/7", "/prod/ctx2/7"):
        assert world.get(path, *headers)[0] == 200
        values += world.seen("anyone")[-1]["identitySource"]
    shown = dict(zip(compiled_authorizers.CONTEXT_SOURCES, values, strict=True))
    assert shown["identity.sourceIp"] == "127.0.0.1"
    assert shown["identity.userAgent"] == "audit-agent/1"
    assert shown["httpMethod"] == "GET"
    assert (shown["stage"], shown["apiId"], shown["accountId"]) == ("prod", "guarded", "audit")
    assert (shown["domainName"], shown["domainPrefix"]) == ("api.example", "api")
    assert shown["resourcePath"] == "/ctx2/{id}"
    assert shown["path"] == "/prod/ctx2/7"
    assert shown["requestTimeEpoch"].isdigit()


@pytest.mark.parametrize("source", ["$request.body.user", "$context.authorizer.principalId", "$context.nope"])
def test_the_compiler_refuses_identity_sources_that_cannot_be_found(tmp_path: Path, source: str) -> None:
    (tmp_path / "a.yaml").write_text(_authorizer("bad", "REQUEST", 1, [source]))
    done = propylon("validate", "-f", str(tmp_path))
    assert done.returncode != 0
    assert "spec.identitySource[0]" in done.stdout + done.stderr
    assert source in done.stdout + done.stderr


# 3. Malformed policies.


@pytest.mark.parametrize("answer", ["noprincipal", "intprincipal", "nestedctx", "listctx", "nullctx"])
def test_a_malformed_1_0_policy_is_a_configuration_error(world: World, answer: str) -> None:
    _refused(world.get("/prod/answers", ("X-Answer", answer)), 500, "AUTHORIZER_CONFIGURATION_ERROR")


@pytest.mark.parametrize("answer", ["ok", "powertools"])
def test_well_formed_1_0_policies_pass(world: World, answer: str) -> None:
    assert world.get("/prod/answers", ("X-Answer", answer))[0] == 200


def test_a_2_0_policy_needs_a_principal_but_may_carry_any_json_context(world: World) -> None:
    _refused(world.get("/prod/answers2", ("X-Answer", "noprincipal")), 500, "AUTHORIZER_CONFIGURATION_ERROR")
    status, _, body = world.get("/prod/answers2", ("X-Answer", "nestedctx"))
    assert status == 200
    assert body["event"]["requestContext"]["authorizer"]["lambda"]["o"] == {"a": 1}


def test_a_powertools_simple_response_still_passes(world: World) -> None:
    status, _, body = world.get("/prod/simple2", ("X-User", "alice"))
    assert status == 200
    assert body["event"]["requestContext"]["authorizer"]["lambda"] == {"m": {"a": 1}, "l": ["x"]}


# 4. An empty invocation answer.


@pytest.mark.parametrize("path", ["/prod/empty1", "/prod/empty2"])
def test_an_empty_function_answer_is_a_502(world: World, path: str) -> None:
    status, headers, body = world.get(path)
    assert (status, headers.get("x-propylon-error-type"), body) == (
        502,
        "INTEGRATION_FAILURE",
        {"message": "Internal server error"},
    )


def test_a_handler_returning_none_is_still_200_null(world: World) -> None:
    status, _, body = world.get("/prod/nothing2")
    assert (status, body) == (200, None)


def test_an_empty_authorizer_answer_is_a_configuration_error(world: World) -> None:
    _refused(world.get("/prod/emptyauth", ("X-User", "alice")), 500, "AUTHORIZER_CONFIGURATION_ERROR")


# 5. The WebSocket $connect authorizer event.


async def _open_and_close(world: World, token: str) -> None:
    async with connect(f"ws://127.0.0.1:{world.port}/ws?token={token}", user_agent_header="audit-ws/1"):
        pass


def test_the_websocket_connect_authorizer_gets_the_aws_websocket_event(world: World) -> None:
    asyncio.run(_open_and_close(world, "abc"))  # refused (403) unless the handler allowed the methodArn it got
    event = world.seen("connect")[-1]
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:propylon:audit:chat/live/$connect"
    assert event["queryStringParameters"] == {"token": "abc"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"]}
    for rest_only in ("resource", "path", "httpMethod", "pathParameters"):
        assert rest_only not in event  # the path of a WebSocket API is fixed
    context = event["requestContext"]
    assert (context["routeKey"], context["eventType"], context["messageDirection"]) == ("$connect", "CONNECT", "IN")
    assert (context["stage"], context["apiId"]) == ("live", "chat")
    assert isinstance(context["connectedAt"], int) and isinstance(context["requestTimeEpoch"], int)
    assert context["identity"] == {"userAgent": "audit-ws/1", "sourceIp": "127.0.0.1"}
    assert context["requestId"] == context["extendedRequestId"]
    for rest_only in ("httpMethod", "resourcePath", "resourceId", "path"):
        assert rest_only not in context
    # The id the connection keeps, drawn before the checks: one per connection.
    assert isinstance(context["connectionId"], str) and context["connectionId"]

    asyncio.run(_open_and_close(world, "other"))
    assert world.seen("connect")[-1]["requestContext"]["connectionId"] != context["connectionId"]
