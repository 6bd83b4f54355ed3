"""Where the dispatcher hands WebSocket traffic over: upgrades and @connections calls."""

from __future__ import annotations

from aiohttp import web

from propylon_proxy import context, responding, routing
from propylon_proxy.websocket import management, session, tables, upgrade


async def serve(
    ctx: context.RequestContext, ws_tables: tables.Tables, sessions: session.Sessions, *, internal: bool
) -> web.StreamResponse | None:
    """The answer for WebSocket traffic, or None when the request is not ours."""
    request = ctx.request
    path = request.path
    if internal:
        parts = management.split(path)
        if parts is not None and ws_tables.match(parts[0], internal=True) is not None:
            assert isinstance(request, web.BaseRequest)  # the internal listener is always aiohttp's
            return await management.handle(request, sessions, parts[0].rstrip("/") or "/", parts[1])
    ws = ws_tables.match(path, internal=internal)
    if ws is None:
        return None
    if not upgrade.is_upgrade(request) or upgrade.broken(request):
        return web.json_response({"message": "Bad Request"}, status=400)
    if upgrade.origin_refused(request, ws.api):
        return web.json_response({"message": "Forbidden"}, status=403)
    if ws.connect_checks is not None:
        connect = ws.routes["$connect"]
        ctx.stage = ws.stage
        ctx.match = routing.Match(stage=ws.stage, route=connect, params=(), upstream_path="/")
        reply = await ws.connect_checks.run(ctx)
        if not 200 <= reply.status < 300:
            return await responding.send(ctx, reply)  # refused before $connect's integration
    if not isinstance(request, web.BaseRequest):
        # fast_server hands every upgrade (Connection: upgrade) to aiohttp before it parses it.
        return web.json_response({"message": "Bad Request"}, status=400)
    return await sessions.serve(request, ws, ctx.source_ip)
