"""Validates a WebSocket upgrade before anything of the Api runs (DESIGN.md section 8)."""

from __future__ import annotations

import base64

from propylon_config import model
from propylon_proxy import incoming


def is_upgrade(request: incoming.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def broken(request: incoming.Request) -> bool:
    """A handshake RFC 6455 section 4.2.1 refuses: wrong method, version or key."""
    if request.method != "GET" or request.version < (1, 1):
        return True
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return True
    if request.headers.get("Sec-WebSocket-Version", "") != "13":
        return True
    try:
        return len(base64.b64decode(request.headers.get("Sec-WebSocket-Key", ""), validate=True)) != 16
    except ValueError:
        return True


def origin_refused(request: incoming.Request, api: model.Api) -> bool:
    """With CORS allowOrigins set, a browser Origin it does not list is refused before $connect."""
    origin = request.headers.get("Origin")
    if origin is None or api.cors is None or not api.cors.allow_origins:
        return False
    allowed = api.cors.allow_origins
    return "*" not in allowed and origin not in allowed
