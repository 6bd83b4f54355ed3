"""Issue 8, item 6: after the response head, a stalled backend or a client that stops reading
ends both connections; the client never sees a falsely complete response."""

from __future__ import annotations

import asyncio
import io
import json

from aiohttp import web

from propylon_proxy import settings
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)


async def _stalling_backend(first: bytes, promised: int) -> tuple[web.ServerRunner, int, asyncio.Event]:
    hung_up = asyncio.Event()

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = promised
        await response.prepare(request)
        await response.write(first)
        # ... and then nothing, until the gateway hangs up on us
        transport = request.transport
        for _ in range(600):
            if transport is None or transport.is_closing():
                hung_up.set()
                break
            await asyncio.sleep(0.05)
        return response

    runner = web.ServerRunner(web.Server(handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1], hung_up


async def test_a_backend_that_stalls_mid_body_is_cut_and_logged(start_gateway):
    runner, port, hung_up = await _stalling_backend(b"x" * 10, promised=1000)
    log = io.StringIO()
    try:
        listener = settings.ListenerSettings(response_stall_timeout=0.5)
        snapshot = c.config(c.stage([("GET /x", c.http_proxy(f"http://127.0.0.1:{port}/x"))], access_log=True))
        gw = await start_gateway(snapshot, listener=listener, log_stream=log)
        request = b"GET /prod/x HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        response, closed = await c.raw_request(gw.addresses.port, request, timeout=10)
        assert response.status == 200
        assert closed  # cut, so the client knows the body is incomplete
        assert len(response.body) < 1000
        await asyncio.wait_for(hung_up.wait(), 5)  # the backend connection was ended too
        await asyncio.sleep(0.05)
        (line,) = [json.loads(text) for text in log.getvalue().splitlines()]
        assert line["stalled"] == "backend"
    finally:
        await runner.cleanup()


async def test_a_client_that_stops_reading_is_cut_and_logged(start_gateway, backend):
    log = io.StringIO()
    listener = settings.ListenerSettings(response_stall_timeout=0.5)
    snapshot = c.config(c.stage([("GET /big", c.http_proxy(backend.url + "/big"))], access_log=True))
    gw = await start_gateway(snapshot, listener=listener, log_stream=log)
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.addresses.port)
    try:
        writer.write(b"GET /prod/big?n=200000000 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        await writer.drain()
        for _ in range(100):  # read nothing; wait for the gateway to give up on us
            if log.getvalue():
                break
            await asyncio.sleep(0.1)
        (line,) = [json.loads(text) for text in log.getvalue().splitlines()]
        assert line["stalled"] == "client"
        assert line["responseLength"] < 200_000_000
    finally:
        writer.close()
