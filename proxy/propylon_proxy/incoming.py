"""What a request handler may read of a client's request, whichever server parsed it.

Two servers feed the public listener (``--http-server``): aiohttp's ``web.Server`` (its
``web.BaseRequest``) and ``fast_server`` on httptools (its ``FastRequest``). The pipeline, the
steps and the integrations read requests only through this protocol, so both satisfy it and a
step cannot come to depend on what only one of them offers. Responses go out through
``responding``, which knows how to write to either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aiohttp import HttpVersion
from multidict import CIMultiDictProxy, MultiMapping


class Body(Protocol):
    """The request body as it arrives (aiohttp's ``StreamReader`` is one)."""

    async def readany(self) -> bytes:
        """The next bytes received, b"" at the end; raises if the client broke the body off."""
        ...

    def unread_data(self, data: bytes) -> None:
        """Put ``data`` back in front (request validation gives back what it read)."""
        ...

    def is_eof(self) -> bool:
        """The whole body has arrived (what is left of it is buffered)."""
        ...

    def read_nowait(self, n: int = -1) -> bytes:
        """What is buffered now (all of it for -1), without waiting."""
        ...


class ContinueWriter(Protocol):
    """Just enough of a response writer for ``100 Continue`` before the final response."""

    output_size: int

    async def write(self, chunk: bytes) -> None: ...


class Request(Protocol):
    """A parsed HTTP/1.x request head plus its body stream."""

    @property
    def method(self) -> str: ...

    @property
    def raw_path(self) -> str:
        """The request target as sent (path and query), undecoded."""
        ...

    @property
    def path(self) -> str:
        """The path, percent-decoded (only WebSocket tables and HTTP events read this)."""
        ...

    @property
    def version(self) -> HttpVersion: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def content(self) -> Body: ...

    @property
    def body_exists(self) -> bool: ...

    @property
    def writer(self) -> ContinueWriter: ...


def header_lookup(request: Request) -> Callable[[str], str | None]:
    """``request.headers.get``: the first value of a header, decoded as both servers decode
    headers (UTF-8, undecodable bytes as surrogates).

    fast_server's ``FastRequest.first_header`` answers the headers every request reads (Host,
    the canary key, traceparent, ...) from what it noted while parsing, so the plain route never
    builds the header multidict; aiohttp's request has its ``headers`` already."""
    first: Callable[[str], str | None] | None = getattr(request, "first_header", None)
    return first if first is not None else request.headers.get


def header(request: Request, name: str) -> str | None:
    """One header's first value (``header_lookup``)."""
    return header_lookup(request)(name)
