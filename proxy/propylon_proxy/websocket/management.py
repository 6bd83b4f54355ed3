"""@connections on the internal listener: POST sends, GET describes, DELETE closes; else 410."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

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


async def handle(
    request: web.BaseRequest, sessions: session.Sessions, base: str, connection_id: str
) -> web.StreamResponse:
    connection = sessions.registry.get(connection_id, base)
    if connection is None:
        return web.json_response({"message": "GoneException"}, status=410)
    if request.method == "POST":
        body = await request.read()
        try:
            data: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            data = body
        if not sessions.offer(connection, data):
            return web.json_response({"message": "GoneException"}, status=410)
        return web.Response(status=200)
    if request.method == "GET":
        return web.json_response(
            {
                "connectedAt": _iso(connection.connected_at),
                "lastActiveAt": _iso(connection.last_active_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            }
        )
    if request.method == "DELETE":
        await connection.socket.close(code=1000, message=b"closed by @connections")
        return web.Response(status=204)
    return web.json_response({"message": "Method Not Allowed"}, status=405)
