"""Writing a ``Reply`` on a ``fast_server`` connection: the head built as one string, written
with the body in one ``transport.write`` (or with the first streamed chunk), no writer objects.

The framing is aiohttp's (``web.StreamResponse._prepare_headers``), so a client cannot tell the
two servers apart by it: Content-Length when the length is known, else chunked on HTTP/1.1 and
close-delimited on HTTP/1.0; no body (and no framing headers that claim one) for HEAD, 1xx, 204
and 304; ``Connection: keep-alive`` for a kept HTTP/1.0 connection, ``close`` for a closed 1.1
one; Date; ``Content-Type: application/octet-stream`` for an untyped body. A header name or value
with CR or LF is refused (ValueError, a 500), as aiohttp refuses it: no response splitting.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time

from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, web

from propylon_proxy import context, replies, responding, upstream, upstream_pool
from propylon_proxy.fast_server import FastRequest

log = logging.getLogger("propylon.proxy")

# What ``responding.send`` hands back for a fast connection: the response is already written.
WRITTEN = web.StreamResponse()
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_date: tuple[int, str] = (0, "")


def _now() -> str:
    """The Date header's value, formatted once a second rather than per response."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, email.utils.formatdate(second, usegmt=True))
    return _date[1]


# (version, status, reason) -> the status line: a backend's answers repeat (0.35 -> 0.12 us).
# At most _STATUS_LINES_MAX kept (a backend's reasons are its own text).
_STATUS_LINES_MAX = 1024
_STATUS_LINES: dict[tuple[HttpVersion, int, str | None], str] = {}


def _status_line(version: HttpVersion, status: int, reason: str | None) -> str:
    line = f"HTTP/{version.major}.{version.minor} {status} {reason or _REASONS.get(status, '')}"
    if len(_STATUS_LINES) < _STATUS_LINES_MAX:
        _STATUS_LINES[(version, status, reason)] = line
    return line


def _head(
    request: FastRequest,
    status: int,
    reason: str | None,
    headers: list[tuple[str, str]],
    length: int | None,
    *,
    close: bool,
    server_name: bool,
) -> tuple[bytes, bool]:
    """The response head and whether the body is chunked. ``length`` is the whole body's (then
    it replaces any Content-Length header), or None to take the headers' own."""
    version = request.version if request.version in (HttpVersion10, HttpVersion11) else HttpVersion11
    empty = status < 200 or status in (204, 304) or request.method == "HEAD"
    first = _STATUS_LINES.get((version, status, reason))
    if first is None:
        first = _status_line(version, status, reason)
    lines = [first]
    typed = dated = named = connection = False
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length":
            if length is None and status not in (204, 304):
                length = int(value)
            continue  # written once, below
        elif lower == "transfer-encoding":
            continue  # the framing is this writer's
        elif lower == "content-type":
            typed = True
        elif lower == "date":
            dated = True
        elif lower == "server":
            named = True
        elif lower == "connection":
            connection = True
        lines.append(f"{name}: {value}")
    chunked = _framing(
        request, lines, version, status, length, empty, (typed, dated, named, connection), close, server_name
    )
    text = "\r\n".join(lines) + "\r\n\r\n"
    if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
        raise ValueError("CR or LF in a response header")
    return text.encode("utf-8", "replace"), chunked


def _framing(
    request: FastRequest,
    lines: list[str],
    version: HttpVersion,
    status: int,
    length: int | None,
    empty: bool,
    seen: tuple[bool, bool, bool, bool],
    close: bool,
    server_name: bool,
) -> bool:
    """Append the headers this writer adds after the reply's own (``seen``: whether those had
    Content-Type, Date, Server, Connection); sets the request's keep-alive; True for chunked."""
    typed, dated, named, connection = seen
    keep_alive = request.keep_alive and not close
    chunked = False
    if length is not None and status not in (204, 304):
        lines.append(f"Content-Length: {length}")
    if not empty:
        if length is None:
            if version == HttpVersion11:
                chunked = True
                lines.append("Transfer-Encoding: chunked")
            else:
                keep_alive = False
        if length != 0 and not typed:
            lines.append("Content-Type: application/octet-stream")
    if not dated:
        lines.append(f"Date: {_now()}")
    if server_name and not named:
        lines.append("Server: propylon")
    if not connection:
        if keep_alive and version == HttpVersion10:
            lines.append("Connection: keep-alive")
        elif not keep_alive and version == HttpVersion11:
            lines.append("Connection: close")
    request.keep_alive = keep_alive
    return chunked


def prepare(headers: list[tuple[str, str]]) -> replies.Prepared | None:
    """The per-header part of ``_send_whole``'s head, rendered once for a reply that is sent
    many times as it is (a cache entry): what ``_prepared_head`` writes while the reply's
    headers still equal these. None when a header cannot be written (CR or LF: ``_head``
    refuses it when it is sent). Measured in process (issue 15, perf-shell, best of 9 on a loaded
    machine): ``_send_whole`` of a cache hit with 7 headers 6.5-8.5 -> 3.5-4.5 us."""
    lines = []
    typed = dated = named = connection = False
    for name, raw in headers:
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding", "x-request-id"):
            continue  # the framing and the request id are written per response
        typed = typed or lower == "content-type"
        dated = dated or lower == "date"
        named = named or lower == "server"
        connection = connection or lower == "connection"
        lines.append(f"{name}: {responding.as_written(raw)}\r\n")
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        return None
    return replies.Prepared(list(headers), text.encode("utf-8", "replace"), (typed, dated, named, connection))


def _prepared_head(
    request: FastRequest, reply: replies.Reply, prepared: replies.Prepared, request_id: str, length: int | None
) -> bytes:
    """``_head`` of a whole reply whose header lines were rendered by ``prepare``."""
    version = request.version if request.version in (HttpVersion10, HttpVersion11) else HttpVersion11
    status = reply.status
    empty = status < 200 or status in (204, 304) or request.method == "HEAD"
    lines = [f"HTTP/{version.major}.{version.minor} {status} {reply.reason or _REASONS.get(status, '')}"]
    lines.append(f"x-request-id: {request_id}")
    _framing(request, lines, version, status, length, empty, prepared.seen, reply.close, True)
    rest = "\r\n".join(lines[1:]) + "\r\n\r\n"
    text = lines[0] + rest  # the status line (its reason) and the lines after the prepared ones
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("CR or LF in a response header")
    return lines[0].encode("utf-8", "replace") + b"\r\n" + prepared.lines + rest.encode("utf-8", "replace")


async def send(ctx: context.RequestContext, reply: replies.Reply, stall_seconds: float) -> web.StreamResponse:
    """``responding.send`` for this server; its one caller has already made a reply under 200
    the 502 (``responding.final``)."""
    request = ctx.request
    assert isinstance(request, FastRequest)
    if reply.stream is not None:
        await _relay(ctx, request, reply, reply.stream, stall_seconds)
    else:
        await _send_whole(ctx, request, reply)
    return WRITTEN


async def _send_whole(ctx: context.RequestContext, request: FastRequest, reply: replies.Reply) -> None:
    status = reply.status
    body = b"" if status in (204, 304) else reply.body  # a stray body would desync the connection
    length = None if status in (204, 304) else len(body)
    prepared = reply.prepared
    if prepared is not None and prepared.headers == reply.headers:  # no after hook changed them
        head = _prepared_head(request, reply, prepared, ctx.request_id, length)
    else:
        # The request id is the gateway's own: a MOCK header of that name cannot replace it.
        headers = [(n, responding.as_written(v)) for n, v in reply.headers if n.lower() != "x-request-id"]
        headers.append(("x-request-id", ctx.request_id))
        head, _ = _head(request, status, reply.reason, headers, length, close=reply.close, server_name=True)
    connection = request.connection
    request.started = True
    if body and request.method != "HEAD":
        connection.write(head + body)
        ctx.response_length += len(body)
    else:
        connection.write(head)
    await connection.drain()


async def _relay(
    ctx: context.RequestContext,
    request: FastRequest,
    reply: replies.Reply,
    stream: replies.BodyStream,
    stall_seconds: float,
) -> None:
    """``responding._relay`` for this server: the same stall watch and the same cuts."""
    written = [(name, value if value.isascii() else responding.as_written(value)) for name, value in reply.headers]
    written.append(("x-request-id", ctx.request_id))
    head, chunked = _head(request, reply.status, reply.reason, written, None, close=reply.close, server_name=False)
    empty = reply.status < 200 or reply.status in (204, 304) or request.method == "HEAD"
    connection = request.connection
    whole = stream.whole() if type(stream) is upstream_pool.PooledResponse else None
    if whole is not None:
        # Written here, without a coroutine; only a client too slow to take it is waited for.
        if empty or not whole:
            data = head + b"0\r\n\r\n" if chunked else head
        else:
            data = head + (b"%x\r\n%b\r\n0\r\n\r\n" % (len(whole), whole) if chunked else whole)
            ctx.response_length += len(whole)
        request.started = True
        connection.write(data)
        if connection.must_drain():
            await _drain_whole(ctx, request, stall_seconds)
        return
    held: bytes | None = head
    watch = responding.StallWatch(stall_seconds)
    try:
        if not stream.body_ready():
            connection.write(head)  # the body may be slow: the client gets the head now
            held = None
            request.started = True
        async for chunk in stream.iter_chunks():
            watch.moved("client")
            if chunk and not empty:
                data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
                if held is not None:
                    data = held + data
                    held = None
                    request.started = True
                connection.write(data)
                await connection.drain()
                ctx.response_length += len(chunk)
            watch.moved("backend")
    except asyncio.CancelledError:
        if not watch.absorb(ctx):
            raise
        _cut(request, held)
        return
    except upstream.UpstreamError:
        # The head is already sent: the only honest signal left is to cut the connection.
        log.warning("backend hung up mid-response (request %s)", ctx.request_id)
        _cut(request, held)
        return
    finally:
        watch.cancel()
        await stream.release()
    tail = b"0\r\n\r\n" if chunked else b""
    if held is not None:
        tail = held + tail
    request.started = True
    if tail:
        connection.write(tail)


async def _drain_whole(ctx: context.RequestContext, request: FastRequest, stall_seconds: float) -> None:
    """A backend body that arrived whole with its head (``PooledResponse.whole``, the backend
    connection already back in the pool) went out in one write, framed as ``_relay`` frames
    it, but the client's socket is full: wait for it under the ``StallWatch`` ``_relay``
    would give it."""
    watch = responding.StallWatch(stall_seconds)
    watch.moved("client")
    try:
        await request.connection.drain()
    except asyncio.CancelledError:
        if not watch.absorb(ctx):
            raise
        _cut(request, None)
    finally:
        watch.cancel()


def _cut(request: FastRequest, held: bytes | None) -> None:
    """End a relay that cannot complete: the head (if still held), then the connection closes."""
    if held is not None:
        request.connection.write(held)
    request.started = True
    request.keep_alive = False
    request.connection.close()


async def adopt(ctx: context.RequestContext, response: web.StreamResponse) -> web.StreamResponse:
    """Write an aiohttp ``web.Response`` made elsewhere (the WebSocket entry's refusals)."""
    request = ctx.request
    assert isinstance(request, FastRequest) and isinstance(response, web.Response)
    body = response.body if isinstance(response.body, bytes) else b""
    reply = replies.Reply(status=response.status, headers=list(response.headers.items()), body=body)
    if reply.status < 200:
        reply = await responding.final(ctx, reply)
        ctx.error_type = reply.error_type
    ctx.status = reply.status
    await _send_whole(ctx, request, reply)
    return WRITTEN
