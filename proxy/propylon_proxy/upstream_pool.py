"""An ``Upstream`` on asyncio protocols and ``httptools``: a small pooled HTTP/1.1 client.

Why it exists: profiling showed aiohttp's ``ClientSession`` taking about 60 % of the gateway's CPU
on a proxied request. A proxy needs far less than a general client: no cookies, redirects,
decompression, proxies or URL handling, just "write these bytes, parse that head, stream the
body". This module does only that; ``upstream_aiohttp`` stays as the reference it is tested
against (``tests/upstream`` runs one table against both).

What it does:
- one pool of idle keep-alive connections per (host, port), last-in first-out (the most recently
  used socket is the least likely to have been closed by the backend), bounded in size, an idle
  connection closed after ``idle_timeout`` seconds (by a sweep, so up to 1.5 times that);
- the request head is written in one buffer (with a small bytes body, in the same buffer); a
  streamed body is written as it comes, chunk-encoded when the caller gave no Content-Length,
  with write flow control (waits for the socket to drain);
- the response head is parsed by ``httptools`` (llhttp); the body is handed out by
  ``iter_chunks()`` through a bounded buffer: when the consumer lags the socket stops being read,
  so a 50 MB body never sits in memory;
- HEAD, 1xx, 204 and 304 responses have no body; content-length, chunked and read-until-close
  bodies are handled; ``Connection: close`` and HTTP/1.0 responses are never reused;
- a connection goes back to the pool only when its request body was fully sent, its response
  body fully read, and both sides allow keep-alive. Anything else closes it.

What it leaves out on purpose: a limit on connections in use (the gateway bounds concurrency at
its listeners; a second queue here would only hide overload) and protocol upgrades (a 101
answer is a protocol error here; WebSocket proxying takes another path). ``https://`` backends get
TLS with certificate and host-name verification (system CAs unless a context is given).

It retries nothing: the pipeline decides. The one judgement it makes is how to report a reused
connection that fails before any byte of a response arrived (the backend may have closed it while
it sat idle, and we cannot know whether the request was processed):

    It is ``UpstreamStaleConnection``, an ``UpstreamConnectError`` ("nothing happened, retry if
    you like", though the backend itself is not known to be down) only when the
    connection came from the pool, no response byte was received, the method is idempotent
    (RFC 9110 section 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and the body can be sent
    again (none, or bytes, not a stream already consumed). Otherwise it is
    ``UpstreamProtocolError`` (-> 502), because replaying could act twice.

A fresh connection that fails after the request was written is always ``UpstreamProtocolError``.
Connections that the backend closed while idle are noticed (``connection_lost``) and dropped from
the pool before they can be picked, which makes the race above rare.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import typing
from collections.abc import AsyncIterable, AsyncIterator

import httptools

from propylon_proxy import upstream

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

#: Request bodies up to this size are written together with the head, in one send().
_COALESCE_LIMIT = 64 * 1024
#: A response head larger than this is refused: an unbounded head is a memory attack vector.
# (host, port, TLS): connections are only ever reused for the same backend and the same security.
PoolKey = tuple[str, int, bool]

_MAX_HEAD_BYTES = 64 * 1024


def _encode_head(request: upstream.UpstreamRequest, extra: str) -> bytes:
    parts = [f"{request.method} {request.target} HTTP/1.1\r\n"]
    for name, value in request.headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append(extra)
    parts.append("\r\n")
    head = "".join(parts)
    # The pipeline validates headers; this is the last line of defence against header injection.
    lines = len(request.headers) + 2 + extra.count("\n")
    if head.count("\n") != lines or head.count("\r") != lines or "\0" in head:
        raise upstream.UpstreamRequestError("CR, LF or NUL in request line or header")
    if " " in request.target or " " in request.method or not request.target:
        raise upstream.UpstreamRequestError("space in request target or method, or empty target")
    try:
        # Header text is bytes, one character per byte (mappings write UTF-8 so); anything else
        # was never meant for the wire, and is refused rather than guessed at or crashed on.
        return head.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise upstream.UpstreamRequestError("a character outside one byte in request line or header") from exc


def _framing(headers: list[tuple[str, str]]) -> tuple[int | None, bool, bool]:
    """(declared Content-Length, Transfer-Encoding present, Connection: close) of a request."""
    length: int | None = None
    has_te = False
    close = False
    for name, value in headers:
        lname = name.lower()
        if lname == "content-length":
            length = int(value)
        elif lname == "transfer-encoding":
            has_te = True
        elif lname == "connection" and "close" in value.lower():
            close = True
    return length, has_te, close


class _Connection(asyncio.Protocol):
    """One TCP connection to a backend, carrying one exchange at a time."""

    def __init__(self, pool: PooledUpstream, key: PoolKey) -> None:
        self._pool = pool
        #: The loop this connection lives on (its timers and futures; the pool reads its clock).
        self.loop = asyncio.get_running_loop()
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # The head deadline (see arm_head_deadline): when the current exchange's head is due,
        # and the one timer that watches it, with the time it was set for.
        self._head_due: float | None = None
        self._head_timeout = 0.0
        self._due_timer: asyncio.TimerHandle | None = None
        self._due_timer_at = 0.0
        # The response parser, kept from one exchange to the next while it stands between two
        # messages (see finish_exchange): a new HttpResponseParser per exchange was ~1.4 us.
        self._spare_parser: httptools.HttpResponseParser | None = None
        self._at_boundary = False
        self._reset_exchange(None)

    # -- exchange state ---------------------------------------------------------------------

    def _reset_exchange(self, head_waiter: asyncio.Future[None] | None) -> None:
        self._active = head_waiter is not None
        parser = None
        if head_waiter is not None:
            parser = self._spare_parser or httptools.HttpResponseParser(self)
        self._spare_parser = None
        self._parser = parser
        self._head_waiter = head_waiter
        self.head_bytes = 0
        self.got_bytes = False
        self.head_done = False
        self.message_done = False
        self.no_body = False
        self.until_close = False
        self.keep_alive = False
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.framed = False  # a Content-Length or Transfer-Encoding header was received
        self.transfer_coded = False  # a Transfer-Encoding header was received
        # Why a head that arrived is never a final answer here (a 101, an unrelayable head; see
        # on_headers_complete): data_received aborts the exchange with it.
        self.refused_head: str | None = None
        self._buffer: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.request_done = True
        self.request_close = False
        self.replayable = False
        self.body_task: asyncio.Task[None] | None = None

    def finish_exchange(self) -> None:
        """Back to idle; the next begin() resets the rest.

        The parser is kept for the next exchange only when its last message ended (llhttp is
        then ready for a new one). A HEAD answer with a length, or one read until close, leaves
        llhttp expecting a body it will never see: the next exchange gets a new parser."""
        self._spare_parser = self._parser if self._at_boundary else None
        self._active = False
        self._parser = None
        self._head_waiter = None
        self.body_task = None

    def head_timed_out(self, timeout: float) -> None:
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_exception(upstream.UpstreamTimeout(f"no response head within {timeout:g}s"))

    # A timer per request (call_at, then cancel) cost a heap push of a Python-compared handle
    # and left a cancelled handle in the loop's heap, on every request. Instead each connection
    # keeps one timer that is moved only when it fires: exchanges on a connection follow one
    # another, heads usually arrive in milliseconds, and deadlines are seconds away, so the
    # timer fires about once per timeout per busy connection, finds a later deadline (or none)
    # and moves there. A head that is late still times out exactly at its deadline.

    def arm_head_deadline(self, due: float, timeout: float) -> None:
        self._head_due = due
        self._head_timeout = timeout
        if self._due_timer is not None and self._due_timer_at <= due:
            return  # fires first, then moves to ``due``
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_timer = self.loop.call_at(due, self._head_due_check)
        self._due_timer_at = due

    def disarm_head_deadline(self) -> None:
        self._head_due = None

    def _head_due_check(self) -> None:
        self._due_timer = None
        due = self._head_due
        if due is None or self.closed:
            return
        if due > self._due_timer_at:
            self._due_timer = self.loop.call_at(due, self._head_due_check)
            self._due_timer_at = due
            return
        self._head_due = None
        self.head_timed_out(self._head_timeout)

    def _drop_due_timer(self) -> None:
        self._head_due = None
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None

    def begin(self, *, no_body: bool) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._reset_exchange(waiter)
        self.no_body = no_body
        return waiter

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCP transports are not asyncio.Transport
        # subclasses, though they have the same methods.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active or self._parser is None or self.message_done:
            # Bytes nobody asked for (on an idle connection, or after a complete response):
            # the stream is out of step, so it can never be trusted again.
            self.abort(upstream.UpstreamProtocolError("unexpected bytes from upstream"))
            return
        self.got_bytes = True
        if not self.head_done:
            self.head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.abort(upstream.UpstreamProtocolError("upstream switched protocols unasked"))
            return
        except httptools.HttpParserError as exc:
            self.abort(upstream.UpstreamProtocolError(f"invalid response from upstream: {exc}"))
            return
        if self.refused_head is not None:
            self.abort(upstream.UpstreamProtocolError(self.refused_head))
            return
        if not self.head_done and self.head_bytes > _MAX_HEAD_BYTES:
            self.abort(upstream.UpstreamProtocolError("upstream response head too large"))
            return
        if self.buffered > self._pool.high_water and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        if self._active and self.head_done and self.until_close and not self.message_done:
            # A body without length or chunking ends when the backend closes: that is success.
            self._on_message_done()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._drop_due_timer()
        self._pool._forget(self)
        if self._active and not self.message_done:
            if self.head_done and self.until_close and exc is None:
                self._on_message_done()
            else:
                self._fail(self._lost_error(exc))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("upstream connection lost"))
        if self.body_task is not None and not self.body_task.done():
            self.body_task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    # After message_done, llhttp may start parsing a second response sent unasked (in the same
    # packet): it must not touch the first one's status or headers, and the connection is spoiled.

    def on_message_begin(self) -> None:
        self._at_boundary = False
        if self.message_done:
            self.keep_alive = False  # a second response, unasked: the stream is out of step

    def on_status(self, status: bytes) -> None:
        if self.message_done:
            self.keep_alive = False
            return
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.message_done:
            self.keep_alive = False
            return
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True  # noted here: no second pass over the headers at their end
            self.transfer_coded = self.transfer_coded or len(name) == 17
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if self.message_done:
            self.keep_alive = False
            return
        status = self._parser.get_status_code()
        if status == 101:
            # Switching Protocols to a request whose Upgrade the gateway stripped: relayed, a
            # proxy in front would take the connection for a tunnel past its own checks. Never
            # a final head (the waiter is not resolved); data_received aborts the exchange.
            self.refused_head = "upstream switched protocols unasked"
            return
        if 100 <= status < 200:
            # An interim response (100 Continue, 103 Early Hints): the real one follows.
            self.headers = []
            self.reason = ""
            self.framed = self.transfer_coded = False
            return
        if (status > 599 or self.transfer_coded) and self._refuses_head(status):
            return
        self.status = status
        self.head_done = True
        self.until_close = not self.framed and status not in (204, 304)
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_result(None)
        if self.no_body or status in (204, 304):
            # llhttp does not know the request method, so it would wait for a HEAD body. Either
            # way the exchange is over; a later byte is caught in data_received.
            self.until_close = False
            self._on_message_done()

    def _refuses_head(self, status: int) -> bool:
        """A final head ``upstream.unrelayable_head`` refuses: kept from the caller (the waiter
        is not resolved) and aborted in data_received, as a 101 is. Asked only for a status
        over 599 or a head with Transfer-Encoding, so a Content-Length head pays two tests."""
        unrelayable = upstream.unrelayable_head(status, upstream.transfer_codings(self.headers))
        if unrelayable is None:
            return False
        self.refused_head = unrelayable
        return True

    def on_body(self, body: bytes) -> None:
        if self.message_done:
            # Body bytes after a HEAD/204/304 head: the backend is out of step with us.
            self.keep_alive = False
            return
        self._buffer.append(body)
        self.buffered += len(body)
        self._pool.max_buffered = max(self._pool.max_buffered, self.buffered)
        self._wake_body()

    def on_message_complete(self) -> None:
        self._at_boundary = True
        if not self.head_done or self.message_done:
            return  # the end of an interim 1xx response, or of a HEAD response already done
        self._on_message_done()

    # -- helpers ----------------------------------------------------------------------------

    def _on_message_done(self) -> None:
        self.message_done = True
        if self._parser is not None and not self.until_close:
            if self.no_body:
                # llhttp, not knowing the request was HEAD, would think an unframed head needs EOF.
                self.keep_alive = self._head_allows_keep_alive()
            else:
                self.keep_alive = self._parser.should_keep_alive()
        self._wake_body()

    def _head_allows_keep_alive(self) -> bool:
        assert self._parser is not None
        tokens = {t.strip().lower() for n, v in self.headers if n.lower() == "connection" for t in v.split(",")}
        if self._parser.get_http_version() == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def _lost_error(self, exc: Exception | None) -> upstream.UpstreamError:
        if self.head_done:
            return upstream.UpstreamProtocolError("upstream closed the connection mid-body")
        if not self.got_bytes and self.reused and self.replayable:
            return upstream.UpstreamStaleConnection("reused upstream connection was closed before any response")
        detail = f": {exc}" if exc else ""
        return upstream.UpstreamProtocolError(f"upstream closed the connection before a response{detail}")

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_exception(error)
        self._wake_body()

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self, error: BaseException | None = None) -> None:
        if error is not None and self._active:
            self._fail(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        return (
            not self.closed
            and self.message_done
            and self.keep_alive
            and self.request_done
            and not self.request_close
            and not self.until_close
            and self.error is None
            and not self._buffer
        )

    def write_paused(self) -> bool:
        """The socket's buffer is over its high-water mark: ``drain`` would wait."""
        return self._write_paused

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream connection lost")
        if self._write_paused:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    def has_body_bytes(self) -> bool:
        return bool(self._buffer)

    async def next_chunk(self) -> bytes | None:
        while True:
            if self._buffer:
                chunk = self._buffer.popleft()
                self.buffered -= len(chunk)
                if self.buffered <= self._pool.low_water and self.transport is not None and not self.closed:
                    self.transport.resume_reading()
                return chunk
            if self.error is not None and not self.message_done:
                raise self.error
            if self.message_done:
                return None
            self._body_waiter = self.loop.create_future()
            await self._body_waiter
            self._body_waiter = None


class PooledResponse:
    """An ``UpstreamResponse`` reading from one pooled connection."""

    __slots__ = ("_conn", "_finished", "headers", "reason", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._finished = False
        self.status = conn.status
        self.reason = conn.reason
        self.headers = conn.headers

    def body_ready(self) -> bool:
        conn = self._conn
        return bool(conn.has_body_bytes() or conn.message_done or conn.error is not None)

    def whole(self) -> bytes | None:
        """The entire body when all of it has already arrived (a small response comes in the
        same packet as its head), the connection handed back; else None, nothing taken (then
        ``iter_chunks``). The relay then writes head and body at once, without an async
        generator, a stall watch or a wait (docs/performance.md)."""
        conn = self._conn
        if self._finished or not conn.message_done or conn.error is not None:
            return None
        if conn.body_task is not None and not conn.body_task.done():
            return None  # answered before the request body was sent: release() ends that first
        buffer = conn._buffer
        body = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        if conn.buffered > conn._pool.high_water and conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()  # data_received paused it
        conn.buffered = 0
        self._finished = True
        conn._pool._release(conn)
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            chunk = await conn.next_chunk()
            if chunk is None:
                break
            yield chunk
        # Hand the connection back as soon as the body ends; release() is then a no-op.
        await self.release()

    async def release(self) -> None:
        if self._finished:
            return
        self._finished = True
        task = self._conn.body_task
        self._conn._pool._release(self._conn)
        await _settle(task)


class PooledUpstream:
    """An ``Upstream`` with its own small keep-alive pool (see the module docstring)."""

    def __init__(
        self,
        *,
        max_idle_per_host: int = 64,
        idle_timeout: float = 30.0,
        high_water: int = 256 * 1024,
        low_water: int = 64 * 1024,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_idle_per_host = max_idle_per_host
        # https:// backends: certificates verified against the system's CAs unless a context is
        # given (tests pass one that trusts their own CA). Made lazily: most gateways never need it.
        self._tls_context = tls_context
        self.idle_timeout = idle_timeout
        self.high_water = high_water
        self.low_water = low_water
        #: Largest response body buffer seen on any connection, in bytes (for tests and bench).
        self.max_buffered = 0
        #: Connections opened so far (for tests and bench).
        self.connections_opened = 0
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        # The loop of the first ``send``, kept: under load each asyncio.get_running_loop() (a
        # getpid system call in CPython 3.11) drew 4-5 % of the keyed-redis route's samples.
        self._loop: asyncio.AbstractEventLoop | None = None

    def idle_count(self) -> int:
        """Idle keep-alive connections currently pooled, over all backends."""
        return sum(len(idle) for idle in self._idle.values())

    # -- pool ---------------------------------------------------------------------------------

    def _take_idle(self, key: PoolKey, now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if now - conn.idle_since > self.idle_timeout:
                conn.abort()  # expired, the sweeper just has not got to it yet
                continue
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def _connect(self, key: PoolKey) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            host, port, tls = key
            if tls:
                if self._tls_context is None:
                    self._tls_context = ssl.create_default_context()
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, key), host, port, ssl=self._tls_context, server_hostname=host
                )
            else:
                _, conn = await loop.create_connection(lambda: _Connection(self, key), host, port)
        except OSError as exc:  # ssl.SSLError (a refused certificate) is one too
            raise upstream.UpstreamConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        self.connections_opened += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.body_task is not None and not conn.body_task.done():
            conn.body_task.cancel()
        if self._closed or not conn.reusable():
            conn.abort()
            return
        conn.finish_exchange()
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle_per_host:
            # Keep the hottest connections; the oldest idle one is the most likely to go stale.
            idle.pop(0).abort()
        loop = conn.loop
        conn.idle_since = loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.idle_timeout / 2, self._sweep)

    def _sweep(self) -> None:
        # One timer per pool instead of one per idle connection: a timer per request would cost
        # two heap operations on the hot path. An idle connection is therefore closed between
        # idle_timeout and 1.5 x idle_timeout after its last use (and never handed out expired).
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for idle in self._idle.values():
            for conn in [c for c in idle if now - c.idle_since > self.idle_timeout]:
                conn.abort()  # connection_lost removes it from the pool
                idle.remove(conn)
        if any(self._idle.values()) and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._sweep)

    def _forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    # -- Upstream -------------------------------------------------------------------------------

    async def send(self, request: upstream.UpstreamRequest) -> PooledResponse:
        if self._closed:
            raise RuntimeError("PooledUpstream is closed")
        if request.scheme not in ("http", "https"):
            raise upstream.UpstreamRequestError(f"unsupported scheme {request.scheme!r}")
        key = (request.host, request.port, request.scheme == "https")
        body = request.body
        length, has_te, request_close = _framing(request.headers)
        extra = ""
        stream: AsyncIterable[bytes] | None = None
        chunked = False
        if isinstance(body, bytes | bytearray | memoryview):
            body = bytes(body)
            if length is None and not has_te and (body or request.method not in IDEMPOTENT_METHODS):
                extra = f"Content-Length: {len(body)}\r\n"
        elif body is not None:
            stream = body
            body = None
            if length is None:
                chunked = True
                if not has_te:
                    extra = "Transfer-Encoding: chunked\r\n"
        head = _encode_head(request, extra)
        replayable = request.method in IDEMPOTENT_METHODS and stream is None

        loop = self._loop
        if loop is None or loop.is_closed():  # the first send, or a pool outliving its loop (tests)
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout
        conn: _Connection | None = None
        try:
            conn = self._take_idle(key, loop.time())
            if conn is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        conn = await self._connect(key)
                except TimeoutError as exc:
                    raise upstream.UpstreamTimeout(f"no connection within {request.timeout:g}s") from exc
            self._busy.add(conn)
            head_waiter = conn.begin(no_body=request.method == "HEAD")
            if stream is None:
                # A timer rather than asyncio.timeout(): it is on every request's path, and a
                # TimeoutError raised by the body's source must stay that, not become a head timeout.
                conn.arm_head_deadline(deadline, request.timeout)
            # A streamed body: the clock starts when the body has gone in full (``_send_body``).
            conn.replayable = replayable
            conn.request_close = request_close
            transport = conn.transport
            assert transport is not None
            if body and len(body) <= _COALESCE_LIMIT:
                transport.write(head + body)
            else:
                transport.write(head)
                if body:
                    transport.write(body)
            if stream is not None:
                conn.request_done = False
                conn.body_task = loop.create_task(
                    _send_body(conn, stream, chunked=chunked, length=length, timeout=request.timeout)
                )
            await head_waiter
        except BaseException as error:
            if conn is not None:
                self._busy.discard(conn)
                conn.abort()
                if not isinstance(error, asyncio.CancelledError):
                    await _settle(conn.body_task)
            raise
        finally:
            if conn is not None:
                conn.disarm_head_deadline()
        return PooledResponse(conn)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in list(idle):
                conn.abort()
        self._idle.clear()
        for conn in list(self._busy):
            conn.abort()
        self._busy.clear()


async def _settle(task: asyncio.Task[None] | None) -> None:
    """End a request body's task (cancelled if still running) and wait until it has.

    It may be waiting in the client body's ``readany()``: the server reads and drops what is left
    of the body once the answer is sent, and aiohttp refuses a second reader ("readany() called
    while another coroutine is already waiting"), which failed that request's connection."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait((task,))


def _clock_head(conn: _Connection, timeout: float) -> None:
    """The request body is sent (or the backend took no more of it): the head is due within
    ``timeout`` from now, unless it has already come (an early answer)."""
    if not conn.head_done and not conn.closed:
        conn.arm_head_deadline(conn.loop.time() + timeout, timeout)


async def _send_body(
    conn: _Connection, stream: AsyncIterable[bytes], *, chunked: bool, length: int | None, timeout: float
) -> None:
    """Write a streamed request body; on any failure, break the exchange with that failure.

    The integration timeout (``timeout``) is the backend's: its clock for the response head starts
    when the body has gone in full (AWS buffers the request and counts so), as a client that is
    slow to send its body is the client's (the body's stall timeout: 408). While the body is
    going, a backend that takes none of it for ``timeout`` is that timeout too (504)."""
    transport = conn.transport
    assert transport is not None
    sent = 0
    try:
        async for chunk in stream:
            if not chunk:
                continue  # an empty chunk would end a chunked body early
            sent += len(chunk)
            if length is not None and sent > length:
                raise upstream.UpstreamProtocolError("request body longer than its Content-Length")
            if conn.closed:
                return
            if chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if conn.write_paused():
                try:
                    async with asyncio.timeout(timeout):
                        await conn.drain()
                except TimeoutError:
                    raise upstream.UpstreamTimeout(f"backend took no request body for {timeout:g}s") from None
        if length is not None and sent != length:
            raise upstream.UpstreamProtocolError("request body shorter than its Content-Length")
        if chunked and not conn.closed:
            transport.write(b"0\r\n\r\n")
        conn.request_done = True
        _clock_head(conn, timeout)
    except asyncio.CancelledError:
        raise
    except ConnectionError:
        # The backend stopped reading (it may have answered early); the response says the rest.
        conn.request_done = False
        _clock_head(conn, timeout)
    except BaseException as exc:
        # The body's source failed (client gone, body too large): the caller sees that error.
        with contextlib.suppress(Exception):
            conn.abort(exc)
