"""One pipelined connection to one Redis server: the fast path of ``redis_store``.

Every decision is one command, and there are thousands a second: a connection pool that
lends a connection per command and waits for its answer spends more CPU on the lending than
Redis spends on the script. Here commands from all requests go out on one connection and
answers are matched to them in order (Redis answers a connection's commands in the order it
sent them), parsed by hiredis. Commands issued in the same turn of the event loop leave in one
write at its end (auto-pipelining, as ioredis and Lettuce do it): the requests of one read
batch share one system call and one wake-up of the server instead of paying one each. A
command whose caller gave up (its time budget ran out) keeps its place in the queue, so the
answers after it still find their callers; a caller that needs to know what such a late answer
said (did a timed-out admit take tokens?) asks with ``on_late``.

A lost connection fails every command waiting on it; the next command connects again. Only
plain ``redis://`` and ``unix://`` URLs (with an optional password and database) come here;
TLS and Redis Cluster go through redis-py. No timeouts here: the caller bounds each call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import urllib.parse
from collections.abc import Callable
from typing import Any

import hiredis

_Queue = collections.deque[asyncio.Future[Any]]  # one connection's commands awaiting answers


class ReplyError(Exception):
    """An error answer from Redis (``NOSCRIPT``, ``WRONGTYPE``...): the server is fine."""


class ConnectionLost(ConnectionError):
    pass


def supports(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in ("redis", "unix")


def pack(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: an array of bulk strings. hiredis packs str, int, float and bytes in C
    (the same bytes: tests/proxy/test_redis_pipe.py; an admit's EVALSHA 4.4 -> 1.6 us, timeit);
    anything else (a bool) is packed here as ``str(arg)``."""
    try:
        packed: bytes = hiredis.pack_command(args)
        return packed
    except TypeError:
        return _pack_each(args)


def _pack_each(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Pipe:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = urllib.parse.unquote(parts.password) if parts.password else None
        self._username = urllib.parse.unquote(parts.username) if parts.username and parts.password else None
        db = query.get("db", [""])[0] if parts.scheme == "unix" else parts.path.strip("/")
        self._db = int(db) if db else 0
        self._writer: asyncio.StreamWriter | None = None
        self._pending: _Queue = collections.deque()
        self._reading: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the connection's
        # Commands packed this turn of the loop, for _writer, and whether their flush is due.
        self._out: list[bytes] = []
        self._out_for: asyncio.StreamWriter | None = None
        self._flush_due = False
        # Futures their callers gave up on -> what to call with the answer when it comes. An
        # entry leaves when its answer is read or its connection is lost, so it stays bounded.
        self._late: dict[asyncio.Future[Any], Callable[[Any], None]] = {}

    def send(self, *args: Any) -> asyncio.Future[Any] | None:
        """The command queued for this turn's write and the future of its answer, or None when
        not connected (then ``call``, which connects). Lets a caller bound the answer with a
        timer rather than a task."""
        return self.send_packed(pack(args))

    def send_packed(self, command: bytes) -> asyncio.Future[Any] | None:
        """``send`` for a command already in RESP (``pack``): a caller that sends the same
        command again and again packs it once."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return None
        return self._queue(writer, self._pending, command)

    def on_late(self, future: asyncio.Future[Any], late: Callable[[Any], None]) -> None:
        """``late(answer)`` once the answer of ``future`` (from ``send``, already given up on:
        done) is read, a ``ReplyError`` included; never called when the connection is lost
        first, since then the command's fate is unknown."""
        self._late[future] = late

    async def call(self, *args: Any) -> Any:
        writer = self._writer
        if writer is None or writer.is_closing():
            writer = await self._connect()
        return await self._queue(writer, self._pending, pack(args))

    def _queue(self, writer: asyncio.StreamWriter, pending: _Queue, command: bytes) -> asyncio.Future[Any]:
        """Answers are matched by order, so a command's future joins ``pending`` in the order
        its bytes join the write: every command of a connection goes through here."""
        loop = self._loop
        assert loop is not None  # set by _connect, the only way to a writer
        future: asyncio.Future[Any] = loop.create_future()
        pending.append(future)
        if self._out_for is not writer:
            # Another connection's leftovers: it is closing, and its reader fails their futures.
            self._out, self._out_for = [], writer
        self._out.append(command)
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_due = False
        out, writer = self._out, self._out_for
        self._out = []
        if out and writer is not None and not writer.is_closing():
            writer.write(out[0] if len(out) == 1 else b"".join(out))

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            if self._unix is not None:
                reader, writer = await asyncio.open_unix_connection(self._unix)
            else:
                reader, writer = await asyncio.open_connection(self._host, self._port)
            self._loop = asyncio.get_running_loop()
            pending: _Queue = collections.deque()  # this connection's own queue
            self._reading = self._loop.create_task(self._read(reader, writer, pending))
            hello: list[tuple[Any, ...]] = []
            if self._password is not None:
                hello.append(("AUTH", self._username, self._password) if self._username else ("AUTH", self._password))
            if self._db:
                hello.append(("SELECT", self._db))
            # Published once AUTH and SELECT are answered: until then ``send`` says "not
            # connected" and ``call`` waits here, so no command runs before SELECT (on db 0).
            for command in hello:
                await self._queue(writer, pending, pack(command))
            self._pending = pending
            self._writer = writer
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: _Queue) -> None:
        parser = hiredis.Reader(replyError=ReplyError, encoding="utf-8")
        error: BaseException = ConnectionLost("connection to Redis closed")
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = pending.popleft()
                    if future.done():  # its caller gave up; the answer still had to be read
                        if self._late and (late := self._late.pop(future, None)) is not None:
                            with contextlib.suppress(Exception):  # the reader must go on
                                late(reply)
                        continue
                    if isinstance(reply, ReplyError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except (OSError, hiredis.ProtocolError, IndexError) as exc:
            error = ConnectionLost(f"connection to Redis failed: {exc}")
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            while pending:
                future = pending.popleft()
                self._late.pop(future, None)
                if not future.done():
                    future.set_exception(error)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._reading
