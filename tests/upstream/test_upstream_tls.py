"""https:// backends: the pooled client speaks TLS and verifies the certificate.

Before this, an ``https://`` integration URL went out in plain HTTP; these tests pin that a
TLS backend is reached over TLS, that an untrusted certificate is refused (-> 502 upstream),
and that a plain-HTTP server behind an https URL is never sent a readable request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_upstream_table import make_request, read_all

from propylon_operator import certificates
from propylon_proxy import upstream, upstream_pool


@dataclasses.dataclass
class TlsBackend:
    port: int
    cafile: str
    seen: list[str]


@pytest.fixture
async def tls_backend(tmp_path: pathlib.Path) -> AsyncIterator[TlsBackend]:
    certfile, keyfile = certificates.write_self_signed(tmp_path, ["127.0.0.1"])
    seen: list[str] = []

    async def handler(request: web.BaseRequest) -> web.Response:
        seen.append(f"{request.scheme} {request.method} {request.raw_path}")
        return web.Response(text="secret hello")

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certfile, keyfile)
    runner = web.ServerRunner(web.Server(handler))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    yield TlsBackend(port=port, cafile=certfile, seen=seen)
    await runner.cleanup()


def _https(port: int, target: str = "/x") -> upstream.UpstreamRequest:
    return dataclasses.replace(make_request(port, target), scheme="https")


async def test_an_https_backend_is_reached_over_verified_tls(tls_backend: TlsBackend) -> None:
    client = upstream_pool.PooledUpstream(tls_context=ssl.create_default_context(cafile=tls_backend.cafile))
    try:
        for _ in range(2):
            response = await client.send(_https(tls_backend.port))
            assert response.status == 200
            assert await read_all(response) == b"secret hello"
        assert tls_backend.seen == ["https GET /x", "https GET /x"]
        assert client.connections_opened == 1  # TLS connections are pooled like plain ones
    finally:
        await client.close()


async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(tls_backend: TlsBackend) -> None:
    client = upstream_pool.PooledUpstream()  # the system's CAs do not know the test's certificate
    try:
        with pytest.raises(upstream.UpstreamConnectError):
            await client.send(_https(tls_backend.port))
        assert tls_backend.seen == []
    finally:
        await client.close()


async def test_a_plain_http_server_behind_an_https_url_gets_no_readable_request(unused_tcp_port: int) -> None:
    received = bytearray()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read(4096))
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", unused_tcp_port)
    client = upstream_pool.PooledUpstream()
    try:
        with pytest.raises(upstream.UpstreamConnectError):
            await client.send(_https(unused_tcp_port, "/private"))
        assert received.startswith(b"\x16\x03")  # a TLS handshake record, not "GET /private"
        assert b"/private" not in received
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
