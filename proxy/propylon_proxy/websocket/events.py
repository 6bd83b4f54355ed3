"""AWS API Gateway's WebSocket event for FUNCTION integrations (CONNECT, MESSAGE, DISCONNECT).

``requestContext.authorizer`` is what $connect's authorizer learnt, captured once when the
connection opens and sent with every later event of it, as AWS does: a REQUEST/TOKEN
authorizer's ``context`` keys plus ``principalId`` (and ``integrationLatency``), or a JWT's
``claims``/``scopes`` plus ``principalId`` (its ``sub``). Null without an authorizer.
A CONNECT event also carries the upgrade's ``headers``/``multiValueHeaders`` and
``queryStringParameters``/``multiValueQueryStringParameters`` (null when there are none).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from propylon_proxy import context as request_context
from propylon_proxy.websocket import registry, tables


def authorizer(ctx: request_context.RequestContext) -> dict[str, Any] | None:
    """What $connect's checks learnt about the caller, in the event's shape (None: no authorizer)."""
    if ctx.claims is not None:
        return {
            "principalId": ctx.principal_id,
            "claims": dict(ctx.claims),
            "scopes": list(ctx.scopes) if ctx.scopes else None,
        }
    if ctx.authorizer_context is None and ctx.principal_id is None:
        return None
    found: dict[str, Any] = dict(ctx.authorizer_context or {})
    found["principalId"] = ctx.principal_id
    found["integrationLatency"] = 0
    return found


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
        "authorizer": connection.authorizer,
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": isinstance(body, bytes)}
    if event_type == "CONNECT" and connection.handshake is not None:
        headers, query = connection.handshake
        event["headers"], event["multiValueHeaders"] = _single_and_multi(headers)
        event["queryStringParameters"], event["multiValueQueryStringParameters"] = _single_and_multi(query)
    if isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode()
    elif body is not None:
        event["body"] = body
    return json.dumps(event).encode()


def _single_and_multi(
    pairs: tuple[tuple[str, str], ...],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """AWS's two views of repeated names: the last value, and every value in order."""
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi.items()}, multi
