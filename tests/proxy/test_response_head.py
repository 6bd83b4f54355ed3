"""When the proxied response head reaches the client.

The pipeline sends a small response's head and body in one write when the body is already
there. These tests pin down that this never holds a head back: a client sees the head as soon
as the backend sent it, even while the body is still to come, and a backend that hangs up
after the head still gives the client that head before the cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)


class HeadThenWait:
    """A raw backend: answers every request's head at once, the body only when told."""

    def __init__(self, *, hang_up: bool = False) -> None:
        self.release_body = asyncio.Event()
        self.hang_up = hang_up
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: slow\r\n\r\n")
            await writer.drain()
            if self.hang_up:
                return
            await asyncio.wait_for(self.release_body.wait(), 10)
            writer.write(b"hello")
            await writer.drain()
            await reader.read()  # until the proxy closes or the test ends
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def slow_body() -> AsyncIterator[HeadThenWait]:
    backend = HeadThenWait()
    await backend.start()
    yield backend
    backend.release_body.set()
    await backend.stop()


@pytest.fixture
async def head_only() -> AsyncIterator[HeadThenWait]:
    backend = HeadThenWait(hang_up=True)
    await backend.start()
    yield backend
    await backend.stop()


async def _read_until(reader: asyncio.StreamReader, received: bytes, done: bytes, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while done not in received and loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return received


async def test_the_head_is_not_held_back_while_the_body_is_still_coming(start_gateway, slow_body):
    gw = await start_gateway(
        c.config(c.stage([("GET /slow", c.http_proxy(f"http://127.0.0.1:{slow_body.port}/slow"))]))
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.addresses.port)
    try:
        writer.write(b"GET /prod/slow HTTP/1.1\r\nHost: a\r\n\r\n")
        await writer.drain()
        received = await _read_until(reader, b"", b"\r\n\r\n", timeout=5)
        head = c.RawResponse(received)
        assert head.status == 200
        assert head.headers["x-backend"] == "slow"
        assert head.headers["content-length"] == "5"
        assert head.headers["x-request-id"]
        assert head.body == b""  # the backend has not sent it yet
        slow_body.release_body.set()
        received = await _read_until(reader, received, b"\r\n\r\nhello", timeout=5)
        assert c.RawResponse(received).body == b"hello"
    finally:
        writer.close()


async def test_a_backend_that_hangs_up_after_the_head_gives_the_client_that_head_then_a_cut(start_gateway, head_only):
    gw = await start_gateway(
        c.config(c.stage([("GET /gone", c.http_proxy(f"http://127.0.0.1:{head_only.port}/gone"))]))
    )
    response, closed = await c.raw_request(gw.addresses.port, b"GET /prod/gone HTTP/1.1\r\nHost: a\r\n\r\n", timeout=5)
    assert response.status == 200
    assert response.headers["x-backend"] == "slow"
    assert response.headers["x-request-id"]
    assert response.body == b""
    assert closed
