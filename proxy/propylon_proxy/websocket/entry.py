"""Where the dispatcher hands WebSocket traffic over: upgrades and @connections calls.

Every refusal of an upgrade is a section-3 gateway response (JSON ``{"message": ...}`` with
``x-propylon-error-type`` and ``x-request-id``, the stage's overrides applied): a broken
handshake 400 BAD_REQUEST, a refused Origin 403 ACCESS_DENIED, the $connect route's own steps
(401, 403, 429, 500, ...), then its integration: a non-2xx answer 403 ACCESS_DENIED, a malformed
one 502 INTEGRATION_FAILURE, no answer at all 502 INTEGRATION_FAILURE / 504 INTEGRATION_TIMEOUT.

What the access log and the metrics record is set here as the HTTP path sets it: $connect's
metric labels before its steps run (a throttle refusal counts under them), and the status of
the responses made here as aiohttp objects (the 101 of a served upgrade, @connections' 200/204),
which never pass ``responding.send``; without it they were recorded as 500.
"""

from __future__ import annotations

from aiohttp import web

from propylon_proxy import context, gateway_responses, replies, responding, routing, steps
from propylon_proxy.websocket import events, management, session, tables, upgrade


async def serve(
    ctx: context.RequestContext, ws_tables: tables.Tables, sessions: session.Sessions, *, internal: bool
) -> web.StreamResponse | None:
    """The answer for WebSocket traffic, or None when the request is not ours."""
    request = ctx.request
    path = request.path
    if internal:
        parts = management.split(path)
        managed = ws_tables.match(parts[0], internal=True) if parts is not None else None
        if parts is not None and managed is not None:
            ctx.stage = managed.stage
            return _noted(
                ctx,
                await management.handle(
                    ctx, sessions, parts[0].rstrip("/") or "/", parts[1], managed.limits.max_message_bytes
                ),
            )
    ws = ws_tables.match(path, internal=internal)
    if ws is None:
        return None
    ctx.stage = ws.stage  # the stage's gateway-response overrides apply to every refusal below
    if not upgrade.is_upgrade(request) or upgrade.broken(request):
        return await _refuse(ctx, replies.refuse(gateway_responses.BAD_REQUEST))
    if upgrade.origin_refused(request, ws.api):
        return await _refuse(ctx, replies.refuse(gateway_responses.ACCESS_DENIED))
    ctx.connection_id = session.new_connection_id()
    if ws.connect_checks is not None:
        connect = ws.routes["$connect"]
        ctx.match = routing.Match(stage=ws.stage, route=connect, params=(), upstream_path="/")
        ctx.labels = ws.connect_labels  # as handling sets a route's: the limits step counts under them
        reply = await ws.connect_checks.run(ctx)
        if not 200 <= reply.status < 300:
            return await responding.send(ctx, reply)  # refused before $connect's integration
    if not isinstance(request, web.BaseRequest):
        # fast_server hands every upgrade (Connection: upgrade) to aiohttp before it parses it.
        return _noted(ctx, web.json_response({"message": "Bad Request"}, status=400))
    connection = sessions.open(
        request,
        ws,
        ctx.source_ip,
        internal=internal,
        authorizer=events.authorizer(ctx),
        connection_id=ctx.connection_id,
    )
    refusal = await sessions.connect(connection, ctx)
    if refusal is not None:
        return await _refuse(ctx, refusal)
    _named(ctx, connection.socket)  # before the 101 is prepared: its head carries them
    return _noted(ctx, await sessions.serve(request, connection))  # 101: served until it closed


def _named(ctx: context.RequestContext, response: web.StreamResponse) -> None:
    """The request id and ``Server: propylon`` on a response made here, as ``responding`` puts
    them on every response the gateway makes (DESIGN.md §8: every response carries
    x-request-id); otherwise aiohttp names itself and its version. Only before its head is sent."""
    if response.prepared:
        return
    response.headers["x-request-id"] = ctx.request_id
    response.headers.setdefault("Server", "propylon")


def _noted(ctx: context.RequestContext, response: web.StreamResponse) -> web.StreamResponse:
    """``response``'s status (and a whole body's length) on the context, for the access log and
    the metrics, unless ``responding.send`` already set them (a gateway response); a response
    still to be sent (@connections' 200/204, the 400 below) gets the request id (``_named``)."""
    _named(ctx, response)
    if not ctx.status:
        ctx.status = response.status
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            ctx.response_length = len(response.body)
    return response


async def _refuse(ctx: context.RequestContext, refusal: replies.Refusal) -> web.StreamResponse:
    return await responding.send(ctx, steps.render_refusal(ctx, refusal))
