"""AWS API Gateway's WebSocket event for FUNCTION integrations (CONNECT, MESSAGE, DISCONNECT).

``requestContext.authorizer`` is what $connect's authorizer learnt, captured once when the
connection opens and sent with every later event of it, as AWS does: a REQUEST/TOKEN
authorizer's ``context`` keys plus ``principalId`` (and ``integrationLatency``), or a JWT's
``claims``/``scopes`` plus ``principalId`` (its ``sub``). Null without an authorizer.
A CONNECT event also carries the upgrade's ``headers``/``multiValueHeaders`` and
``queryStringParameters``/``multiValueQueryStringParameters`` (null when there are none).

The rest is AWS's field for field, as the HTTP events write them: ``apiId`` is the Api's name
(``$context.apiId``), ``domainName`` the Host without its port, ``requestTime`` in CLF,
``extendedRequestId`` the ``requestId`` (on CONNECT the upgrade's own, the id its access-log
line and ``x-request-id`` carry), ``messageDirection`` always ``IN``; ``messageId`` only on
MESSAGE; ``disconnectStatusCode``/``disconnectReason`` only on DISCONNECT (the close frame's).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from propylon_proxy import context as request_context
from propylon_proxy import ids
from propylon_proxy.functions import events as http_events
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
    ws: tables.WsStage,
    connection: registry.Connection,
    route_key: str,
    event_type: str,
    body: str | bytes | None,
    request_id: str | None = None,
) -> bytes:
    """The event for one CONNECT, MESSAGE or DISCONNECT; ``request_id`` is the upgrade's for
    CONNECT (a message or $disconnect gets one of its own)."""
    now = time.time()
    request_id = request_id or ids.request_id()
    context: dict[str, Any] = {"routeKey": route_key}
    if event_type == "DISCONNECT":
        code, reason = connection.disconnect or (CLOSE_ABNORMAL, "")
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
    if event_type == "MESSAGE":
        context["messageId"] = secrets.token_urlsafe(9)
    context.update(
        {
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": http_events.request_time(now),
            "messageDirection": "IN",
            "stage": ws.stage.name,
            "connectedAt": int(connection.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "requestId": request_id,
            "domainName": domain(connection.domain_name),
            "connectionId": connection.id,
            "apiId": ws.api.name,
            "authorizer": connection.authorizer,
        }
    )
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


# What a DISCONNECT says when no close frame told a code (the connection dropped), as RFC 6455's
# 1006 means; a close frame without a code is 1005.
CLOSE_ABNORMAL = 1006
CLOSE_NO_STATUS = 1005


def domain(host: str) -> str:
    """The Host without its port, as the HTTP events' ``domainName`` (an IPv6 literal keeps its colons)."""
    return host.rpartition(":")[0] if host.count(":") == 1 else host


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
