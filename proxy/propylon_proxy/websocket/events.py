"""AWS API Gateway's WebSocket event for FUNCTION integrations (CONNECT, MESSAGE, DISCONNECT)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from propylon_proxy.websocket import registry, tables


def build(
    ws: tables.WsStage, connection: registry.Connection, route_key: str, event_type: str, body: str | bytes | None
) -> bytes:
    now = time.time()
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "messageId": secrets.token_urlsafe(9) if event_type == "MESSAGE" else None,
        "connectionId": connection.id,
        "connectedAt": int(connection.connected_at * 1000),
        "requestTimeEpoch": int(now * 1000),
        "requestId": secrets.token_urlsafe(12),
        "stage": ws.stage.name,
        "domainName": connection.domain_name,
        "apiId": ws.api.id,
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        "authorizer": None,
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": isinstance(body, bytes)}
    if isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode()
    elif body is not None:
        event["body"] = body
    return json.dumps(event).encode()
