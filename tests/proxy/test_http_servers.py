"""Connection-level HTTP/1.1 behaviour, the same on both public-listener servers (aiohttp's and
fast_server's): pipelining, HTTP/1.0, chunked uploads and 100-continue. Raw sockets, a real echo
backend. (WebSocket upgrades on the httptools server, handed over to aiohttp: tests/wsapi run with
PROPYLON_HTTP_SERVER=httptools.)"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)


@pytest.fixture
async def proxied(start_gateway, backend):
    snapshot = c.config(c.stage([("ANY /echo/{proxy+}", c.http_proxy(backend.url + "/{proxy}"))]))
    gw = await start_gateway(snapshot)
    return gw, backend


def _responses(data: bytes) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Split a stream of Content-Length-framed responses into (status line, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        out.append((lines[0].encode(), headers, rest[:length]))
        data = rest[length:]
    return out


async def test_pipelined_requests_are_answered_in_order(proxied):
    gw, _backend = proxied
    raw = (
        b"GET /prod/echo/one HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        b"POST /prod/echo/two HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /prod/echo/three HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
    )
    response, closed = await c.raw_request(gw.addresses.port, raw)
    answers = _responses(response.data)
    assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert [json.loads(body)["target"] for _, _, body in answers] == ["/one", "/two", "/three"]
    assert json.loads(answers[1][2])["body"] == "hello"
    assert len({headers["x-request-id"] for _, headers, _ in answers}) == 3
    assert answers[2][1]["connection"] == "close" and closed


async def test_http_1_0_is_answered_in_1_0_and_closed_unless_kept_alive(proxied):
    gw, _backend = proxied
    response, closed = await c.raw_request(gw.addresses.port, b"GET /prod/echo/a HTTP/1.0\r\n\r\n")
    assert response.data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert json.loads(response.body)["target"] == "/a" and closed

    kept = b"GET /prod/echo/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    response, closed = await c.raw_request(gw.addresses.port, kept + b"GET /prod/echo/c HTTP/1.0\r\n\r\n")
    answers = _responses(response.data)
    assert [json.loads(body)["target"] for _, _, body in answers] == ["/b", "/c"]
    assert answers[0][1]["connection"] == "keep-alive" and closed


async def test_a_chunked_upload_reaches_the_backend_whole(proxied):
    gw, backend = proxied
    pieces = [b"x" * 70000, b"y" * 5, b"z" * 300000]
    body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    head = b"POST /prod/echo/up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    response, _closed = await c.raw_request(gw.addresses.port, head + body, timeout=10)
    assert response.status == 200
    assert backend.received[-1]["body"] == b"".join(pieces).decode()


async def test_expect_100_continue_is_answered_before_the_body_is_read(proxied):
    gw, _backend = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.addresses.port)
    try:
        writer.write(
            b"PUT /prod/echo/e HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"data")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert json.loads(await reader.readexactly(length))["body"] == "data"
    finally:
        writer.close()

