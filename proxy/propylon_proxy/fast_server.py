"""The public listener's HTTP/1.1 server on httptools (``--http-server httptools``).

aiohttp's ``web.Server`` spends about a quarter of a plain proxied request's CPU in its own
layers (request handler task machinery, ``BaseRequest``, ``StreamResponse``, ``StreamWriter``;
bench/profiles/flame-plain.svg). This is an ``asyncio.Protocol`` over llhttp (httptools) that
parses a head into a small ``FastRequest`` (the ``incoming.Request`` protocol) and hands it to
the same ``handling.Pipeline``; ``fast_responding`` writes the reply straight to the transport.

What it keeps of section 8, exactly as ``server.py`` does for aiohttp: 400/414/431 section-3
bodies that close the connection for what the parser refuses (llhttp in its strict mode refuses
every smuggling shape: CL+TE, repeated or signed lengths, bad chunks, obs-fold, bare CR), the
request-line, header-count and header-size limits (llhttp has none: counted here while parsing),
the head deadline (slowloris -> 408), keep-alive with its idle timeout, pipelining (one request
at a time per connection, in order), backpressure both ways (reading pauses while a body's buffer
is full, writing waits while the socket's is), and a clean close when a body is left unread.

Upgrade requests (``Connection: upgrade``, WebSocket) are not served here: the connection is
handed to aiohttp's ``server.GatewayRequestHandler`` with the request's bytes, so WebSockets,
their limits and their sessions have one implementation. The admin and internal listeners always
run aiohttp.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httptools
import yarl
from aiohttp import HttpVersion, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy

from propylon_proxy import gateway_responses, server, settings

log = logging.getLogger("propylon.proxy")

Handler = Callable[["FastRequest"], Awaitable[Any]]
_VERSIONS = {"1.1": HttpVersion11, "1.0": HttpVersion10}
# A body's buffer above this pauses reading from the client until the handler catches up.
_BODY_HIGH_WATER = 256 * 1024
_LINGER_SECONDS = 1.0  # aiohttp's lingering_time, as server.GatewayServer sets it
# The most of a body left unread by its answer that is read and dropped to keep the connection
# (the body limit; a longer declared one is refused with 413 first, a chunked one then closes).
_DISCARD_LIMIT = 10 * 1024 * 1024
# Headers whose first value on_header keeps for FastRequest.first_header (lower case): what
# routing (Host, the canary key, a preflight's), the trace context, 100-continue, and the
# credential steps (a JWT's Authorization, an API key), a whole body's Content-Encoding and the
# access log's User-Agent read: a GET behind a JWT or a key, a validated POST, or a logged
# request then never builds the header multidict (the lookup 1.45 -> 0.76 us with a bearer
# token, timeit; the multidict was ~1.4 us of the full-policy route's access-log entry).
_NOTED = frozenset(
    {
        b"host",
        b"x-propylon-canary-key",
        b"traceparent",
        b"expect",
        b"origin",
        b"access-control-request-method",
        b"authorization",
        b"x-api-key",
        b"content-encoding",
        b"user-agent",
    }
)
# The names callers ask first_header for, as they spell them: no lower-casing per lookup.
_NOTED_KEYS = {
    "Host": b"host",
    "x-propylon-canary-key": b"x-propylon-canary-key",
    "traceparent": b"traceparent",
    "Expect": b"expect",
    "Origin": b"origin",
    "Access-Control-Request-Method": b"access-control-request-method",
    "Authorization": b"authorization",
    "x-api-key": b"x-api-key",
    "Content-Encoding": b"content-encoding",
    "User-Agent": b"user-agent",
}
# on_header lower-cases only names of these lengths (the framing headers' too).
_NOTED_LENGTHS = frozenset({*(len(name) for name in _NOTED), 14, 17})


class BodyBrokenOff(ConnectionResetError):
    """The client closed the connection, or sent bytes that are not a body, mid-body."""


class FastBody:
    """A request body as it arrives: what ``proxying.RequestBody`` reads (``readany``)."""

    __slots__ = ("_buffered", "_chunks", "_connection", "_error", "_waiter", "eof")

    def __init__(self, connection: HttpConnection) -> None:
        self._connection = connection
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.eof = False

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _BODY_HIGH_WATER:
            self._connection.pause_body()
        self._wake()

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.eof:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def readany(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        self._connection.resume_body()
        return chunk

    def unread_data(self, data: bytes) -> None:
        if data:
            self._chunks.appendleft(data)
            self._buffered += len(data)

    def is_eof(self) -> bool:
        return self.eof

    def read_nowait(self, n: int = -1) -> bytes:
        """All that is buffered (``n`` is aiohttp's signature; only -1 is used)."""
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        if not chunks:
            return b""
        chunk = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        chunks.clear()
        self._buffered = 0
        self._connection.resume_body()
        return chunk


class ContinueWriter:
    """``request.writer`` for ``100 Continue``: the only write before the response itself."""

    __slots__ = ("_connection", "output_size")

    def __init__(self, connection: HttpConnection) -> None:
        self._connection = connection
        self.output_size = 0

    async def write(self, chunk: bytes) -> None:
        self._connection.write(chunk)
        await self._connection.drain()


class FastRequest:
    """One request head (the ``incoming.Request`` protocol), parsed by llhttp."""

    __slots__ = (
        "_headers",
        "_noted",
        "_query",
        "_url",
        "_writer",
        "body_exists",
        "connection",
        "content",
        "keep_alive",
        "method",
        "raw_headers",
        "raw_path",
        "started",
        "version",
    )

    def __init__(
        self,
        connection: HttpConnection,
        method: str,
        raw_path: str,
        version: HttpVersion,
        raw_headers: tuple[tuple[bytes, bytes], ...],
        keep_alive: bool,
        body_exists: bool,
        noted: dict[bytes, bytes] | None = None,
    ) -> None:
        self.connection = connection
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.body_exists = body_exists
        self.content = FastBody(connection)
        self.started = False  # the response head has gone out
        self._noted = noted if noted is not None else {}
        self._writer: ContinueWriter | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self._url: yarl.URL | None = None
        self._query: MultiDictProxy[str] | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """As aiohttp decodes them (UTF-8, undecodable bytes kept as surrogates)."""
        if self._headers is None:
            # add() in a loop, not CIMultiDict(generator): 1.3 vs 2.1 us for a 4-header request.
            headers: CIMultiDict[str] = CIMultiDict()
            add = headers.add
            for n, v in self.raw_headers:
                add(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            self._headers = CIMultiDictProxy(headers)
        return self._headers

    def first_header(self, name: str) -> str | None:
        """``headers.get(name)`` (the first value, decoded the same way), without building
        ``headers``: the routing and trace headers were noted while parsing (``_NOTED``).
        On the plain route nothing else reads the headers by name, so the multidict (1.7 % of
        the loop's samples in bench/profiles/perfplain-after.txt) is never made."""
        key = _NOTED_KEYS.get(name)
        if key is None:
            key = name.lower().encode("latin-1")
        if key not in _NOTED:
            return self.headers.get(name)
        value = self._noted.get(key)
        return None if value is None else value.decode("utf-8", "surrogateescape")

    @property
    def writer(self) -> ContinueWriter:
        """For ``100 Continue``: made only for the requests that send one."""
        if self._writer is None:
            self._writer = ContinueWriter(self.connection)
        return self._writer

    def _parsed(self) -> yarl.URL:
        if self._url is None:
            path, _, query = self.raw_path.partition("?")
            self._url = yarl.URL.build(path=path, query_string=query, encoded=True)
        return self._url

    @property
    def path(self) -> str:
        path = self.raw_path.partition("?")[0]
        if path.startswith("/") and "%" not in path:
            return path  # nothing to decode (yarl's path is then this): no URL object per request
        return self._parsed().path

    @property
    def query(self) -> MultiDictProxy[str]:
        if self._query is None:
            self._query = self._parsed().query
        return self._query

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.connection.transport

    @property
    def peer(self) -> str:
        """The socket peer's address (what ``handling`` logs and forwards), read once per
        connection rather than per request."""
        return self.connection.peer


class _Refused(Exception):
    """Raised from a parser callback: the head breaks a limit (``error_type``)."""

    def __init__(self, error_type: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue (pipelining), serve one request at a time."""

    def __init__(self, owner: FastServer) -> None:
        self._owner = owner
        self._listener = owner.listener
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._new_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] = self._loop.create_task
        self._parser = httptools.HttpRequestParser(self)
        # The head being parsed.
        self._url = bytearray()
        self._pairs: list[tuple[bytes, bytes]] = []
        self._noted: dict[bytes, bytes] = {}  # the first value of each _NOTED header
        self._body_exists = False  # a Transfer-Encoding, or a Content-Length other than 0
        self._header_bytes = 0
        self._head_seen = 0  # bytes received while a head is incomplete: bounds its buffering
        self._head_limit = self._listener.max_request_line_bytes + self._listener.max_header_bytes + 4096
        self._in_head = False
        self._message: FastRequest | None = None  # the one whose body is being parsed
        self._upgrade = False
        self._upgrade_body: list[bytes] = []
        self._upgrade_head: tuple[bytes, bytes, str, tuple[tuple[bytes, bytes], ...]] = (b"", b"", "", ())
        # Requests parsed in the current data_received, queued once it has all been parsed (or
        # refused: those complete before the bad bytes are still answered, see _refuse).
        self._parsed: list[FastRequest] = []
        self._queue: collections.deque[FastRequest | str | bytes] = collections.deque()
        self._running: FastRequest | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lingering = False
        self._head_deadline: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._linger_close: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._read_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports (``--loop``) are not
        # asyncio.Transport subclasses, though they have the same methods.
        self.transport = typing.cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple | list) and peername else ""
        # Task() straight away unless a task factory is set (loop.create_task's Python wrapper
        # is then all it would add).
        self._new_task = self._loop.create_task if self._loop.get_task_factory() is not None else self._task_now
        self._owner.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._owner.connections.discard(self)
        self._closing = True
        self.transport = None
        self._cancel_timers()
        if self._message is not None:
            self._message.content.fail(BodyBrokenOff("client closed the connection mid-body"))
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("client closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_on(data)
            return
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._hand_over(data[upgrade.args[0] :] if upgrade.args else b"")
            return
        except _Refused as refused:
            self._refuse(refused.error_type)
            return
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__ or error.__cause__
            self._refuse(cause.error_type if isinstance(cause, _Refused) else gateway_responses.BAD_REQUEST)
            return
        except httptools.HttpParserError:
            self._refuse(gateway_responses.BAD_REQUEST)
            return
        if self._parsed:
            self._queue.extend(self._parsed)
            self._parsed.clear()
            self._next()
        if self._in_head:
            # httptools holds a header's pieces until it is whole: never more than a head's worth.
            self._head_seen += len(data)
            if self._head_seen > self._head_limit:
                self._refuse(gateway_responses.REQUEST_HEADERS_TOO_LARGE)
                return
        if self._in_head and self._head_deadline is None and self._running is None:
            self._head_deadline = self._loop.call_later(self._listener.header_timeout, self._head_timed_out)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_seen = 0
        self._url.clear()
        self._pairs = []
        self._noted = {}
        self._body_exists = False
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._listener.max_request_line_bytes:
            raise _Refused(gateway_responses.URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        """One whole header (httptools joins the pieces); counted as ``hygiene`` counts them.

        The optional whitespace around a field value is not part of it (RFC 9110 section 5.5):
        llhttp drops the leading SP/HTAB but keeps the trailing, so ``x-api-key: k<TAB>`` would
        read as another key here and as ``k`` on aiohttp. Stripped once, every reader (API key,
        Authorization, the cache key, the forwarded headers) sees what aiohttp's server gives."""
        if len(self._pairs) >= self._listener.max_headers:
            raise _Refused(gateway_responses.REQUEST_HEADERS_TOO_LARGE)
        value = value.strip(b" \t")  # the same object when there is nothing to strip
        self._pairs.append((name, value))
        if len(name) in _NOTED_LENGTHS:  # noted here rather than in a second pass over the headers
            lower = name.lower()
            if lower in _NOTED:
                noted = self._noted
                if lower not in noted:
                    noted[lower] = value
            elif lower == b"transfer-encoding" or (lower == b"content-length" and value.strip() not in (b"0", b"")):
                self._body_exists = True
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._listener.max_header_bytes:
            raise _Refused(gateway_responses.REQUEST_HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        if self._lingering:
            raise _Refused(gateway_responses.BAD_REQUEST)  # the unread body is over: stop there
        self._in_head = False
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        parser = self._parser
        raw_headers = tuple(self._pairs)
        if parser.should_upgrade():
            self._upgrade = True
            self._upgrade_head = (parser.get_method(), bytes(self._url), parser.get_http_version(), raw_headers)
            return
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            major, _, minor = parser.get_http_version().partition(".")
            version = HttpVersion(int(major), int(minor or 0))
        request = FastRequest(
            self,
            parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"),
            version,
            raw_headers,
            parser.should_keep_alive(),
            self._body_exists,
            self._noted,
        )
        self._message = request
        self._parsed.append(request)

    def on_body(self, body: bytes) -> None:
        if self._upgrade:
            self._upgrade_body.append(body)
        elif self._message is not None:
            self._message.content.feed(body)

    def on_message_complete(self) -> None:
        if self._message is not None:
            self._message.content.feed_eof()
            self._message = None
        elif self._lingering:
            self._loop.call_soon(self.close)

    # -- serving ------------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next queued request, error or hand-over, if none is running."""
        while self._running is None and self._queue and not self._closing:
            item = self._queue.popleft()
            if isinstance(item, FastRequest):
                self._running = item
                self._task = self._new_task(self._serve(item))
                return
            if isinstance(item, bytes):
                self._do_hand_over(item)
                return
            self._write_rejection(item)
            return

    def _task_now(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.Task(coro, loop=self._loop)

    async def _serve(self, request: FastRequest) -> None:
        try:
            await self._owner.handler(request)
            if request.keep_alive and not request.content.eof and self.transport is not None:
                await self._discard(request)  # answered before its body came: drop the rest
        except Exception as error:  # as aiohttp's handle_error: 500 (504 for a timeout), or a cut
            if not request.started and self.transport is not None:
                error_type = gateway_responses.DEFAULT_5XX
                if isinstance(error, TimeoutError):
                    error_type = gateway_responses.INTEGRATION_TIMEOUT
                else:
                    log.exception("Error handling request", exc_info=error)
                self.write(server.rejection_bytes(error_type, self._owner.on_rejected))
            self.close()
        finally:
            self._running = None
            self._task = None
        if self._closing:
            return
        if not (request.keep_alive and request.content.eof):  # both sides agreed; the body was read
            if request.content.eof:
                self.close()
            else:
                self._linger()
            return
        if self._read_paused:
            self.resume_body()
        if self._queue:
            self._next()
        elif self._in_head:  # a pipelined head is incomplete: its clock starts now
            if self._head_deadline is None:
                self._head_deadline = self._loop.call_later(self._listener.header_timeout, self._head_timed_out)
        else:
            self._arm_idle()

    async def _discard(self, request: FastRequest) -> None:
        """Read and drop the rest of a body its answer did not need (a 404, a refusal that
        leaves the connection open), so the connection serves the next request, as aiohttp's
        server does; closing instead, after a head that did not say so, lost the client's next
        request. A declared length over the body limit was refused (413, close) before this; a
        body that stalls for the body stall timeout, or a chunked one past ``_DISCARD_LIMIT``,
        closes the connection (``_linger``)."""
        content = request.content
        stall = self._listener.body_stall_timeout
        dropped = 0
        try:
            while dropped <= _DISCARD_LIMIT:
                async with asyncio.timeout(stall):
                    chunk = await content.readany()
                if not chunk:
                    return
                dropped += len(chunk)
        except (TimeoutError, ConnectionError):
            pass
        request.keep_alive = False

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def must_drain(self) -> bool:
        """The socket's buffer is over its high-water mark: ``drain`` would wait."""
        return self._write_paused and self.transport is not None

    async def drain(self) -> None:
        """Wait while the socket's buffer is over its high-water mark (a slow reader)."""
        if self.transport is None:
            raise ConnectionResetError("client closed the connection")
        if not self._write_paused:
            return
        self._drain = self._loop.create_future()
        try:
            await self._drain
        finally:
            self._drain = None

    def close(self) -> None:
        self._closing = True
        self._lingering = False
        self._cancel_timers()
        if self._linger_close is not None:
            self._linger_close.cancel()
            self._linger_close = None
        if self.transport is not None:
            self.transport.close()

    def _linger(self) -> None:
        """Close after a response that left the body unread, without losing that response.

        Closing a socket with unread bytes in it sends RST, and the client may lose the 413
        before reading it. As aiohttp does (``lingering_time``), the rest of the body is read
        and dropped for up to a second, then the connection closes (at once if the body ends).
        """
        self._closing = True
        self._lingering = True
        self._message = None  # what still comes is dropped, not buffered
        self._cancel_timers()
        self._linger_close = self._loop.call_later(_LINGER_SECONDS, self.close)
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _linger_on(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, _Refused):
            self.close()

    def pause_body(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_body(self) -> None:
        if self._read_paused and self.transport is not None and not self._closing:
            self._read_paused = False
            self.transport.resume_reading()

    def _refuse(self, error_type: str) -> None:
        """The parser refused the bytes: answer once the requests before them are answered.

        Requests this packet completed before the bad bytes are answered first, each in turn
        (a pipelined client gets its valid request's answer, then the 400; bytes after a
        ``Connection: close`` request, which llhttp refuses, are never answered as the
        connection closes after it). The one whose body the bad bytes broke never runs."""
        broken = self._message
        if broken is not None:
            broken.content.fail(BodyBrokenOff("malformed request body"))
            self._message = None
        self._queue.extend(request for request in self._parsed if request is not broken)
        self._parsed.clear()
        self.pause_body()
        self._queue.append(error_type)
        self._next()

    def _write_rejection(self, error_type: str) -> None:
        self.write(server.rejection_bytes(error_type, self._owner.on_rejected))
        self.close()

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._in_head and self._running is None and not self._closing:
            self._write_rejection(gateway_responses.REQUEST_TIMEOUT)

    def _arm_idle(self) -> None:
        """The connection is idle from now. One timer per connection, moved only when it fires:
        a timer per request left cancelled handles behind that cost a GC pass every ~700
        requests (5% of the loop's samples in bench/profiles/httptools-raw.txt)."""
        self._idle_since = self._loop.time()
        if self._idle is None:
            self._idle = self._loop.call_at(self._idle_since + self._listener.keepalive_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if not self.idle() or self._closing:
            return  # busy: _arm_idle starts the clock again when it is idle
        due = self._idle_since + self._listener.keepalive_timeout
        if self._loop.time() >= due:
            self.close()
        else:
            self._idle = self._loop.call_at(due, self._idle_check)

    def _cancel_timers(self) -> None:
        for handle in (self._head_deadline, self._idle):
            if handle is not None:
                handle.cancel()
        self._head_deadline = self._idle = None

    def idle(self) -> bool:
        return self._running is None and not self._queue and not self._in_head

    async def finished(self) -> None:
        """Wait until the running request (if any) is answered."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    # -- upgrades go to aiohttp ---------------------------------------------------------------

    def _hand_over(self, tail: bytes) -> None:
        """Give the connection to aiohttp from the upgrade request on (after those before it)."""
        method, url, version, raw_headers = self._upgrade_head
        lines = [method + b" " + url + b" HTTP/" + version.encode("ascii")]
        lines.extend(name + b": " + value for name, value in raw_headers)
        replay = b"\r\n".join(lines) + b"\r\n\r\n" + b"".join(self._upgrade_body) + tail
        self._queue.extend(self._parsed)
        self._parsed.clear()
        self.pause_body()
        self._queue.append(replay)
        self._next()

    def _do_hand_over(self, replay: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self._closing = True  # this protocol is done with the connection
        self._cancel_timers()
        self._owner.connections.discard(self)
        handler = self._owner.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        handler.data_received(replay)


class FastServer:
    """The protocol factory for ``loop.create_server``, with aiohttp's ``shutdown`` contract."""

    def __init__(
        self,
        handler: Handler,
        listener: settings.ListenerSettings,
        on_rejected: server.OnRejected | None,
        fallback: server.GatewayServer,
    ) -> None:
        self.handler = handler
        self.listener = listener
        self.on_rejected = on_rejected
        self.fallback = fallback
        self.connections: set[HttpConnection] = set()

    def __call__(self) -> HttpConnection:
        return HttpConnection(self)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close idle connections now, let running requests finish for up to ``timeout`` s,
        then close the rest (the listening socket is already closed by the caller)."""
        for connection in list(self.connections):
            if connection.idle():
                connection.close()
        busy = [c for c in self.connections if not c.idle()]
        if busy:
            with_timeout = asyncio.gather(*(c.finished() for c in busy), return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(with_timeout, timeout)
        for connection in list(self.connections):
            connection.close()
        await self.fallback.shutdown(timeout)
