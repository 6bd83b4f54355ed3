"""requestParameters / responseParameters on HTTP_PROXY routes."""

from __future__ import annotations

import dataclasses

import aiohttp

from propylon_config import model
from propylon_proxy import mappings
from tests.proxy import conftest as c

A, T = model.MappingAction, model.MappingTarget


def m(action: model.MappingAction, target: model.MappingTarget, name: str, value: str) -> model.ParameterMapping:
    return model.ParameterMapping(action=action, target=target, name=name, value=value)


CTX = mappings.Context(
    headers=[("Host", "h"), ("X-User", "alice"), ("X-Multi", "a"), ("X-Multi", "b")],
    query="limit=10&tag=a%20b&tag=c",
    path_params={"id": "a/b", "rest": "x/%2F"},
    greedy=frozenset({"rest"}),
    request_id="rid-1",
    stage="prod",
    source_ip="10.1.2.3",
    stage_variables={"env": "live"},
)


def test_evaluate_expressions_and_literals():
    assert mappings.evaluate("'$request.header.X-User'", CTX) == "$request.header.X-User"
    assert mappings.evaluate("$request.header.x-user", CTX) == "alice"
    assert mappings.evaluate("$request.header.X-Multi", CTX) == "a, b"
    assert mappings.evaluate("$request.querystring.tag", CTX) == "a b"
    assert mappings.evaluate("user=$request.path.id;env=$stageVariables.env", CTX) == "user=a/b;env=live"
    assert mappings.evaluate("${stageVariables.env}/$context.stage", CTX) == "live/prod"
    assert mappings.evaluate("$context.requestId $context.identity.sourceIp", CTX) == "rid-1 10.1.2.3"
    assert mappings.evaluate("/v2/$request.path.id/$request.path.rest", CTX, for_path=True) == "/v2/a%2Fb/x/%2F"


def test_request_mappings_edit_headers_query_and_path():
    result = mappings.apply_request(
        [
            m(A.OVERWRITE, T.HEADER, "X-User", "'bob'"),
            m(A.APPEND, T.HEADER, "X-Multi", "'c'"),
            m(A.REMOVE, T.HEADER, "X-Gone", ""),
            m(A.OVERWRITE, T.HEADER, "X-Forwarded-For", "'1.2.3.4'"),  # the gateway's own: untouchable
            m(A.OVERWRITE, T.HEADER, "X-Inject", "$request.querystring.evil"),
            m(A.OVERWRITE, T.QUERYSTRING, "limit", "'5'"),
            m(A.APPEND, T.QUERYSTRING, "by", "$request.header.X-User"),
            m(A.REMOVE, T.QUERYSTRING, "tag", ""),
            m(A.OVERWRITE, T.PATH, "", "/v2/users/$request.path.id"),
        ],
        dataclasses.replace(CTX, query=CTX.query + "&evil=a%0d%0aSet-Cookie:%20x"),
        headers=[("X-User", "alice"), ("X-Multi", "a"), ("X-Gone", "1"), ("X-Forwarded-For", "9.9.9.9")],
        path="/old",
        query="limit=10&tag=a%20b&tag=c&keep=%2F",
    )
    headers = dict(result.headers)
    assert headers["X-User"] == "bob"
    assert headers["X-Multi"] == "a, c"
    assert "X-Gone" not in headers
    assert headers["X-Forwarded-For"] == "9.9.9.9"
    assert "X-Inject" not in headers
    assert result.query == "keep=%2F&limit=5&by=alice"
    assert result.path == "/v2/users/a%2Fb"


def test_a_value_that_cannot_be_written_never_leaves_the_clients_header_in_its_place():
    # An identity header the backend trusts, overwritten from a value with CR/LF/NUL (a display
    # name with a newline, say): the mapped value is dropped and the client's copy goes too.
    unsafe = dataclasses.replace(CTX, query="name=Mallory%0AM.")
    result = mappings.apply_request(
        [
            m(A.OVERWRITE, T.HEADER, "X-User", "user:$request.querystring.name"),
            m(A.OVERWRITE, T.HEADER, "X-Nul", "'a\x00b'"),
            m(A.APPEND, T.HEADER, "X-Multi", "$request.querystring.name"),
        ],
        unsafe,
        headers=[("X-User", "admin"), ("x_user", "admin"), ("X-Nul", "client"), ("X-Multi", "a")],
        path="/p",
        query="",
    )
    assert result.headers == [("X-Multi", "a")]  # an append of nothing keeps what was there
    blocks = [model.ResponseMappings(status_code="200", mappings=(m(A.OVERWRITE, T.HEADER, "X-Who", "'a\rb'"),))]
    assert mappings.apply_response(blocks, 200, CTX, [("X-Who", "backend")]) == []


def test_response_mappings_by_status():
    blocks = [
        model.ResponseMappings(status_code="404", mappings=(m(A.OVERWRITE, T.HEADER, "X-Reason", "'not-found'"),)),
        model.ResponseMappings(status_code="200", mappings=(m(A.REMOVE, T.HEADER, "Server", ""),)),
    ]
    assert mappings.apply_response(blocks, 404, CTX, [("Server", "b")]) == [("Server", "b"), ("X-Reason", "not-found")]
    assert mappings.apply_response(blocks, 200, CTX, [("Server", "b")]) == []


async def test_mappings_over_the_wire(start_gateway, backend):
    integration = c.http_proxy(
        backend.url + "/users/{id}",
        request_parameters=(
            m(A.OVERWRITE, T.HEADER, "X-Stage", "$context.stage"),
            m(A.APPEND, T.QUERYSTRING, "rid", "$context.requestId"),
        ),
        response_parameters=(
            model.ResponseMappings(status_code="200", mappings=(m(A.OVERWRITE, T.HEADER, "X-Mapped", "'yes'"),)),
        ),
    )
    gw = await start_gateway(c.config(c.stage([("GET /users/{id}", integration)])))
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.addresses.urls()["public"] + "/prod/users/7?a=1") as r,
    ):
        assert r.status == 200
        assert r.headers["X-Mapped"] == "yes"
        seen = await r.json()
        request_id = r.headers["x-request-id"]
    assert seen["target"] == f"/users/7?a=1&rid={request_id}"
    assert ["X-Stage", "prod"] in seen["headers"]
