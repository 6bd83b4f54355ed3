"""Mapped values and URL templates that an audit found mishandled, on the in-process gateway
against a real loopback backend, on both public servers and the internal (aiohttp) listener.

* A mapped header value outside latin-1 (a path parameter ``€``, a query ``%FF``, a JWT claim
  ``李``) crashed the request (500 DEFAULT_5XX, UnicodeEncodeError writing the upstream head);
  ``é`` went upstream as one latin-1 byte. Header text is bytes, so a value goes as its UTF-8
  bytes, undecodable request bytes as they were; responseParameters wrote such characters as
  ``?`` and now carry UTF-8 the same way. A value no header can carry (a lone surrogate) is
  dropped as an unsafe (CR/LF/NUL) one is.
* ``$stageVariables.env-x`` read a variable named ``env-x``: names stop at ``-``.
* Path parameters in an integration url's query were never filled in (``/x?id={id}``), and a
  ``service`` path with a query got the client's query after a second ``?``.
"""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from propylon_config import model
from propylon_proxy import mappings, upstream, upstream_pool
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)

A, T = model.MappingAction, model.MappingTarget


def m(action: model.MappingAction, target: model.MappingTarget, name: str, value: str) -> model.ParameterMapping:
    return model.ParameterMapping(action=action, target=target, name=name, value=value)


CTX = mappings.Context(
    headers=[("X-Raw", "caf\xc3\xa9")],  # client headers: bytes, one character per byte
    query="q=%FF&t=%E2%82%AC",
    path_params={"id": "€"},
    request_id="rid-1",
    stage="prod",
    source_ip="10.1.2.3",
    stage_variables={"env": "blue", "city": "Zürich"},
    claims={"name": "李", "bad": "a\ud800b"},
)


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def test_header_values_are_their_utf8_bytes():
    assert _bytes(mappings.header_value("$request.path.id", CTX)) == "€".encode()
    assert _bytes(mappings.header_value("$request.querystring.q", CTX)) == b"\xff"  # as sent
    assert _bytes(mappings.header_value("$request.querystring.t", CTX)) == "€".encode()
    assert _bytes(mappings.header_value("$context.authorizer.claims.name", CTX)) == "李".encode()
    assert _bytes(mappings.header_value("${stageVariables.city}-$stageVariables.city", CTX)) == "Zürich-Zürich".encode()
    assert _bytes(mappings.header_value("'façade'", CTX)) == "façade".encode()
    assert _bytes(mappings.header_value("über $request.header.X-Raw", CTX)) == "über café".encode()
    # A lone surrogate UTF-8 cannot carry: no value, as for CR/LF/NUL.
    assert mappings.header_value("$context.authorizer.claims.bad", CTX) is None


def test_a_header_value_read_into_a_query_or_path_is_decoded_once():
    result = mappings.apply_request(
        [
            m(A.OVERWRITE, T.QUERYSTRING, "raw", "$request.header.X-Raw"),
            m(A.OVERWRITE, T.QUERYSTRING, "q", "$request.querystring.q"),
            m(A.OVERWRITE, T.QUERYSTRING, "bad", "$context.authorizer.claims.bad"),
            m(A.OVERWRITE, T.PATH, "", "/h/$request.header.X-Raw"),
        ],
        CTX,
        headers=[],
        path="/p",
        query="bad=client",
    )
    assert result.query == "raw=caf%C3%A9&q=%FF"
    assert result.path == "/h/caf%C3%A9"


def test_an_uncarriable_value_drops_the_header_it_overwrites():
    result = mappings.apply_request(
        [m(A.OVERWRITE, T.HEADER, "X-User", "$context.authorizer.claims.bad")],
        CTX,
        headers=[("X-User", "admin")],
        path="/p",
        query="",
    )
    assert result.headers == []


def test_a_stage_variable_name_stops_at_a_dash():
    ctx = dataclasses.replace(CTX, stage_variables={"env": "blue"})
    assert mappings.evaluate("$stageVariables.env-x", ctx) == "blue-x"
    assert mappings.evaluate("pre-$stageVariables.env-$context.stage", ctx) == "pre-blue-prod"
    assert mappings.evaluate("/v/$stageVariables.env-x", ctx, for_path=True) == "/v/blue-x"


def _header(headers: list[list[str]], name: str) -> bytes | None:
    """A header the echo backend received, as the bytes it came in."""
    found = [v for n, v in headers if n.lower() == name.lower()]
    return found[0].encode("latin-1") if found else None


@pytest.mark.parametrize("listener", ["public", "internal"])
async def test_non_latin1_mapped_headers_go_as_utf8_both_ways(start_gateway, backend, listener):
    integration = c.http_proxy(
        backend.url + "/p",
        request_parameters=(
            m(A.OVERWRITE, T.HEADER, "X-Id", "$request.path.id"),
            m(A.OVERWRITE, T.HEADER, "X-Q", "$request.querystring.q"),
            m(A.OVERWRITE, T.HEADER, "X-Env", "$stageVariables.env-$context.stage"),
        ),
        response_parameters=(
            model.ResponseMappings(
                status_code="200",
                mappings=(
                    m(A.OVERWRITE, T.HEADER, "X-Echo", "id=$request.path.id"),
                    m(A.OVERWRITE, T.HEADER, "X-Literal", "'Zürich'"),
                ),
            ),
        ),
    )
    stage = c.stage([("GET /p/{id}", integration)], variables=(("env", "blue"),))
    gw = await start_gateway(c.config(stage))
    base = gw.addresses.urls()[listener] + "/prod/p/"
    async with aiohttp.ClientSession() as session:
        for raw, text in [("%E2%82%AC", "€"), ("caf%C3%A9", "café"), ("abc", "abc")]:
            url = base + raw + "?q=%FF"
            async with session.get(aiohttp.client.URL(url, encoded=True)) as r:
                assert r.status == 200, await r.text()
                assert "x-propylon-error-type" not in r.headers
                seen = await r.json()
                response = {k.decode("latin-1").lower(): v for k, v in r.raw_headers}
            assert _header(seen["headers"], "X-Id") == text.encode()
            assert _header(seen["headers"], "X-Q") == b"\xff"
            assert _header(seen["headers"], "X-Env") == b"blue-prod"
            assert response["x-echo"] == f"id={text}".encode()
            assert response["x-literal"] == "Zürich".encode()


async def test_path_parameters_fill_an_integration_urls_query(start_gateway, backend):
    routes = [
        ("GET /q/{id}", c.http_proxy(backend.url + "/x?id={id}&s=sv")),
        ("GET /g/{proxy+}", c.http_proxy(backend.url + "/g?p={proxy}")),
        ("GET /fixed", c.http_proxy(backend.url + "/f?a=1")),
    ]
    gw = await start_gateway(c.config(c.stage(routes)))
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        for path, target in [
            ("/q/42?z=1", "/x?id=42&s=sv&z=1"),
            ("/q/42", "/x?id=42&s=sv"),
            ("/q/a%26b%3Dc%20d", "/x?id=a%26b%3Dc%20d&s=sv"),  # data, not new parameters
            ("/q/%E2%82%AC", "/x?id=%E2%82%AC&s=sv"),
            ("/g/a/b%2Fc?z=1", "/g?p=a%2Fb%2Fc&z=1"),
            ("/fixed?z=1", "/f?a=1&z=1"),
        ]:
            async with session.get(aiohttp.client.URL(base + path, encoded=True)) as r:
                assert r.status == 200
                assert (await r.json())["target"] == target


async def test_a_service_path_with_a_query_joins_the_clients_with_an_ampersand(start_gateway, backend):
    service = model.ServiceTarget(namespace="shop", name="users", port=8080)
    endpoints = (
        model.ServiceEndpoints(
            key=service.key, addresses=(model.EndpointAddress(address="127.0.0.1", port=backend.port),)
        ),
    )
    templated = model.Integration(
        type=model.IntegrationType.HTTP_PROXY, service=service, path="/p/{id}?id={id}&fixed=1"
    )
    gw = await start_gateway(c.config(c.stage([("GET /p/{id}", templated)]), endpoints=endpoints))
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        for path, target in [("/p/42?z=1", "/p/42?id=42&fixed=1&z=1"), ("/p/a%20b", "/p/a%20b?id=a%20b&fixed=1")]:
            async with session.get(aiohttp.client.URL(base + path, encoded=True)) as r:
                assert r.status == 200
                assert (await r.json())["target"] == target


def test_a_head_that_is_not_bytes_is_refused_not_crashed_on():
    # The last line of defence: a header no mapping wrote as bytes is a 502, never a 500 crash.
    request = upstream.UpstreamRequest(
        method="GET", scheme="http", host="127.0.0.1", port=1, target="/", headers=[("X-Id", "€")], timeout=1.0
    )
    with pytest.raises(upstream.UpstreamRequestError):
        upstream_pool._encode_head(request, "")
