"""Behaviour of the pooled client that the shared table cannot express for aiohttp too:
the stale-connection rule, pool bounds and idle expiry, and its own guards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_upstream_table import make_request, read_all
from upstream_backends import RawBackend, RawRequest, ok_handler, response

from propylon_proxy import upstream, upstream_pool


@pytest.fixture
async def raw_backend() -> AsyncIterator[RawBackend]:
    backend = await RawBackend(ok_handler).start()
    try:
        yield backend
    finally:
        await backend.stop()


async def drop_second_request(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
    """Answer the first request on a connection, then hang up on the next without a byte."""
    if req.index_on_connection > 1:
        return False
    writer.write(response(body=b"first"))
    return True


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("GET", None, upstream.UpstreamConnectError),
        ("HEAD", None, upstream.UpstreamConnectError),
        ("PUT", b"same again", upstream.UpstreamConnectError),
        ("DELETE", None, upstream.UpstreamConnectError),
        ("POST", b"once only", upstream.UpstreamProtocolError),
        ("PATCH", b"once only", upstream.UpstreamProtocolError),
        ("PUT", "stream", upstream.UpstreamProtocolError),  # a consumed stream cannot be replayed
    ],
)
async def test_stale_connection_rule(
    raw_backend: RawBackend, method: str, body: bytes | str | None, expected: type[Exception]
) -> None:
    raw_backend.handler = drop_second_request
    client = upstream_pool.PooledUpstream()
    try:
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"first"
        payload = stream(b"part one", b"part two") if body == "stream" else body
        assert not isinstance(payload, str)
        with pytest.raises(expected):
            await client.send(make_request(raw_backend.port, method=method, body=payload))
    finally:
        await client.close()


async def test_idle_connections_expire(raw_backend: RawBackend) -> None:
    client = upstream_pool.PooledUpstream(idle_timeout=0.05)
    try:
        await read_all(await client.send(make_request(raw_backend.port)))
        for _ in range(200):  # bounded wait for the idle timer
            if client.idle_count() == 0:
                break
            await asyncio.sleep(0.01)
        assert client.idle_count() == 0
        await read_all(await client.send(make_request(raw_backend.port)))
        assert raw_backend.connections == 2
    finally:
        await client.close()


async def test_idle_pool_is_bounded(raw_backend: RawBackend) -> None:
    gate = asyncio.Event()

    async def slow(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        await gate.wait()
        writer.write(response(body=b"ok"))
        return True

    raw_backend.handler = slow
    client = upstream_pool.PooledUpstream(max_idle_per_host=2)
    try:
        pending = [asyncio.ensure_future(client.send(make_request(raw_backend.port))) for _ in range(5)]
        for _ in range(200):
            if raw_backend.connections == 5:
                break
            await asyncio.sleep(0.01)
        gate.set()
        for resp in await asyncio.gather(*pending):
            await read_all(resp)
        assert raw_backend.connections == 5
        assert client.idle_count() == 2
        assert client.connections_opened == 5
    finally:
        await client.close()


async def test_oversized_response_head_is_refused(raw_backend: RawBackend) -> None:
    async def huge(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(2000):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"v" * 60))
            await writer.drain()
        writer.write(b"Content-Length: 0\r\n\r\n")
        return True

    raw_backend.handler = huge
    client = upstream_pool.PooledUpstream()
    try:
        with pytest.raises(upstream.UpstreamProtocolError):
            await client.send(make_request(raw_backend.port))
    finally:
        await client.close()


@pytest.mark.parametrize(
    "headers",
    [
        [("Host", "a"), ("X-Evil", "1\r\nX-Injected: 2")],
        [("Host", "a"), ("X-Evil\r\nX", "1")],
        [("Host", "a"), ("X-Evil", "bare\rcr")],
        [("Host", "a"), ("X-Evil", "nul\0")],
        [("Host", "a"), ("X-Target", "set below")],
    ],
)
async def test_header_injection_is_refused_before_sending(
    raw_backend: RawBackend, headers: list[tuple[str, str]]
) -> None:
    client = upstream_pool.PooledUpstream()
    target = "/a HTTP/1.1\r\nX: y" if headers[-1][0] == "X-Target" else "/"
    try:
        with pytest.raises(upstream.UpstreamRequestError):
            await client.send(make_request(raw_backend.port, target, headers=headers))
        assert raw_backend.connections == 0
    finally:
        await client.close()


async def test_streamed_body_longer_than_declared_is_cut_off(raw_backend: RawBackend) -> None:
    headers = [("Host", "a"), ("Content-Length", "4")]
    client = upstream_pool.PooledUpstream()
    try:
        with pytest.raises(upstream.UpstreamProtocolError):
            resp = await client.send(
                make_request(raw_backend.port, method="POST", headers=headers, body=stream(b"ab", b"cdef"))
            )
            await read_all(resp)
        # The backend saw at most the declared four bytes, never a smuggled second request.
        assert all(len(r.body) <= 4 for r in raw_backend.requests)
        assert len(raw_backend.requests) <= 1
    finally:
        await client.close()


async def test_one_connection_serves_heads_and_bodies_in_any_order(raw_backend: RawBackend) -> None:
    """The response parser is kept between exchanges only when its last message ended: a HEAD
    answer that declares a length leaves llhttp expecting a body, so the next GET on the same
    connection must still read its own head and body, not a mix."""

    async def answer(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        body = b"body of %s #%d" % (req.target, req.index_on_connection)
        if req.method == "HEAD":
            writer.write(response(headers=[("Content-Length", "1000")]))
        else:
            writer.write(response(headers=[("X-Seq", str(req.index_on_connection))], body=body))
        return True

    raw_backend.handler = answer
    client = upstream_pool.PooledUpstream()
    try:
        for index, method in enumerate(["GET", "HEAD", "GET", "GET", "HEAD", "HEAD", "GET"], start=1):
            resp = await client.send(make_request(raw_backend.port, f"/r{index}", method=method))
            body = await read_all(resp)
            if method == "HEAD":
                assert body == b""
            else:
                assert body == f"body of /r{index} #{index}".encode()
                assert ("X-Seq", str(index)) in resp.headers
        assert client.connections_opened == 1
    finally:
        await client.close()


async def test_the_start_of_an_unasked_response_spoils_the_connection(raw_backend: RawBackend) -> None:
    """Bytes of a second response sent with the first (even a few, not a whole status line) mean
    the backend is out of step: that connection is never used again."""

    async def extra(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            response(body=f"#{req.index_on_connection}".encode()) + (b"HT" if req.index_on_connection == 1 else b"")
        )
        return True

    raw_backend.handler = extra
    client = upstream_pool.PooledUpstream()
    try:
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"#1"
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"#1"  # a new connection's first
        assert client.connections_opened == 2
    finally:
        await client.close()
