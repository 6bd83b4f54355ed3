"""One behaviour table for both upstream clients (aiohttp's ClientSession and the pooled client).

Each test talks to a real backend on 127.0.0.1 and asserts what a gateway user would see: the
bytes the backend received, the response handed back, the connections opened, the error raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterable, AsyncIterator

import pytest
from aiohttp import web
from upstream_backends import RawBackend, RawRequest, chunked, ok_handler, response

from propylon_proxy import upstream, upstream_pool
from tests.ports import free_port


def make_request(
    port: int,
    target: str = "/",
    method: str = "GET",
    *,
    headers: list[tuple[str, str]] | None = None,
    body: AsyncIterable[bytes] | bytes | None = None,
    timeout: float = 29.0,
) -> upstream.UpstreamRequest:
    return upstream.UpstreamRequest(
        method=method,
        scheme="http",
        host="127.0.0.1",
        port=port,
        target=target,
        headers=headers or [("Host", f"127.0.0.1:{port}")],
        body=body,
        timeout=timeout,
    )


def client_kind(client: upstream.Upstream) -> str:
    return "pool" if isinstance(client, upstream_pool.PooledUpstream) else "aiohttp"


async def read_all(resp: upstream.UpstreamResponse) -> bytes:
    parts = [chunk async for chunk in resp.iter_chunks()]
    await resp.release()
    return b"".join(parts)


@pytest.fixture
async def raw_backend() -> AsyncIterator[RawBackend]:
    backend = await RawBackend(ok_handler).start()
    try:
        yield backend
    finally:
        await backend.stop()


async def start_aiohttp(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert runner.addresses
    return runner, int(runner.addresses[0][1])


# -- plain exchanges ---------------------------------------------------------------------------


async def test_get_returns_status_reason_headers_and_body(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(response("201 Made Here", [("Content-Type", "text/plain")], b"hello"))
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port, "/x"))
    assert (resp.status, resp.reason) == (201, "Made Here")
    assert ("Content-Type", "text/plain") in resp.headers
    assert await read_all(resp) == b"hello"
    assert raw_backend.requests[0].method == "GET"


async def test_get_adds_no_headers_of_its_own(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    await read_all(await client.send(make_request(raw_backend.port)))
    assert raw_backend.requests[0].headers == [(b"Host", f"127.0.0.1:{raw_backend.port}".encode())]


async def test_post_bytes_body_is_sent_with_its_length(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    body = b"x" * 100_000
    await read_all(await client.send(make_request(raw_backend.port, method="POST", body=body)))
    got = raw_backend.requests[0]
    assert got.body == body
    assert got.header_values("Content-Length") == [b"100000"]
    assert got.header_values("Transfer-Encoding") == []
    assert got.header_values("Content-Type") == []


async def test_streamed_body_without_length_goes_chunked(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def source() -> AsyncIterator[bytes]:
        for part in (b"one,", b"", b"two,", b"three" * 10_000):
            await asyncio.sleep(0)
            yield part

    await read_all(await client.send(make_request(raw_backend.port, method="PUT", body=source())))
    got = raw_backend.requests[0]
    assert got.body == b"one,two," + b"three" * 10_000
    assert got.header_values("Transfer-Encoding") == [b"chunked"]
    assert got.header_values("Content-Length") == []


async def test_streamed_body_with_declared_length_goes_as_is(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defg"

    headers = [("Host", "b.test"), ("Content-Length", "7")]
    req = make_request(raw_backend.port, method="POST", headers=headers, body=source())
    await read_all(await client.send(req))
    got = raw_backend.requests[0]
    assert got.body == b"abcdefg"
    assert got.header_values("Content-Length") == [b"7"]
    assert got.header_values("Transfer-Encoding") == []


async def test_chunked_response_is_decoded(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(headers=[("Transfer-Encoding", "chunked")]))
        for part in (b"alpha-", b"beta-", b"gamma" * 1000):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port))
    assert ("Transfer-Encoding", "chunked") in resp.headers
    assert await read_all(resp) == b"alpha-beta-" + b"gamma" * 1000
    await read_all(await client.send(make_request(raw_backend.port)))
    assert raw_backend.connections == 1


# -- request target and headers ------------------------------------------------------------

TARGETS = [
    "/a%2Fb/c",
    "/x/%2e%2e/y",
    "/x/%2E%2E%2fetc",
    "/p;x=y/q;a",
    "//double//slash/",
    "/sp%20ace/%7Euser/~tilde",
    "/q?a=%20&b=c%2Fd&&e=&f=%zz",
    "/utf8/%C3%A9?%C3%A9=1",
    "/plus+sign?x=a+b",
]


@pytest.mark.parametrize("target", TARGETS)
async def test_request_target_reaches_backend_byte_for_byte(
    client: upstream.Upstream, raw_backend: RawBackend, target: str
) -> None:
    await read_all(await client.send(make_request(raw_backend.port, target)))
    assert raw_backend.requests[0].target == target.encode()


async def test_request_header_order_case_and_duplicates_are_kept(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    headers = [
        ("Host", "api.example.com"),
        ("X-B", "1"),
        ("x-a", "2"),
        ("X-B", "3"),
        ("Cookie", "a=1"),
        ("cookie", "b=2"),
        ("X-Empty", ""),
    ]
    await read_all(await client.send(make_request(raw_backend.port, headers=headers)))
    got = [(n.decode(), v.decode()) for n, v in raw_backend.requests[0].headers]
    if client_kind(client) == "aiohttp":
        # aiohttp would merge 'Cookie' and 'cookie'; the wrapper respells the repeat (see module doc).
        assert [(n.lower(), v) for n, v in got] == [(n.lower(), v) for n, v in headers]
        assert len({n for n, _ in got if n.lower() == "cookie"}) == 1
    else:
        assert got == headers


async def test_response_header_order_case_and_duplicates_are_kept(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    sent = [
        ("Set-Cookie", "a=1"),
        ("X-Dup", "1"),
        ("set-cookie", "b=2; Path=/"),
        ("X-Dup", "2"),
        ("Content-Length", "0"),
    ]

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(headers=sent))
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port))
    assert resp.headers == sent
    assert await read_all(resp) == b""


async def test_content_encoding_is_not_decoded(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    import gzip

    packed = gzip.compress(b"plain text" * 100)

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(headers=[("Content-Encoding", "gzip")], body=packed))
        return True

    raw_backend.handler = handler
    assert await read_all(await client.send(make_request(raw_backend.port))) == packed


# -- bodiless responses, keep-alive, Connection: close -----------------------------------------


async def test_keep_alive_reuses_one_connection(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    for _ in range(5):
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"ok"
    assert raw_backend.connections == 1
    assert [r.index_on_connection for r in raw_backend.requests] == [1, 2, 3, 4, 5]


async def test_unread_body_is_not_reused(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(body=b"z" * 1_000_000))
        await writer.drain()
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port))
    await resp.release()
    assert len(await read_all(await client.send(make_request(raw_backend.port)))) == 1_000_000
    assert raw_backend.connections == 2


@pytest.mark.parametrize(
    ("method", "status", "headers"),
    [
        ("HEAD", "200 OK", [("Content-Length", "1234")]),
        ("HEAD", "200 OK", [("Transfer-Encoding", "chunked")]),
        ("HEAD", "200 OK", []),
        ("GET", "204 No Content", []),
        ("GET", "304 Not Modified", [("Content-Length", "99"), ("ETag", '"v1"')]),
    ],
)
async def test_bodiless_responses_end_at_the_head_and_keep_the_connection(
    client: upstream.Upstream,
    raw_backend: RawBackend,
    method: str,
    status: str,
    headers: list[tuple[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    if client_kind(client) == "aiohttp" and method == "HEAD" and not headers:
        # Found by this test (aiohttp 3.14): after a HEAD response with neither Content-Length nor
        # Transfer-Encoding, aiohttp hands the next request on that connection a phantom
        # "200, no headers" response whose body never ends. The pooled client gets it right.
        request.applymarker(pytest.mark.xfail(strict=True, reason="aiohttp desyncs after an unframed HEAD response"))

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.index_on_connection == 1:
            writer.write(f"HTTP/1.1 {status}\r\n".encode() + b"".join(f"{n}: {v}\r\n".encode() for n, v in headers))
            writer.write(b"\r\n")
        else:
            writer.write(response(body=b"second"))
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port, method=method))
    assert resp.status == int(status.split()[0])
    assert await read_all(resp) == b""
    second = await client.send(make_request(raw_backend.port, timeout=5))
    assert await asyncio.wait_for(read_all(second), 5) == b"second"
    assert raw_backend.connections == 1


async def test_unasked_second_response_is_never_delivered(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    """A backend that sends more than one response per request is out of step: its extra bytes
    must not become the answer to the next request (response desync)."""

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.connection == 1:
            writer.write(response(body=b"one") + response("202 Accepted", [("X-Smuggled", "1")], b"two"))
        else:
            writer.write(response(body=b"fresh"))
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port))
    assert (resp.status, resp.headers) == (200, [("Content-Length", "3")])
    assert await read_all(resp) == b"one"
    await asyncio.sleep(0.05)  # let the stray bytes arrive; nothing below depends on how long it takes
    second = await client.send(make_request(raw_backend.port))
    assert (second.status, await read_all(second)) == (200, b"fresh")


async def test_connection_close_response_is_not_reused(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(headers=[("Connection", "close")], body=b"bye"))
        await writer.drain()
        return False

    raw_backend.handler = handler
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"bye"
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"bye"
    assert raw_backend.connections == 2


async def test_body_until_close(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for i in range(5):
            writer.write(b"part%d;" % i)
            await writer.drain()
        return False

    raw_backend.handler = handler
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"part0;part1;part2;part3;part4;"
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"part0;part1;part2;part3;part4;"
    assert raw_backend.connections == 2


async def test_interim_100_continue_is_skipped(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + response("202 Accepted", body=b"done"))
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port, method="POST", body=b"data"))
    assert resp.status == 202
    assert await read_all(resp) == b"done"


# -- large bodies and memory ---------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_50mb_response_streams_with_bounded_memory(client: upstream.Upstream) -> None:
    total = 50 * 1024 * 1024
    block = b"\xab" * 65536

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(total)})
        await resp.prepare(request)
        for _ in range(total // len(block)):
            await resp.write(block)
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    runner, port = await start_aiohttp(app)
    try:
        gc.collect()
        base = _rss_bytes()
        peak = base
        received = 0
        resp = await client.send(make_request(port, "/big"))
        async for chunk in resp.iter_chunks():
            received += len(chunk)
            peak = max(peak, _rss_bytes())
            if received % (4 * 1024 * 1024) < len(chunk):
                await asyncio.sleep(0.02)  # a lagging consumer: the client must stop reading, not buffer
        await resp.release()
    finally:
        await runner.cleanup()
    assert received == total
    assert peak - base < 16 * 1024 * 1024, f"client grew by {(peak - base) / 2**20:.1f} MiB"
    max_buffered = getattr(client, "max_buffered", None)
    if max_buffered is not None:
        assert max_buffered < 2 * 1024 * 1024


async def test_aiohttp_server_backend_chunked_stream(client: upstream.Upstream) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(100):
            await resp.write(b"line %d\n" % i)
        return resp

    peers: set[object] = set()

    @web.middleware
    async def count_peers(request: web.Request, handler):  # type: ignore[no-untyped-def]
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application(middlewares=[count_peers])
    app.router.add_get("/stream", stream)
    runner, port = await start_aiohttp(app)
    try:
        for _ in range(3):
            body = await read_all(await client.send(make_request(port, "/stream")))
            assert body == b"".join(b"line %d\n" % i for i in range(100))
    finally:
        await runner.cleanup()
    assert len(peers) == 1


# -- failures ---------------------------------------------------------------------------------


async def test_connection_refused_is_a_connect_error(client: upstream.Upstream) -> None:
    with pytest.raises(upstream.UpstreamConnectError):
        await client.send(make_request(free_port()))


async def test_slow_head_is_a_timeout_and_the_client_recovers(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    release = asyncio.Event()

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.connection == 1:
            await release.wait()
            return False
        writer.write(response(body=b"fast"))
        return True

    raw_backend.handler = handler
    try:
        with pytest.raises(upstream.UpstreamTimeout):
            await client.send(make_request(raw_backend.port, timeout=0.3))
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"fast"
    finally:
        release.set()


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\x03",
        # Switching Protocols to a request that asked for no upgrade: never relayed (a proxy in
        # front would take the client's connection for a tunnel past its checks).
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        # A status no HTTP defines (RFC 9110 section 15: 100..599) is not relayed as if it were.
        b"HTTP/1.1 600 Beyond\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 999 Beyond\r\nContent-Length: 2\r\n\r\nok",
        # A transfer coding other than chunked alone: the gateway re-frames what it relays, so
        # gzip-coded bytes would reach the client as if they were the body (nginx: 502 too).
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
)
async def test_garbage_response_is_a_protocol_error(
    client: upstream.Upstream, raw_backend: RawBackend, garbage: bytes
) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(garbage)
        await writer.drain()
        return True

    raw_backend.handler = handler
    with pytest.raises(upstream.UpstreamProtocolError):
        resp = await client.send(make_request(raw_backend.port, timeout=5))
        await read_all(resp)


async def test_close_before_any_response_byte_on_a_new_connection_is_a_protocol_error(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        return False

    raw_backend.handler = handler
    with pytest.raises(upstream.UpstreamProtocolError):
        await client.send(make_request(raw_backend.port, method="POST", body=b"x"))


@pytest.mark.parametrize(
    ("tail", "head_is_good"),
    [
        (response(body=b"0123456789" * 100)[:-990], True),  # Content-Length 1000, only 10 bytes sent
        (response(headers=[("Transfer-Encoding", "chunked")]) + chunked(b"abc")[:-5], True),  # no last chunk
        # A bad chunk in the same packet as the head: aiohttp fails already in send(), the pool in
        # iter_chunks(); either way the caller gets a protocol error, never a silently short body.
        (response(headers=[("Transfer-Encoding", "chunked")]) + b"3\r\nabc\r\nZZ\r\n", False),
    ],
)
async def test_backend_failing_mid_body_surfaces_as_protocol_error(
    client: upstream.Upstream, raw_backend: RawBackend, tail: bytes, head_is_good: bool
) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(tail if req.connection == 1 else response(body=b"fine"))
        await writer.drain()
        return False

    raw_backend.handler = handler
    resp: upstream.UpstreamResponse | None = None
    with pytest.raises(upstream.UpstreamProtocolError):
        resp = await client.send(make_request(raw_backend.port))
        assert resp.status == 200
        async for _ in resp.iter_chunks():
            pass
    if head_is_good:
        assert resp is not None
    if resp is not None:
        await resp.release()
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"fine"
    assert raw_backend.connections == 2


async def test_stale_pooled_connection(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    """The backend silently drops the second request on each connection (an idle-timeout race).

    A replayable GET may be reported as a connect error (the pipeline may retry it) or replayed by
    the client itself; a POST must never be reported as 'nothing was sent'.
    """

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.index_on_connection > 1:
            return False
        writer.write(response(body=b"first"))
        return True

    raw_backend.handler = handler
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"first"
    with contextlib.suppress(upstream.UpstreamConnectError):
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"first"
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"first"
    with pytest.raises(upstream.UpstreamProtocolError):
        await client.send(make_request(raw_backend.port, method="POST", body=b"once only"))


# -- streaming uploads that go wrong, concurrency -------------------------------------------


class SourceFailed(Exception):
    pass


async def test_failing_body_source_fails_the_send_and_nothing_is_reused(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"first part,"
        await asyncio.sleep(0.01)
        raise SourceFailed("client went away")

    with pytest.raises(Exception) as info:
        resp = await client.send(make_request(raw_backend.port, method="POST", body=source(), timeout=5))
        await read_all(resp)
    assert isinstance(info.value, SourceFailed | upstream.UpstreamError)
    assert raw_backend.requests == []  # the backend never saw a complete request
    assert await read_all(await client.send(make_request(raw_backend.port))) == b"ok"


async def test_early_response_while_uploading(client: upstream.Upstream) -> None:
    """A backend may refuse a body before reading it; the caller must still get its answer."""

    sent = asyncio.Event()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response("413 Too Big", [("Connection", "close")], b"no"))
        await writer.drain()
        sent.set()
        await asyncio.sleep(0.2)
        writer.transport.abort()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def source() -> AsyncIterator[bytes]:
        yield b"x" * 65536
        await sent.wait()
        for _ in range(20):
            yield b"y" * 65536

    try:
        resp = await client.send(make_request(port, method="POST", body=source(), timeout=5))
        assert resp.status == 413
        assert await read_all(resp) == b"no"
    finally:
        server.close()
        await server.wait_closed()


async def test_concurrent_requests_are_not_mixed_up(client: upstream.Upstream, raw_backend: RawBackend) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.001 * (hash(req.target) % 5))
        writer.write(response(body=req.target))
        return True

    raw_backend.handler = handler

    async def one(i: int) -> bytes:
        return await read_all(await client.send(make_request(raw_backend.port, f"/item/{i}")))

    for _ in range(2):
        bodies = await asyncio.gather(*(one(i) for i in range(40)))
        assert bodies == [f"/item/{i}".encode() for i in range(40)]
    assert raw_backend.connections <= 40


async def test_large_upload_is_paced_by_the_backend(client: upstream.Upstream) -> None:
    """A 50 MB streamed upload to a backend that stops reading must stop pulling from the source,
    or a slow backend would make the gateway hold the whole body in memory."""
    total = 50 * 1024 * 1024
    block = b"u" * 65536
    produced = 0
    resume = asyncio.Event()
    received = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(total // len(block)):
            produced += len(block)
            yield block

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await reader.readuntil(b"\r\n\r\n")
        while received < 1024 * 1024:
            received += len(await reader.read(65536))
        await resume.wait()
        while received < total:
            data = await reader.read(1 << 20)
            if not data:
                break
            received += len(data)
        writer.write(response(body=b"got it"))
        await writer.drain()

    server = await asyncio.start_server(slow_reader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    headers = [("Host", "b.test"), ("Content-Length", str(total))]
    try:
        sending = asyncio.ensure_future(client.send(make_request(port, method="PUT", headers=headers, body=source())))
        last, steady = -1, 0
        for _ in range(500):  # bounded: wait until the source stops being pulled
            await asyncio.sleep(0.01)
            steady = steady + 1 if produced == last else 0
            last = produced
            if steady >= 20:
                break
        assert produced < 24 * 1024 * 1024, f"{produced / 2**20:.0f} MiB pulled while the backend read 1 MiB"
        resume.set()
        resp = await asyncio.wait_for(sending, 30)
        assert await read_all(resp) == b"got it"
        assert received == total
    finally:
        resume.set()
        server.close()
        await server.wait_closed()


async def test_non_ascii_header_bytes_reach_the_backend_unchanged(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    """Header text crosses the interface as latin-1, one character per byte of the wire."""
    raw = "Zo\xc3\xab"  # the UTF-8 bytes of "Zoë", seen through latin-1
    await read_all(await client.send(make_request(raw_backend.port, headers=[("Host", "a"), ("X-Name", raw)])))
    assert raw_backend.requests[0].header_values("X-Name") == [b"Zo\xc3\xab"]


async def test_non_ascii_response_header_bytes_come_back_as_latin1(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Name: Zo\xc3\xab\r\nX-Latin: caf\xe9\r\nContent-Length: 0\r\n\r\n")
        return True

    raw_backend.handler = handler
    resp = await client.send(make_request(raw_backend.port))
    assert ("X-Name", "Zo\xc3\xab") in resp.headers
    assert ("X-Latin", "caf\xe9") in resp.headers
    await resp.release()


async def test_slow_head_on_a_reused_connection_is_a_timeout(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    release = asyncio.Event()

    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.connection == 1 and req.index_on_connection == 2:
            await release.wait()
            return False
        writer.write(response(body=b"ok"))
        return True

    raw_backend.handler = handler
    try:
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"ok"
        with pytest.raises(upstream.UpstreamTimeout):
            await client.send(make_request(raw_backend.port, timeout=0.3))
        assert await read_all(await client.send(make_request(raw_backend.port))) == b"ok"
    finally:
        release.set()


async def test_an_earlier_short_deadline_does_not_cut_a_later_slow_head_on_the_same_connection(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    async def handler(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.index_on_connection == 2:
            await asyncio.sleep(0.8)  # well past the first request's deadline
        writer.write(response(body=b"ok"))
        return True

    raw_backend.handler = handler
    assert await read_all(await client.send(make_request(raw_backend.port, timeout=0.3))) == b"ok"
    assert await read_all(await client.send(make_request(raw_backend.port, timeout=5))) == b"ok"
    # And the deadline still works after being moved: a third, short one on the same connection.
    release = asyncio.Event()

    async def stall_third(req: RawRequest, writer: asyncio.StreamWriter) -> bool:
        if req.index_on_connection == 3:
            await release.wait()
            return False
        writer.write(response(body=b"ok"))
        return True

    raw_backend.handler = stall_third
    try:
        with pytest.raises(upstream.UpstreamTimeout):
            await client.send(make_request(raw_backend.port, timeout=0.3))
    finally:
        release.set()


async def test_a_stalled_body_source_is_not_an_upstream_timeout(
    client: upstream.Upstream, raw_backend: RawBackend
) -> None:
    """The pipeline's own body stall timer raises TimeoutError inside the source; that is the
    client's fault (408), and must not come out as the backend's (504)."""

    async def source() -> AsyncIterator[bytes]:
        yield b"some"
        raise TimeoutError("client body stalled")

    with pytest.raises(Exception) as info:
        resp = await client.send(make_request(raw_backend.port, method="POST", body=source(), timeout=5))
        await read_all(resp)
    assert not isinstance(info.value, upstream.UpstreamTimeout)
