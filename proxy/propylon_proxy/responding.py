"""Writing a ``Reply`` to the client: whole bodies in one write, streamed bodies chunk by chunk.

Every response carries the gateway's ``x-request-id``; responses the gateway makes itself name
``Server: propylon``; proxied ones keep the backend's, or have none (``Relayed``). The head of a response is held back
until its first body bytes so both leave in one ``send()``, unless the body is still to come,
in which case the head goes at once (a client never waits for a head the gateway has).

Only final responses are written: a reply whose status is below 200 (a MOCK or integration
response configured with one; a function's or template's is malformed before it gets here) is
an interim response, whose body the client would read as the next response on the connection.
It becomes 502 INTEGRATION_FAILURE (``final``), for both servers' writers.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from propylon_proxy import context, fast_responding, gateway_responses, replies, stall_sweeper, steps, upstream
from propylon_proxy.fast_server import FastRequest

log = logging.getLogger("propylon.proxy")


class HeldHead(web.StreamResponse):
    """A response whose head waits for the first body bytes, so both leave in one ``send()``.

    aiohttp's ``web.Response`` does this; ``StreamResponse`` sends the head at ``prepare()``,
    which costs a system call per response. ``_send_headers_immediately`` is aiohttp's own
    switch (a class attribute, not public API): if a later aiohttp drops it, responses simply go
    back to two writes. Where the body may be slow to come, ``send`` sends the head itself
    (``writer.send_headers()``).
    """

    _send_headers_immediately = False


class Relayed(HeldHead):
    """A proxied response: its ``Server`` header is the backend's, or there is none.

    aiohttp's ``_prepare_headers`` adds ``Server: Python/3.x aiohttp/3.x`` to every response that
    has none; a proxied one returns the backend's response (DESIGN.md §2.1), so that name is
    taken back here (``fast_responding`` never adds one to a relay). ``_prepare_headers`` is
    aiohttp's own step (not public API): tests/serve/test_audit_parity.py notices if it moves.
    """

    async def _prepare_headers(self) -> None:
        named = "Server" in self.headers
        await super()._prepare_headers()
        if not named:
            self.headers.popall("Server", None)


def as_written(value: str) -> str:
    """A header value received as latin-1 text (one char per byte, the upstream interface's
    convention), ready for aiohttp's writer, which encodes UTF-8: UTF-8 bytes pass through
    unchanged, other bytes cannot be written by aiohttp and become U+FFFD."""
    if value.isascii():
        return value
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


async def send(ctx: context.RequestContext, reply: replies.Reply, *, stall_seconds: float = 30.0) -> web.StreamResponse:
    if reply.status < 200:
        reply = await final(ctx, reply)
    ctx.status = reply.status
    if reply.error_type is not None:
        ctx.error_type = reply.error_type
    if type(ctx.request) is FastRequest:  # the httptools server writes its own way
        return await fast_responding.send(ctx, reply, stall_seconds)
    if reply.stream is not None:
        return await _relay(ctx, reply, reply.stream, stall_seconds)
    return await _send_whole(ctx, reply)


async def final(ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply:
    """A reply that is not a final response (status below 200) as the 502 the client gets: a
    1xx is interim, and its body would be taken for the next response (a forged one)."""
    log.warning("a %s reply is not a final response (request %s): 502 instead", reply.status, ctx.request_id)
    if reply.stream is not None:
        await reply.stream.release()  # not read: the backend connection is closed, not reused
    return steps.render_refusal(ctx, replies.refuse(gateway_responses.INTEGRATION_FAILURE))


async def adopt(ctx: context.RequestContext, response: web.StreamResponse) -> web.StreamResponse:
    """A response made elsewhere as an aiohttp object (the WebSocket entry's), sent as made."""
    if type(ctx.request) is FastRequest:
        return await fast_responding.adopt(ctx, response)
    return response


async def _send_whole(ctx: context.RequestContext, reply: replies.Reply) -> web.StreamResponse:
    """A response the gateway holds in full (error, MOCK, a cache hit)."""
    # The request id is the gateway's own: a MOCK header of that name cannot replace it.
    headers = [(name, as_written(value)) for name, value in reply.headers if name.lower() != "x-request-id"]
    headers.append(("x-request-id", ctx.request_id))
    response = HeldHead(status=reply.status, reason=reply.reason, headers=headers)
    # Otherwise aiohttp names itself and its version.
    if "Server" not in response.headers:
        response.headers["Server"] = "propylon"
    if reply.close:
        response.force_close()
    body = reply.body
    if reply.status in (204, 304):
        body = b""  # these never carry a body; a stray one would desync the connection
    else:
        response.content_length = len(body)
    await response.prepare(_aiohttp(ctx))  # a HeldHead: the head goes with the body
    if body and ctx.request.method != "HEAD":
        # HEAD: same headers (Content-Length included), no body.
        await response.write(body)
        ctx.response_length += len(body)
    await response.write_eof()
    return response


def _aiohttp(ctx: context.RequestContext) -> web.BaseRequest:
    request = ctx.request
    assert isinstance(request, web.BaseRequest)
    return request


def _close_delimited(ctx: context.RequestContext, out: web.StreamResponse) -> bool:
    """Whether ``out``'s body can only end with the connection: an HTTP/1.0 client (no chunked)
    and a backend body of unknown length (chunked or read until close).

    aiohttp then drops keep-alive for the head it writes but had already noted the connection's
    keep-alive on the response, so the head said nothing of the framing and the connection
    stayed open: the client could not find the body's end. ``fast_responding._framing`` closes."""
    if ctx.request.version >= (1, 1) or "Content-Length" in out.headers:
        return False
    status = out.status
    return not (status < 200 or status in (204, 304) or ctx.request.method == "HEAD")


class StallWatch:
    """Ends a relay that makes no progress for ``seconds`` (issue 8, item 6).

    The loop's ``stall_sweeper`` checks it (no timer per relay): the per-chunk cost is two
    attribute writes. ``side`` says what the relay is waiting on ("backend" while reading a
    chunk, "client" while the client drains one), so the access log can say who stalled.
    """

    __slots__ = ("_loop", "_sweeper", "_task", "fired", "progress", "seconds", "side")

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.seconds = seconds
        self._task = asyncio.current_task()
        self.progress = self._loop.time()
        self.side = "backend"
        self.fired = False
        self._sweeper = stall_sweeper.for_loop(self._loop)
        self._sweeper.add(self)

    def fire(self) -> None:
        """No progress for ``seconds``: the sweeper ends the relay."""
        self.fired = True
        if self._task is not None:
            self._task.cancel()

    def moved(self, side: str) -> None:
        """Progress was made; the relay now waits on ``side``."""
        self.side = side
        self.progress = self._loop.time()

    def cancel(self) -> None:
        self._sweeper.watched.discard(self)

    def absorb(self, ctx: context.RequestContext) -> bool:
        """In a relay's ``except CancelledError``: True when this watch cut the relay (the
        cancellation is taken back, recorded and logged), False when someone else cancelled."""
        if not self.fired:
            return False
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        ctx.stalled = self.side
        log.warning("%s stalled mid-response for %s s (request %s): cut", self.side, self.seconds, ctx.request_id)
        return True


async def _relay(
    ctx: context.RequestContext, reply: replies.Reply, stream: replies.BodyStream, stall_seconds: float
) -> web.StreamResponse:
    """Stream a backend's body to the client, chunk by chunk.

    Neither the backend's headers nor a mapping can carry x-request-id, so appending it is
    setting it. Headers are handed over whole (one C-level copy instead of an add() each).
    ``stall_seconds`` without progress either way (the backend sends nothing, or the client
    reads nothing) cuts both connections: the client sees a cut response, never a falsely
    complete one.
    """
    written = [(name, value if value.isascii() else as_written(value)) for name, value in reply.headers]
    written.append(("x-request-id", ctx.request_id))
    out = Relayed(status=reply.status, reason=reply.reason, headers=written)
    if reply.close or _close_delimited(ctx, out):
        out.force_close()
    writer = None
    watch = StallWatch(stall_seconds)
    try:
        writer = await out.prepare(_aiohttp(ctx))
        if writer is not None and not stream.body_ready():
            writer.send_headers()
        async for chunk in stream.iter_chunks():
            watch.moved("client")
            await out.write(chunk)
            ctx.response_length += len(chunk)
            watch.moved("backend")
    except asyncio.CancelledError:
        if not watch.absorb(ctx):
            raise
        if writer is not None:
            writer.send_headers()
        transport = ctx.request.transport
        if transport is not None:
            transport.close()
        return out
    except upstream.UpstreamError:
        # The head is already sent: the only honest signal left is to cut the connection.
        log.warning("backend hung up mid-response (request %s)", ctx.request_id)
        if writer is not None:
            writer.send_headers()  # if still held: the client gets the head, then the cut
        transport = ctx.request.transport
        if transport is not None:
            transport.close()
        return out
    finally:
        watch.cancel()
        await stream.release()
    await out.write_eof()
    return out
