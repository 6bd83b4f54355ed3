"""Real loopback backends for the upstream tests: a raw asyncio server and an aiohttp server.

The raw server sees the request exactly as it arrived on the wire (request target, header names,
order and duplicates, framing) and lets a test answer with arbitrary bytes, including invalid
HTTP. It counts connections, which is how keep-alive reuse is observed from the outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

import httptools


@dataclasses.dataclass
class RawRequest:
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int  # 1-based number of the connection it arrived on
    index_on_connection: int  # 1-based position on that connection

    def header_values(self, name: str) -> list[bytes]:
        lname = name.lower().encode()
        return [v for n, v in self.headers if n.lower() == lname]


#: A handler gets the request and the stream writer; it writes a response (or not) and returns
#: whether the server should keep reading requests on this connection.
Handler = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[bool]]


class _RequestReader:
    """Feeds bytes to httptools and collects complete requests."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.done: list[tuple[str, bytes, list[tuple[bytes, bytes]], bytes]] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.done.append((method, self._url, self._headers, b"".join(self._body)))


class RawBackend:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[RawRequest] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> RawBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.add(writer)
        parsed = _RequestReader()
        index = 0
        try:
            while True:
                while not parsed.done:
                    data = await reader.read(65536)
                    if not data:
                        return
                    parsed.parser.feed_data(data)
                method, target, headers, body = parsed.done.pop(0)
                index += 1
                request = RawRequest(method, target, headers, body, number, index)
                self.requests.append(request)
                if not await self.handler(request, writer):
                    return
        except (ConnectionError, httptools.HttpParserError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


def response(status: str = "200 OK", headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    """A raw response with Content-Length unless the headers already frame it."""
    headers = list(headers or [])
    names = {n.lower() for n, _ in headers}
    if "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def ok_handler(request: RawRequest, writer: asyncio.StreamWriter) -> bool:
    writer.write(response(body=b"ok"))
    await writer.drain()
    return True
