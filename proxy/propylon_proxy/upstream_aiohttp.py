"""An ``Upstream`` built on one shared ``aiohttp.ClientSession``.

This is the reference implementation: aiohttp's client is well tested, so it is what the pooled
client (``upstream_pool``) is measured and tested against. It is configured to be a transparent
forwarder rather than a browser-like client:

- no cookie jar, no automatic decompression, no redirects;
- no headers the caller did not send (no default ``User-Agent``, ``Accept``, ``Accept-Encoding``
  or ``Content-Type``); aiohttp still adds the framing headers it needs (``Content-Length`` for a
  bytes body, ``Transfer-Encoding: chunked`` for a streamed body without a length);
- the request target goes out byte for byte (``yarl.URL(..., encoded=True)`` skips re-quoting
  and dot-segment removal; ``tests/upstream`` checks ``%2F``, ``%2e%2e``, ``;x=y`` and ``//``).

Known differences from ``upstream_pool`` (both are allowed by the interface):
- aiohttp puts ``Host`` first among the request headers; the rest keep their order.
- aiohttp merges headers whose names differ only in case (``Cookie`` then ``cookie``: the second
  replaces the first); ``_for_aiohttp`` spells repeated names like their first occurrence to stop
  that, so values and order survive but a repeated name's case may change.
- header text crosses the interface as latin-1 (one character per byte); aiohttp writes headers
  as UTF-8. ``_for_aiohttp`` turns non-ASCII text back into the bytes it came from when those
  bytes are valid UTF-8 (the usual case), so they reach the backend unchanged; bytes that are not
  UTF-8 cannot pass through aiohttp unchanged (``upstream_pool`` sends them as they are).
- on a reused keep-alive connection that the backend had already closed, aiohttp itself replays
  an idempotent request once (RFC 9112 section 9.3.1) instead of reporting the failure.

No request policy lives here (retries, timeouts per route, header rewriting): the pipeline owns
that; this module only moves bytes and translates aiohttp's exceptions into the interface's three.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
import yarl

from propylon_proxy import upstream

#: Headers aiohttp would otherwise invent; a proxy must forward only what the client sent.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

#: Read size for the response body. aiohttp's stream reader pauses the socket when its buffer
#: passes twice this, which is what keeps a large body out of memory.
_READ_BUFSIZE = 2**16


def _for_aiohttp(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers as aiohttp must be given them to send the same bytes (see the module doc)."""
    seen: dict[str, str] = {}
    changed = False
    for name, value in headers:
        first = seen.setdefault(name.lower(), name)
        changed = changed or first != name or not value.isascii()
    if not changed:
        return headers
    return [(seen[name.lower()], _utf8_view(value)) for name, value in headers]


def _utf8_view(value: str) -> str:
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


async def _clocked(body: AsyncIterable[bytes], deadline: asyncio.Timeout, timeout: float) -> AsyncIterator[bytes]:
    """A streamed request body under the integration timeout as ``upstream_pool`` counts it: the
    clock stops while the client's body is awaited (its own stall timeout), runs while a chunk is
    written to the backend, and starts afresh for the response head once the body is all sent."""
    loop = asyncio.get_running_loop()

    def move(when: float | None) -> None:
        with contextlib.suppress(RuntimeError):  # the head came first: the deadline is over
            deadline.reschedule(when)

    iterator = aiter(body)
    while True:
        move(None)
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            break
        move(loop.time() + timeout)
        yield chunk
    move(loop.time() + timeout)


class AiohttpResponse:
    """An ``UpstreamResponse`` over an ``aiohttp.ClientResponse``."""

    __slots__ = ("_consumed", "_response", "headers", "reason", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._consumed = False
        self.status = response.status
        self.reason = response.reason or ""
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]

    def body_ready(self) -> bool:
        # aiohttp's stream reader has no public "bytes buffered" check; the head goes out alone.
        return False

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise upstream.UpstreamProtocolError(f"upstream response body broken: {exc}") from exc
        self._consumed = True

    async def release(self) -> None:
        if self._consumed:
            # The body was read to its end, so the connection is clean and may go back to the pool.
            self._response.release()
        else:
            # Unread bytes would be taken for the next response: the connection cannot be reused.
            self._response.close()


class AiohttpUpstream:
    """An ``Upstream`` that sends every request through one shared keep-alive ``ClientSession``.

    The session is created on first use, inside the running loop, as aiohttp requires.
    """

    def __init__(self, *, limit: int = 0, limit_per_host: int = 0, keepalive_timeout: float = 30.0) -> None:
        # limit=0: concurrency is bounded by the gateway's own listeners, not by a hidden queue here.
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=self._keepalive_timeout,
                use_dns_cache=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                # The head timeout is applied around send() below; no per-read or total timeout,
                # because a long streamed body is legitimate.
                timeout=aiohttp.ClientTimeout(total=None),
                read_bufsize=_READ_BUFSIZE,
                raise_for_status=False,
                trust_env=False,
            )
        return self._session

    async def send(self, request: upstream.UpstreamRequest) -> AiohttpResponse:
        session = self._get_session()
        url = yarl.URL(f"{request.scheme}://{request.host}:{request.port}{request.target}", encoded=True)
        deadline = asyncio.timeout(request.timeout)
        data = request.body
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            data = _clocked(data, deadline, request.timeout)
        try:
            async with deadline:
                response = await session.request(
                    request.method,
                    url,
                    headers=_for_aiohttp(request.headers),
                    data=data,
                    allow_redirects=False,
                    compress=None,
                )
        except TimeoutError as exc:
            if not deadline.expired():
                raise  # from the body's source (the client's stall timer): not the backend's doing
            raise upstream.UpstreamTimeout(f"no response head within {request.timeout:g}s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise upstream.UpstreamConnectError(f"cannot connect to {request.host}:{request.port}: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            # Raised by the response parser: bad status line, bad header, bad framing.
            raise upstream.UpstreamProtocolError(f"invalid response from upstream: {exc.message}") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Disconnect or reset after the request went out: it may have been processed.
            raise upstream.UpstreamProtocolError(f"upstream connection failed: {exc!r}") from exc
        if response.status == 101:
            # Switching Protocols to a request without Upgrade: a protocol error, as in the pool
            # (relayed, a proxy in front could take the client's connection for a tunnel).
            response.close()
            raise upstream.UpstreamProtocolError("upstream switched protocols unasked")
        raw = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers]
        unrelayable = upstream.unrelayable_head(response.status, upstream.transfer_codings(raw))
        if unrelayable is not None:
            response.close()
            raise upstream.UpstreamProtocolError(unrelayable)
        return AiohttpResponse(response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
