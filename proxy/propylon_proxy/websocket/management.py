"""@connections on the internal listener: POST sends, GET describes, DELETE closes; else 410.

A connection this replica does not hold is looked up in the shared registry (``--redis``,
``cluster``): GET answers from it, POST and DELETE are forwarded to the owner replica.
410 GONE and 503 SERVICE_UNAVAILABLE are section-3 gateway responses (``{"message": "Gone"}``,
``x-propylon-error-type``, ``x-request-id``, the stage's overrides).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from propylon_proxy import context, gateway_responses, replies, responding, steps
from propylon_proxy.websocket import session

MARK = "/@connections/"


def split(path: str) -> tuple[str, str] | None:
    """(stage base path, connection id) of an @connections path, or None."""
    base, found, connection_id = path.partition(MARK)
    if not found or not connection_id or "/" in connection_id:
        return None
    return (base or "/"), connection_id


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def _refuse(ctx: context.RequestContext, error_type: str) -> web.StreamResponse:
    return await responding.send(ctx, steps.render_refusal(ctx, replies.refuse(error_type)))


_METHODS = frozenset({"POST", "GET", "DELETE"})  # what @connections answers (DESIGN.md section 5)


async def handle(
    ctx: context.RequestContext, sessions: session.Sessions, base: str, connection_id: str, max_bytes: int
) -> web.StreamResponse:
    """``max_bytes`` is the stage's maxMessageBytes: a POST carrying more is 413 REQUEST_TOO_LARGE
    and nothing is sent (AWS's PostToConnection refuses a payload over its frame limit too);
    relayed, it reached the client past the limit every message from it is held to."""
    request = ctx.request
    assert isinstance(request, web.BaseRequest)  # the internal listener is always aiohttp's
    if request.method not in _METHODS:
        # No such route, whoever holds the connection: the same section-3 404 on every replica
        # (it was a bare 405 on the owner and 410 Gone on the others).
        return await _refuse(ctx, gateway_responses.RESOURCE_NOT_FOUND)
    connection = sessions.registry.get(connection_id, base)
    if connection is None:
        if sessions.cluster is not None:
            return await _remote(ctx, sessions, base, connection_id, max_bytes)
        return await _refuse(ctx, gateway_responses.GONE)
    if request.method == "POST":
        data = await _data(request, max_bytes)
        if data is None:
            return await _refuse(ctx, gateway_responses.REQUEST_TOO_LARGE)
        if not sessions.offer(connection, data):
            return await _refuse(ctx, gateway_responses.GONE)
        return web.Response(status=200)
    if request.method == "GET":
        return web.json_response(
            {
                "connectedAt": _iso(connection.connected_at),
                "lastActiveAt": _iso(connection.last_active_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            }
        )
    await connection.close(1000, b"closed by @connections")  # DELETE
    return web.Response(status=204)


async def _data(request: web.BaseRequest, max_bytes: int) -> str | bytes | None:
    """The POST's payload (text when it is UTF-8), or None when it is over ``max_bytes``:
    a declared length is judged before anything is read."""
    if request.content_length is not None and request.content_length > max_bytes:
        return None
    body = await request.read()
    if len(body) > max_bytes:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


async def _remote(
    ctx: context.RequestContext, sessions: session.Sessions, base: str, connection_id: str, max_bytes: int
) -> web.StreamResponse:
    from propylon_proxy.websocket import cluster

    request = ctx.request
    assert isinstance(request, web.BaseRequest)  # the internal listener is always aiohttp's
    shared = sessions.cluster
    assert shared is not None
    try:
        entry = await shared.lookup(connection_id, base)
        if entry is None:
            return await _refuse(ctx, gateway_responses.GONE)
        if request.method == "GET":
            return web.json_response(
                {
                    "connectedAt": _iso(float(entry["connectedAt"])),
                    "lastActiveAt": _iso(float(entry["lastActiveAt"])),
                    "identity": {"sourceIp": entry.get("sourceIp", ""), "userAgent": entry.get("userAgent", "")},
                }
            )
        data = await _data(request, max_bytes) if request.method == "POST" else None
        if request.method == "POST" and data is None:
            return await _refuse(ctx, gateway_responses.REQUEST_TOO_LARGE)
        if not await shared.forward(entry, request.method, connection_id, data):
            return await _refuse(ctx, gateway_responses.GONE)
    except cluster.Unavailable:
        return await _refuse(ctx, gateway_responses.SERVICE_UNAVAILABLE)
    return web.Response(status=200 if request.method == "POST" else 204)
