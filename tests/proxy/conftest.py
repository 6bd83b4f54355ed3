"""Builders for snapshots, a real echo backend on loopback, and an in-process gateway.

Proxy tests build ``propylon_config.model`` objects directly: the proxy must never depend on
the compiler, and its tests should not either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from propylon_config import model
from propylon_proxy import gateway, settings

_PARAM = re.compile(r"^\{([^{}+]+)(\+?)\}$")


def segments(path: str) -> tuple[model.Segment, ...]:
    out = []
    for part in path.strip("/").split("/") if path.strip("/") else []:
        found = _PARAM.match(part)
        if found:
            kind = model.SegmentKind.GREEDY if found.group(2) else model.SegmentKind.PARAM
            out.append(model.Segment(kind=kind, value=found.group(1)))
        else:
            out.append(model.Segment(kind=model.SegmentKind.LITERAL, value=part))
    return tuple(out)


def route(key: str, integration: model.Integration, *, stage_id: str = "shop/prod") -> model.Route:
    if key == "$default":
        method, path = "$default", ""
    else:
        method, path = key.split(" ", 1)
    return model.Route(
        id=f"{stage_id}/{key}",
        route_key=key,
        method=method,
        path=path,
        segments=segments(path),
        integration=integration,
    )


def mock(status: int = 200, body: str = '{"ok":true}', headers: tuple[tuple[str, str], ...] = ()) -> model.Integration:
    return model.Integration(
        type=model.IntegrationType.MOCK,
        mock=model.Mock(status_code=status, body=body, headers=(("Content-Type", "application/json"), *headers)),
    )


def http_proxy(url: str, **kwargs: Any) -> model.Integration:
    return model.Integration(type=model.IntegrationType.HTTP_PROXY, url=url, **kwargs)


def stage(
    routes: list[tuple[str, model.Integration]],
    *,
    name: str = "prod",
    namespace: str = "shop",
    base_path: str | None = None,
    **kwargs: Any,
) -> model.Stage:
    stage_id = f"{namespace}/{name}"
    return model.Stage(
        id=stage_id,
        namespace=namespace,
        name=name,
        api=f"{namespace}/api-{name}",
        base_path=base_path if base_path is not None else f"/{name}",
        routes=tuple(route(key, integration, stage_id=stage_id) for key, integration in routes),
        **kwargs,
    )


def config(
    *stages: model.Stage, endpoints: tuple[model.ServiceEndpoints, ...] = (), **kwargs: Any
) -> model.GatewayConfig:
    apis = tuple(model.Api(id=s.api, namespace=s.namespace, name=s.api.split("/")[1]) for s in stages)
    version = hashlib.sha256(repr((stages, endpoints)).encode()).hexdigest()[:16]
    return model.GatewayConfig(version=version, apis=apis, stages=stages, endpoints=endpoints, **kwargs)


# --- an echo backend -------------------------------------------------------------------------


class Backend:
    """A real HTTP server on loopback that reports what it received."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.ServerRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path
        if path.startswith("/slow"):
            await asyncio.sleep(2)
        if path.startswith("/die"):
            # Promise 1000 bytes, send 10, hang up.
            response = web.StreamResponse()
            response.content_length = 1000
            await response.prepare(request)
            await response.write(b"0123456789")
            assert request.transport is not None
            request.transport.close()
            return response
        if path.startswith("/big"):
            size = int(request.query.get("n", "0"))
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = size
            await response.prepare(request)
            block = b"x" * 65536
            sent = 0
            while sent < size and request.method != "HEAD":
                piece = block[: min(len(block), size - sent)]
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
            return response
        body = b""
        while chunk := await request.content.readany():
            body += chunk
        record = {
            "method": request.method,
            "target": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body": body.decode("latin-1"),
        }
        self.received.append(record)
        return web.Response(
            body=json.dumps(record).encode(),
            headers={
                "Content-Type": "application/json",
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "should-not-pass",
                "Keep-Alive": "timeout=5",
                "X-Backend": "echo",
                "Set-Cookie": "a=1",
            },
        )

    async def start(self) -> None:
        self._runner = web.ServerRunner(web.Server(self._handle, auto_decompress=False))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend()
    await server.start()
    yield server
    await server.stop()


GatewayFactory = Callable[..., Awaitable[gateway.Gateway]]


@pytest.fixture
def http_server() -> str:
    """The public listener's server (``settings.HTTP_SERVERS``, default the first);
    PROPYLON_TEST_HTTP_SERVER=aiohttp picks the other for a whole run, and the modules that
    import ``both_servers`` (framing, stalls, streaming, heads, paths) run on both."""
    return os.environ.get("PROPYLON_TEST_HTTP_SERVER", settings.HTTP_SERVERS[0])


@pytest.fixture(params=settings.HTTP_SERVERS, name="http_server")
def both_servers(request: pytest.FixtureRequest) -> str:
    """Import this into a test module to run each of its tests on both servers."""
    return str(request.param)


# The event loop the in-process gateway runs on (``propylon serve --loop``): the modules that run
# on both servers (they import ``both_servers``) run on both loops too, since the servers and the
# upstream pool meet the loop's transports there; the others on asyncio's, or on
# PROPYLON_TEST_LOOP's for a whole run. uvloop is in the test extra; without it, asyncio only.
_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
with contextlib.suppress(ImportError):
    import uvloop

    _LOOPS["uvloop"] = uvloop.new_event_loop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    module = getattr(item, "module", None)
    if module is not None and "both_servers" in vars(module):
        return _LOOPS
    wanted = os.environ.get("PROPYLON_TEST_LOOP", "asyncio")
    return {wanted: _LOOPS[wanted]}


@pytest.fixture
async def start_gateway(http_server: str) -> AsyncIterator[GatewayFactory]:
    started: list[gateway.Gateway] = []

    async def factory(
        snapshot: model.GatewayConfig | None,
        *,
        listener: settings.ListenerSettings | None = None,
        trusted: str = "",
        **kwargs: Any,
    ) -> gateway.Gateway:
        proxy_settings = settings.ProxySettings(
            listener=listener or settings.ListenerSettings(),
            trusted_proxies=settings.parse_networks(trusted),
            # PROPYLON_TEST_UPSTREAM=pool runs the same tests over the pooled httptools client.
            upstream_kind=os.environ.get("PROPYLON_TEST_UPSTREAM", "pool"),
            http_server=http_server,
        )
        gw = gateway.Gateway(proxy_settings, **kwargs)
        if snapshot is not None:
            gw.swap(snapshot)
        await gw.start("127.0.0.1", 0, 0, 0)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.stop(grace=1.0)


# --- raw sockets -----------------------------------------------------------------------------


class RawResponse:
    def __init__(self, data: bytes) -> None:
        self.data = data
        head, _, self.body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, data: bytes, *, timeout: float = 5.0, pause: float = 0.0) -> tuple[RawResponse, bool]:
    """Send raw bytes, read until the server closes (or ``timeout``). Returns (response, closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        closed = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            received += chunk
            if pause and b"\r\n\r\n" in received:
                # Enough to judge; give the server a moment to close, then stop.
                try:
                    more = await asyncio.wait_for(reader.read(65536), pause)
                    received += more
                    closed = not more
                except TimeoutError:
                    pass
                break
        return RawResponse(received), closed
    finally:
        writer.close()
