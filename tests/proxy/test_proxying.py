"""HTTP_PROXY as a client sees it: what reaches the backend, what comes back, and failures."""

from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import pytest
from aiohttp import web

from propylon_config import model
from tests.proxy import conftest as c


def _headers(record: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in record["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


@pytest.fixture
async def gw(start_gateway, backend):
    snapshot = c.config(
        c.stage(
            [
                ("ANY /echo/{proxy+}", c.http_proxy(backend.url + "/up/{proxy}")),
                ("GET /users/{id}", c.http_proxy(backend.url + "/v1/users/{id}?fixed=1")),
            ],
            hosts=("api.example.com", "*.wild.example.com"),
        )
    )
    return await start_gateway(snapshot)


async def test_request_is_forwarded_with_gateway_headers(gw, backend):
    raw = (
        b"PATCH /prod/echo/a/b?x=1&x=2&y=%20 HTTP/1.1\r\n"
        b"Host: API.example.com:8443\r\n"
        b"Content-Length: 4\r\n"
        b"Connection: keep-alive, X-Drop-Me, X-Forwarded-For\r\n"
        b"X-Drop-Me: gone\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"TE: trailers\r\n"
        b"Upgrade: h2c\r\n"
        b"Proxy-Authorization: Basic abc\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\n"
        b"X_Forwarded_For: 7.7.7.7\r\n"
        b"X-Forwarded-Host: evil.example\r\n"
        b"X-Real-IP: 6.6.6.6\r\n"
        b"Forwarded: for=6.6.6.6\r\n"
        b"X-Request-Id: client-chosen\r\n"
        b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        b"X-Custom: kept\r\n"
        b"X-Custom: twice\r\n"
        b"\r\nbody"
    )
    response, _ = await c.raw_request(gw.addresses.port, raw, timeout=2)
    assert response.status == 200
    seen = response.json()
    headers = _headers(seen)
    assert seen["method"] == "PATCH"
    assert seen["target"] == "/up/a/b?x=1&x=2&y=%20"
    assert seen["body"] == "body"
    for gone in (
        "x-drop-me",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "x-real-ip",
        "forwarded",
        "x_forwarded_for",
    ):
        assert gone not in headers, gone
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == ["API.example.com:8443"]
    assert headers["x-custom"] == ["kept", "twice"]
    assert headers["host"] == [f"127.0.0.1:{backend.port}"]
    request_id = response.headers["x-request-id"]
    assert headers["x-request-id"] == [request_id]
    assert request_id != "client-chosen"
    trace = headers["traceparent"][0]
    assert re.fullmatch(r"00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01", trace)
    assert not trace.endswith("b7ad6b7169203331-01")


async def test_response_comes_back_without_hop_by_hop_headers(gw):
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.addresses.urls()["public"] + "/prod/users/42", headers={"Host": "x.wild.example.com"}) as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["target"] == "/v1/users/42?fixed=1"
        assert resp.headers["X-Backend"] == "echo"
        assert resp.headers["Set-Cookie"] == "a=1"
        assert "X-Secret-Hop" not in resp.headers
        assert "Keep-Alive" not in resp.headers
        assert resp.headers["x-request-id"]


async def test_untraced_request_starts_a_trace(gw, backend):
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            gw.addresses.urls()["public"] + "/prod/users/1",
            headers={"Host": "api.example.com", "traceparent": "garbage"},
        ) as resp,
    ):
        assert resp.status == 200
    trace = _headers(backend.received[-1])["traceparent"][0]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", trace)


async def test_host_mismatch_is_404(gw, backend):
    async with aiohttp.ClientSession() as session:
        for host in ("other.example.com", "a.b.wild.example.com", "wild.example.com"):
            async with session.get(gw.addresses.urls()["public"] + "/prod/users/1", headers={"Host": host}) as resp:
                assert resp.status == 404, host
    assert backend.received == []


async def test_trusted_proxy_keeps_forwarding_chain(start_gateway, backend):
    snapshot = c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))]))
    gw = await start_gateway(snapshot, trusted="127.0.0.0/8")
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.addresses.urls()["public"] + "/prod/x", headers={"X-Forwarded-For": "203.0.113.9"}) as resp,
    ):
        assert resp.status == 200
    assert _headers(backend.received[-1])["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]


async def test_request_body_streams_both_ways(gw):
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value

    async def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(
            gw.addresses.urls()["public"] + "/prod/echo/up",
            data=chunks(),
            headers={"Host": "api.example.com", "Content-Encoding": "gzip"},
        ) as resp,
    ):
        assert resp.status == 200
        seen = await resp.json()
    assert seen["body"].encode("latin-1") == payload
    # Forwarded as sent: never inflated, the coding header intact.
    assert _headers(seen)["content-encoding"] == ["gzip"]


_HELD: list[socket.socket] = []


def _closed_port() -> int:
    """A loopback port that refuses connections for the rest of the run.

    The socket stays bound but never listens: connecting is refused, and no other server (a
    later test's backend, another process on a busy machine) can take the port. Releasing it
    at once, as this helper used to, let a neighbour bind it, so a "dead" endpoint sometimes
    answered 404 (issue 8, item 10).
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])


async def test_connection_refused_is_502(start_gateway):
    port = _closed_port()
    gw = await start_gateway(c.config(c.stage([("GET /down", c.http_proxy(f"http://127.0.0.1:{port}/"))])))
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["public"] + "/prod/down") as resp:
        assert resp.status == 502
        assert await resp.json() == {"message": "Internal server error"}
        assert resp.headers["x-propylon-error-type"] == "INTEGRATION_FAILURE"
        assert resp.headers["x-request-id"]


async def test_slow_backend_is_504(start_gateway, backend):
    snapshot = c.config(c.stage([("GET /slow", c.http_proxy(backend.url + "/slow", timeout_ms=200))]))
    gw = await start_gateway(snapshot)
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["public"] + "/prod/slow") as resp:
        assert resp.status == 504
        assert await resp.json() == {"message": "Endpoint request timed out"}
        assert resp.headers["x-propylon-error-type"] == "INTEGRATION_TIMEOUT"


async def test_service_target_round_robin_skips_failed_endpoint(start_gateway):
    backends = [c.Backend(), c.Backend()]
    for b in backends:
        await b.start()
    dead = _closed_port()
    try:
        service = model.ServiceTarget(namespace="shop", name="users", port=8080)
        endpoints = (
            model.ServiceEndpoints(
                key=service.key,
                addresses=(
                    model.EndpointAddress(address="127.0.0.1", port=backends[0].port),
                    model.EndpointAddress(address="127.0.0.1", port=dead),
                    model.EndpointAddress(address="127.0.0.1", port=backends[1].port),
                    model.EndpointAddress(address="127.0.0.1", port=backends[1].port + 1, ready=False),
                ),
            ),
        )
        integration = model.Integration(type=model.IntegrationType.HTTP_PROXY, service=service)
        templated = model.Integration(type=model.IntegrationType.HTTP_PROXY, service=service, path="/v2/items/{id}")
        snapshot = c.config(c.stage([("GET /items/{id}", templated), ("$default", integration)]), endpoints=endpoints)
        gw = await start_gateway(snapshot)
        async with aiohttp.ClientSession() as session:
            for _ in range(6):
                async with session.get(gw.addresses.urls()["public"] + "/prod/any/where?z=1") as resp:
                    assert resp.status == 200  # the dead endpoint is retried away, never seen
            async with session.get(gw.addresses.urls()["public"] + "/prod/items/a%2Fb") as resp:
                assert resp.status == 200
                assert (await resp.json())["target"] == "/v2/items/a%2Fb"
        targets = [r["target"] for b in backends for r in b.received]
        assert targets.count("/any/where?z=1") == 6
        assert len(backends[0].received) >= 2 and len(backends[1].received) >= 2
    finally:
        for b in backends:
            await b.stop()


async def test_non_idempotent_request_is_not_retried(start_gateway):
    port = _closed_port()
    gw = await start_gateway(c.config(c.stage([("POST /down", c.http_proxy(f"http://127.0.0.1:{port}/"))])))
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.addresses.urls()["public"] + "/prod/down", data=b"x") as resp,
    ):
        assert resp.status == 502


async def test_inflight_request_finishes_on_its_plan_after_swap(start_gateway, backend):
    old = c.config(c.stage([("GET /slow", c.http_proxy(backend.url + "/slow"))]))
    new = c.config(c.stage([("GET /fast", c.mock())]))
    gw = await start_gateway(old)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.ensure_future(session.get(gw.addresses.urls()["public"] + "/prod/slow"))
        await asyncio.sleep(0.3)
        gw.swap(new)
        async with session.get(gw.addresses.urls()["public"] + "/prod/fast") as resp:
            assert resp.status == 200
        async with session.get(gw.addresses.urls()["public"] + "/prod/slow") as resp:
            assert resp.status == 404
        resp = await asyncio.wait_for(slow, 10)
        assert resp.status == 200
        resp.release()


async def test_expect_continue_is_answered_by_the_gateway(gw, backend):
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.addresses.port)
    try:
        writer.write(
            b"PUT /prod/echo/up HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)
        assert rest.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    assert backend.received[-1]["body"] == "hello"
    assert "expect" not in _headers(backend.received[-1])


async def test_expect_continue_refused_when_too_large(gw, backend):
    response, closed = await c.raw_request(
        gw.addresses.port,
        b"PUT /prod/echo/up HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 20000000\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )
    assert response.status == 413 and closed
    assert b"100 Continue" not in response.data
    assert backend.received == []


async def test_stage_gateway_response_override(start_gateway):
    override = model.GatewayResponse(
        status_code=502, headers=(("X-Why", "down"),), body='{"message":"backend is down, sorry"}'
    )
    port = _closed_port()
    snapshot = c.config(
        c.stage(
            [("GET /down", c.http_proxy(f"http://127.0.0.1:{port}/"))],
            gateway_responses=(("INTEGRATION_FAILURE", override),),
        )
    )
    gw = await start_gateway(snapshot)
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["public"] + "/prod/down") as resp:
        assert resp.status == 502
        assert await resp.json() == {"message": "backend is down, sorry"}
        assert resp.headers["X-Why"] == "down"
        assert resp.headers["x-propylon-error-type"] == "INTEGRATION_FAILURE"
        assert resp.headers["x-request-id"]


async def test_backend_dying_mid_response_cuts_the_client_connection(start_gateway, backend):
    gw = await start_gateway(c.config(c.stage([("GET /die", c.http_proxy(backend.url + "/die"))])))
    response, closed = await c.raw_request(gw.addresses.port, b"GET /prod/die HTTP/1.1\r\nHost: a\r\n\r\n", timeout=5)
    assert response.status == 200
    assert closed
    # The client can tell: fewer bytes than the Content-Length it was promised.
    assert int(response.headers["content-length"]) == 1000
    assert len(response.body) < 1000


async def test_head_and_no_content_responses_carry_no_body(start_gateway, backend):
    """A body after HEAD or 204 would be read as the next response: pipelining must stay in step."""
    snapshot = c.config(
        c.stage(
            [
                ("ANY /mock", c.mock(body='{"a":1}')),
                ("GET /empty", c.mock(status=204, body="ignored")),
                ("ANY /big", c.http_proxy(backend.url + "/big?n=10")),
            ]
        )
    )
    gw = await start_gateway(snapshot)
    pipelined = (
        b"HEAD /prod/mock HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /prod/empty HTTP/1.1\r\nHost: a\r\n\r\n"
        b"HEAD /prod/big HTTP/1.1\r\nHost: a\r\n\r\n"
        b"HEAD /prod/nope HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /prod/mock HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    response, closed = await c.raw_request(gw.addresses.port, pipelined, timeout=5)
    assert closed
    heads = response.data.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200", b"204", b"200", b"404", b"200"]
    for head in heads[:-1]:
        assert head.endswith(b"\r\n\r\n"), head
    assert heads[-1].endswith(b'\r\n\r\n{"a":1}')


async def test_non_ascii_response_header_bytes_pass_unchanged(start_gateway):
    async def handler(request):
        response = web.StreamResponse(headers={"X-Name": "Zoë"})  # written as UTF-8 by aiohttp
        response.content_length = 0
        await response.prepare(request)
        await response.write_eof()
        return response

    runner = web.ServerRunner(web.Server(handler))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        gw = await start_gateway(c.config(c.stage([("GET /n", c.http_proxy(f"http://127.0.0.1:{port}/"))])))
        response, _ = await c.raw_request(
            gw.addresses.port, b"GET /prod/n HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert response.status == 200
        assert b"\r\nX-Name: Zo\xc3\xab\r\n" in response.data
    finally:
        await runner.cleanup()


async def test_non_ascii_request_header_bytes_pass_unchanged(start_gateway, backend):
    # Header values cross the upstream interface as latin-1 text (one char per byte); both
    # clients must put the same bytes back on the wire.
    gw = await start_gateway(c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))])))
    response, _ = await c.raw_request(
        gw.addresses.port, b"GET /prod/x HTTP/1.1\r\nHost: a\r\nX-Name: Zo\xc3\xab\r\nConnection: close\r\n\r\n"
    )
    assert response.status == 200
    assert ["X-Name", "Zo\xc3\xab"] in backend.received[-1]["headers"]  # latin-1 view of the raw bytes
