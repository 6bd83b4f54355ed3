"""Writing a ``Reply`` to the client: whole bodies in one write, streamed bodies chunk by chunk.

Every response carries the gateway's ``x-request-id``; responses the gateway makes itself name
``Server: propylon`` (proxied ones keep the backend's). The head of a response is held back
until its first body bytes so both leave in one ``send()``, unless the body is still to come,
in which case the head goes at once (a client never waits for a head the gateway has).
"""

from __future__ import annotations

import logging

from aiohttp import web

from propylon_proxy import context, replies, upstream

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


def as_written(value: str) -> str:
    """A header value received as latin-1 text (one char per byte, the upstream interface's
    convention), ready for aiohttp's writer, which encodes UTF-8: UTF-8 bytes pass through
    unchanged, other bytes cannot be written by aiohttp and become U+FFFD."""
    if value.isascii():
        return value
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


async def send(ctx: context.RequestContext, reply: replies.Reply) -> web.StreamResponse:
    ctx.status = reply.status
    if reply.error_type is not None:
        ctx.error_type = reply.error_type
    if reply.stream is not None:
        return await _relay(ctx, reply, reply.stream)
    return await _send_whole(ctx, reply)


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
    await response.prepare(ctx.request)  # a HeldHead: the head goes with the body
    if body and ctx.request.method != "HEAD":
        # HEAD: same headers (Content-Length included), no body.
        await response.write(body)
        ctx.response_length += len(body)
    await response.write_eof()
    return response


async def _relay(ctx: context.RequestContext, reply: replies.Reply, stream: replies.BodyStream) -> web.StreamResponse:
    """Stream a backend's body to the client, chunk by chunk.

    Neither the backend's headers nor a mapping can carry x-request-id, so appending it is
    setting it. Headers are handed over whole (one C-level copy instead of an add() each).
    """
    written = [(name, value if value.isascii() else as_written(value)) for name, value in reply.headers]
    written.append(("x-request-id", ctx.request_id))
    out = HeldHead(status=reply.status, reason=reply.reason, headers=written)
    if reply.close:
        out.force_close()
    writer = None
    try:
        writer = await out.prepare(ctx.request)
        if writer is not None and not stream.body_ready():
            writer.send_headers()
        async for chunk in stream.iter_chunks():
            await out.write(chunk)
            ctx.response_length += len(chunk)
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
        await stream.release()
    await out.write_eof()
    return out
