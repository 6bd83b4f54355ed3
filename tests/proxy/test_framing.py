"""Malformed and oversized requests over raw sockets: section-3 JSON, connection closed,
and nothing ever reaches the backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from propylon_proxy import settings
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)


@pytest.fixture
async def proxied(start_gateway, backend):
    snapshot = c.config(c.stage([("ANY /echo/{proxy+}", c.http_proxy(backend.url + "/{proxy}"))]))
    gw = await start_gateway(snapshot, listener=settings.ListenerSettings(header_timeout=0.5, body_stall_timeout=0.5))
    return gw, backend


def _head(extra: str, method: str = "POST", target: str = "/prod/echo/x") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n".encode()


FRAMING_CASES = {
    "content-length-and-chunked": _head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
    "two-content-lengths": _head("Content-Length: 5\r\nContent-Length: 5\r\n") + b"hello",
    "two-different-content-lengths": _head("Content-Length: 5\r\nContent-Length: 6\r\n") + b"hello!",
    "unknown-transfer-coding": _head("Transfer-Encoding: gzip\r\n") + b"abc",
    "chunked-not-last": _head("Transfer-Encoding: chunked, gzip\r\n") + b"0\r\n\r\n",
    "obs-fold": _head("X-Folded: a\r\n  b\r\n"),
    "bare-cr-in-header": _head("X-Bad: a\rb\r\n"),
    "malformed-chunk-size": _head("Transfer-Encoding: chunked\r\n") + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-without-crlf": _head("Transfer-Encoding: chunked\r\n") + b"5\r\nhelloXX0\r\n\r\n",
    "negative-content-length": _head("Content-Length: -5\r\n"),
    "space-before-colon": _head("Content-Length : 5\r\n") + b"hello",
    "not-http": b"GARBAGE\r\n\r\n",
    "absolute-form": _head("", method="GET", target="http://evil.test/prod/echo/x"),
    "asterisk-form": _head("", method="OPTIONS", target="*"),
    "missing-host": b"GET /prod/echo/x HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two-hosts": _head("Host: other.test\r\n", method="GET"),
    "two-authorizations": _head("Authorization: a\r\nAuthorization: b\r\n", method="GET"),
    "two-api-keys": _head("x-api-key: a\r\nX-Api-Key: b\r\n", method="GET"),
    "nul-in-header": _head("X-Bad: a\x00b\r\n", method="GET"),
}


@pytest.mark.parametrize("name", sorted(FRAMING_CASES))
async def test_framing_errors_are_400_and_close(proxied, name):
    gw, backend = proxied
    response, closed = await c.raw_request(gw.addresses.port, FRAMING_CASES[name], timeout=3)
    assert response.status == 400, response.data[:300]
    assert response.json() == {"message": "Bad Request"}
    assert response.headers["x-propylon-error-type"] == "BAD_REQUEST"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    assert closed
    assert backend.received == []


async def test_smuggled_second_request_never_reaches_backend(proxied):
    gw, backend = proxied
    smuggle = b"GET /prod/echo/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    payload = _head(f"Content-Length: {len(smuggle) + 5}\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n" + smuggle
    response, closed = await c.raw_request(gw.addresses.port, payload, timeout=3)
    assert response.status == 400
    assert response.data.count(b"HTTP/1.") == 1
    assert closed
    assert backend.received == []


async def test_uri_too_long_is_414(proxied):
    gw, backend = proxied
    response, closed = await c.raw_request(
        gw.addresses.port, _head("", method="GET", target="/prod/echo/" + "a" * 9000)
    )
    assert (response.status, response.json()) == (414, {"message": "Request-URI Too Long"})
    assert response.headers["x-propylon-error-type"] == "URI_TOO_LONG"
    assert closed and backend.received == []


@pytest.mark.parametrize(
    "extra",
    [
        "X-Big: " + "b" * 17000 + "\r\n",
        "".join(f"X-H{i}: {'v' * 200}\r\n" for i in range(90)),  # 90 small headers, ~18 KiB together
        "".join(f"X-H{i}: v\r\n" for i in range(101)),
    ],
    ids=["one-huge-header", "block-over-16k", "over-100-headers"],
)
async def test_header_block_limits_are_431(proxied, extra):
    gw, backend = proxied
    response, closed = await c.raw_request(gw.addresses.port, _head(extra, method="GET"))
    assert (response.status, response.json()) == (431, {"message": "Request Header Fields Too Large"})
    assert response.headers["x-propylon-error-type"] == "REQUEST_HEADERS_TOO_LARGE"
    assert closed and backend.received == []


async def test_declared_body_over_limit_is_413_before_reading(proxied):
    gw, backend = proxied
    # The body is never sent: the gateway must answer from the head alone.
    response, closed = await c.raw_request(gw.addresses.port, _head("Content-Length: 10485761\r\n"))
    assert (response.status, response.json()) == (413, {"message": "Request Too Long"})
    assert response.headers["x-propylon-error-type"] == "REQUEST_TOO_LARGE"
    assert closed and backend.received == []


async def test_chunked_body_over_limit_is_413(proxied):
    gw, backend = proxied
    chunk = b"x" * 1048576
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(11)) + b"0\r\n\r\n"
    response, closed = await c.raw_request(
        gw.addresses.port, _head("Transfer-Encoding: chunked\r\n") + body, timeout=10
    )
    assert (response.status, response.json()) == (413, {"message": "Request Too Long"})
    assert closed
    assert all(len(r["body"]) <= 10485760 for r in backend.received)
    assert backend.received == []


async def test_slow_headers_get_408_and_close(proxied):
    gw, backend = proxied
    response, closed = await c.raw_request(gw.addresses.port, b"GET /prod/echo/x HTTP/1.1\r\nHost: a\r\n", timeout=3)
    assert (response.status, response.json()) == (408, {"message": "Request Timeout"})
    assert response.headers["x-propylon-error-type"] == "REQUEST_TIMEOUT"
    assert closed and backend.received == []


async def test_stalled_body_gets_408_and_close(proxied):
    gw, _backend = proxied
    response, closed = await c.raw_request(
        gw.addresses.port, _head("Content-Length: 100\r\n") + b"only-part", timeout=4
    )
    assert (response.status, response.json()) == (408, {"message": "Request Timeout"})
    assert closed


async def test_idle_keepalive_connection_is_closed(start_gateway):
    gw = await start_gateway(
        c.config(c.stage([("GET /x", c.mock())])), listener=settings.ListenerSettings(keepalive_timeout=0.5)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.addresses.port)
    try:
        writer.write(b"GET /prod/x HTTP/1.1\r\nHost: a\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        await asyncio.wait_for(reader.readexactly(length), 5)
        # Idle now: the server closes the connection after the keep-alive timeout.
        assert await asyncio.wait_for(reader.read(1), 5) == b""
    finally:
        writer.close()


async def test_a_slow_client_does_not_delay_others(proxied):
    gw, _ = proxied
    _, slow_writer = await asyncio.open_connection("127.0.0.1", gw.addresses.port)
    try:
        slow_writer.write(b"GET /prod/echo/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        await slow_writer.drain()
        response, _ = await c.raw_request(
            gw.addresses.port, b"GET /prod/echo/fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", timeout=3
        )
        assert response.status == 200
    finally:
        slow_writer.close()


def test_framing_holds_with_the_pure_python_parser():
    """aiohttp falls back to its Python parser without the C extension: run these tests on it."""
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "not pure_python"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0"])
async def test_other_http_versions_are_refused_in_http_1_1(proxied, version):
    gw, backend = proxied
    raw = b"GET /prod/echo/x " + version + b"\r\nHost: gw.test\r\n\r\n"
    response, closed = await c.raw_request(gw.addresses.port, raw, timeout=3)
    # HTTP/1.x either way (aiohttp's own parser refuses some versions and answers as HTTP/1.0),
    # never in the version the client claimed.
    assert response.data.startswith((b"HTTP/1.1 400 ", b"HTTP/1.0 400 ")), response.data[:100]
    assert response.json() == {"message": "Bad Request"}
    assert response.headers["x-propylon-error-type"] == "BAD_REQUEST"
    assert closed
    assert backend.received == []
