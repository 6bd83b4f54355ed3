"""The Amazon API Gateway proxy events, payload 1.0 (REST-style) and 2.0 (HTTP-API-style).

Handlers written for AWS read these events field by field, and frameworks (Powertools, Mangum)
validate their shape, so the shapes follow AWS exactly: a field AWS sends as null is null here,
a field AWS leaves out is left out here. What cannot come from AWS is mapped onto the closest
Propylon fact, the same way as in ``methodArn`` (DESIGN.md section 8): ``accountId`` is the Api's
namespace, ``apiId`` its name, ``stage`` the Stage's name.

The per-route parts (resource, route key, ids) are fixed when the plan is built
(``EventShape``); only what the request brings is read per request, from the RequestContext.

Headers follow the rules of a proxied request (DESIGN.md section 8, ``forwarding``): hop-by-hop
headers and those named in ``Connection`` are left out, client-sent Forwarded, X-Forwarded-* and
X-Real-IP (and their ``_`` twins) too unless the peer is a trusted proxy, and the gateway's own
X-Forwarded-For (the value a proxied backend gets), X-Forwarded-Proto and X-Forwarded-Port
(as AWS's events carry them) are added. The Host the client sent stays, as AWS's does.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from propylon_config import model
from propylon_proxy import context, forwarding, mappings, tracing

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Payload 2.0 sends these content types as text; every other body is base64 (DESIGN.md §8).
_TEXT_SUBTYPES = ("json", "xml", "javascript", "x-www-form-urlencoded")
# identity fields AWS always sends, null when there is no IAM/Cognito caller.
_NULL_IDENTITY = (
    "accessKey",
    "accountId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "user",
    "userArn",
)


def request_time(wall: float) -> str:
    """CLF time as AWS writes ``requestTime``: ``04/Mar/2020:19:15:17 +0000`` (always UTC)."""
    t = time.gmtime(wall)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def media_type(content_type: str | None) -> str:
    """``Text/HTML; charset=x`` -> ``text/html``."""
    return (content_type or "").partition(";")[0].strip().lower()


def matches_media_types(content_type: str | None, patterns: Sequence[str]) -> bool:
    """Does the type match one of ``binaryMediaTypes`` (``image/png``, ``image/*``, ``*/*``)?"""
    kind = media_type(content_type)
    if not kind:
        return False
    major, _, minor = kind.partition("/")
    for pattern in patterns:
        p_major, _, p_minor = pattern.strip().lower().partition("/")
        if (p_major in ("*", major)) and (p_minor in ("*", minor)):
            return True
    return False


def is_text_like(content_type: str | None) -> bool:
    """Payload 2.0's text types: text/*, JSON, XML, JavaScript and form bodies (and +json/+xml)."""
    kind = media_type(content_type)
    if not kind:
        return False
    major, _, minor = kind.partition("/")
    return major == "text" or any(minor == s or minor.endswith("+" + s) for s in _TEXT_SUBTYPES)


def _text(value: str) -> str:
    """A header value read as latin-1 (one char per byte), reread as UTF-8 when it is that."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


#: A header value as events carry it (an authorizer's identity sources read headers so too).
header_text = _text


# What an event does with a client header, by its name as sent (the forwarding module's rules,
# DESIGN.md section 8): classified once per name, at most _KINDS_MAX names (as forwarding._KINDS).
_PASS, _OMIT, _CONNECTION, _FOR, _PROTO, _PORT, _FWD = range(7)
_KINDS: dict[str, int] = {}
_KINDS_MAX = 1024


def _kind(name: str) -> int:
    lower = name.lower()
    if lower == "connection":
        kind = _CONNECTION
    elif lower in forwarding.HOP_BY_HOP:
        kind = _OMIT
    else:
        canonical = lower.strip().replace("_", "-")
        if not forwarding._is_forwarding(canonical):
            kind = _PASS
        elif canonical != lower or canonical == "x-forwarded-host":
            kind = _OMIT  # an underscore twin, never passed on; X-Forwarded-Host: the event has Host
        else:
            kind = {"x-forwarded-for": _FOR, "x-forwarded-proto": _PROTO, "x-forwarded-port": _PORT}.get(
                canonical, _FWD
            )
    if len(_KINDS) < _KINDS_MAX:
        _KINDS[name] = kind
    return kind


# A Connection value -> does it name anything but hop-by-hop headers? (``keep-alive``: no.) Its
# values repeat from request to request; at most _KINDS_MAX kept.
_NAMES_OTHERS: dict[str, bool] = {}


def _names_others(value: str) -> bool:
    others = not {token.strip().lower() for token in value.split(",")} <= forwarding.HOP_BY_HOP
    if len(_NAMES_OTHERS) < _KINDS_MAX:
        _NAMES_OTHERS[value] = others
    return others


def _connection_named(pairs: Sequence[tuple[str, str]]) -> frozenset[str]:
    """The names every ``Connection`` header lists, but the hop-by-hop ones and Host (which an
    event keeps, as AWS's do)."""
    named = forwarding._connection_named(pairs, [name.lower() for name, _ in pairs])
    return named - forwarding.HOP_BY_HOP - {"host"}


_PORTS: dict[int, str] = {}  # a listener's port as text (the few listeners a gateway has)


def _listener_port(ctx: context.RequestContext) -> str | None:
    """The port the client connected to (the listener's), None once the connection is gone."""
    transport = ctx.request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if type(sockname) is tuple and len(sockname) > 1:  # (host, port), or IPv6's 4-tuple
        return _PORTS.get(sockname[1]) or _PORTS.setdefault(sockname[1], str(sockname[1]))
    return None


def _forwarding(
    ctx: context.RequestContext, pairs: Sequence[tuple[str, str]] | None = None
) -> tuple[list[tuple[str, str]], str, str, str | None]:
    """(the client's headers an event carries, in order; the gateway's X-Forwarded-For, the
    value a proxied backend gets; its X-Forwarded-Proto; its X-Forwarded-Port, None once the
    connection is gone).

    One pass over the client's headers, each one's treatment looked up by name. A ``Connection``
    header that names anything but hop-by-hop headers starts it again, on the headers without
    what it names (``pairs``).
    """
    # The dispatcher's verdict on the peer (--trusted-proxies), as forwarding.headers has it: a
    # trusted proxy's X-Forwarded-Proto counts even when it sends no X-Forwarded-For.
    trusted = ctx.peer_trusted
    kinds = _KINDS
    kept: list[tuple[str, str]] = []
    keep = kept.append
    hops: list[str] | None = None
    proto = "http"
    port: str | None = None
    for pair in ctx.headers if pairs is None else pairs:
        kind = kinds.get(pair[0])
        if kind is None:
            kind = _kind(pair[0])
        if kind == _PASS:
            keep(pair)
        elif kind == _CONNECTION:
            if pairs is None:
                others = _NAMES_OTHERS.get(pair[1])
                if others is None:
                    others = _names_others(pair[1])
                if others:
                    named = _connection_named(ctx.headers)
                    return _forwarding(ctx, [p for p in ctx.headers if p[0].lower() not in named])
        elif kind != _OMIT and trusted:
            if kind == _FOR:
                hops = [pair[1]] if hops is None else [*hops, pair[1]]
            elif kind == _PROTO:
                # A trusted TLS-terminating proxy knows the client's scheme; we only saw http.
                value = pair[1].strip().lower()
                if value in ("http", "https"):
                    proto = value
            elif kind == _PORT:
                value = pair[1].strip()
                if port is None and value.isascii() and value.isdigit():  # a trusted proxy's port
                    port = value
            else:
                keep(pair)
    peer = ctx.peer
    return kept, ", ".join([*hops, peer]) if hops else peer, proto, port if port is not None else _listener_port(ctx)


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """The query string as decoded (name, value) pairs, in order, blank values kept."""
    if not raw:
        return []
    pairs = []
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


def _content_coded(ctx: context.RequestContext) -> bool:
    """A body sent with a ``Content-Encoding`` (gzip, ...) is not text of its Content-Type: it is
    base64-encoded so the function gets the bytes as sent (DESIGN.md §8: bodies are forwarded
    as sent, never inflated); decoded as UTF-8 it would be lost."""
    coding = ctx.request.headers.get("Content-Encoding")
    return coding is not None and coding.strip().lower() not in ("", "identity")


def _body_field(body: bytes, *, binary: bool) -> tuple[str, bool]:
    if binary:
        return base64.b64encode(body).decode("ascii"), True
    return body.decode("utf-8", "replace"), False


def path_parameters(ctx: context.RequestContext) -> dict[str, str] | None:
    """The route's path parameters, decoded, as events carry them; None when it has none."""
    match = ctx.match
    if match is None or not match.params:
        return None
    return {name: urllib.parse.unquote(value) if "%" in value else value for name, value in match.params}


@dataclasses.dataclass(frozen=True, slots=True)
class EventShape:
    """What every event of one route shares, fixed when the plan is built."""

    version: str  # "1.0" | "2.0"
    # 2.0's requestContext.stage: AWS serves a named stage under "/<stage>" and the root as the
    # "$default" stage, and libraries (Powertools) strip "/<stage>" from rawPath on that basis,
    # so a Stage served at "/" is "$default" in 2.0 events.
    stage_v2: str
    resource: str  # the route's path template; "$default" for the $default route
    route_key: str
    stage: str
    base_path: str  # "/" or "/prod"
    api_id: str
    account_id: str
    resource_id: str
    binary_media_types: tuple[str, ...]

    @classmethod
    def for_route(cls, route: model.Route, stage: model.Stage, api: model.Api | None) -> EventShape:
        api_name = api.name if api is not None else stage.api.partition("/")[2]
        return cls(
            version=route.integration.payload_format_version,
            resource=route.path if not route.is_default else "/{proxy+}",
            route_key=route.route_key,
            stage=stage.name,
            stage_v2="$default" if stage.base_path.rstrip("/") == "" else stage.name,
            base_path=stage.base_path.rstrip("/"),
            api_id=api_name,
            account_id=stage.namespace,
            resource_id=hashlib.sha256(route.id.encode()).hexdigest()[:6],
            binary_media_types=api.binary_media_types if api is not None else (),
        )

    def build(self, ctx: context.RequestContext, body: bytes | None) -> dict[str, Any]:
        """The event for one request; ``body`` None when the request had none."""
        if self.version == "1.0":
            return self._v1(ctx, body)
        return self._v2(ctx, body)

    def _common(self, ctx: context.RequestContext) -> tuple[str, str, str]:
        request = ctx.request
        host = ""
        agent = ""
        for name, value in ctx.headers:
            lower = name.lower()
            if lower == "host" and not host:
                host = value
            elif lower == "user-agent" and not agent:
                agent = _text(value)
        domain = host.rpartition(":")[0] if host.count(":") == 1 else host
        protocol = f"HTTP/{request.version.major}.{request.version.minor}"
        return domain, agent, protocol

    def _v1(self, ctx: context.RequestContext, body: bytes | None) -> dict[str, Any]:
        domain, agent, protocol = self._common(ctx)
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        # Header names are case-insensitive, and AWS keys them so: ``X-Dup: a`` and ``x-dup: b``
        # are one header, under the spelling that came first, with both values in
        # multiValueHeaders and the last in headers. Keyed by the names as sent, a handler
        # (or Powertools' case-insensitive lookup) would see only one of them.
        spelled: dict[str, str] = {}
        client, forwarded_for, proto, port = _forwarding(ctx)
        for name, value in client:
            text = _text(value)
            lower = name.lower()
            if lower == "traceparent":
                continue  # replaced below by the gateway's own span
            key = spelled.setdefault(lower, name)
            headers[key] = text  # the last value, as REST APIs send it
            multi_headers.setdefault(key, []).append(text)
        headers["X-Forwarded-For"] = forwarded_for
        multi_headers["X-Forwarded-For"] = [forwarded_for]
        headers["X-Forwarded-Proto"] = proto
        multi_headers["X-Forwarded-Proto"] = [proto]
        if port is not None:
            headers["X-Forwarded-Port"] = port
            multi_headers["X-Forwarded-Port"] = [port]
        headers["traceparent"] = trace = _traceparent(ctx)
        multi_headers["traceparent"] = [trace]
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for name, value in query_pairs(ctx.query):
            query[name] = value
            multi_query.setdefault(name, []).append(value)
        raw_path = ctx.target.raw_path if ctx.target is not None else ctx.request.raw_path.partition("?")[0]
        path = (raw_path[len(self.base_path) :] or "/") if self.base_path else raw_path
        method = ctx.request.method
        authorizer = self._v1_authorizer(ctx)
        identity: dict[str, Any] = dict.fromkeys(_NULL_IDENTITY)
        identity["sourceIp"] = ctx.source_ip
        identity["userAgent"] = agent or None
        if ctx.api_key_id is not None:
            identity["apiKeyId"] = ctx.api_key_id
        request_context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "domainName": domain,
            "domainPrefix": domain.partition(".")[0],
            "extendedRequestId": ctx.request_id,
            "httpMethod": method,
            "identity": identity,
            "path": raw_path,
            "protocol": protocol,
            "requestId": ctx.request_id,
            "requestTime": request_time(ctx.started_wall),
            "requestTimeEpoch": int(ctx.started_wall * 1000),
            "resourceId": self.resource_id,
            "resourcePath": self.resource,
            "stage": self.stage,
        }
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        variables = ctx.stage_variables
        event: dict[str, Any] = {
            "resource": self.resource,
            "path": path,
            "httpMethod": method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters(ctx),
            "stageVariables": dict(variables) if variables else None,
            "requestContext": request_context,
            "body": None,
            "isBase64Encoded": False,
        }
        if body is not None:
            content_type = ctx.request.headers.get("Content-Type")
            binary = matches_media_types(content_type, self.binary_media_types) or _content_coded(ctx)
            event["body"], event["isBase64Encoded"] = _body_field(body, binary=binary)
        return event

    @staticmethod
    def _v1_authorizer(ctx: context.RequestContext) -> dict[str, Any] | None:
        if ctx.claims is not None:
            return {"claims": mappings.claims_as_text(ctx.claims), "scopes": list(ctx.scopes) if ctx.scopes else None}
        if ctx.authorizer_context is not None or ctx.principal_id is not None:
            found: dict[str, Any] = dict(ctx.authorizer_context or {})
            found["principalId"] = ctx.principal_id
            found["integrationLatency"] = 0
            return found
        return None

    def _v2(self, ctx: context.RequestContext, body: bytes | None) -> dict[str, Any]:
        domain, agent, protocol = self._common(ctx)
        headers: dict[str, str] = {}
        cookies: list[str] = []
        client, forwarded_for, proto, port = _forwarding(ctx)
        for name, value in client:
            lower = name.lower()
            text = _text(value)
            if lower == "cookie":
                cookies.extend(c.strip() for c in text.split(";") if c.strip())
                continue
            if lower == "traceparent":
                continue  # replaced below by the gateway's own span
            headers[lower] = f"{headers[lower]},{text}" if lower in headers else text
        headers["x-forwarded-for"] = forwarded_for
        headers["x-forwarded-proto"] = proto
        if port is not None:
            headers["x-forwarded-port"] = port
        headers["traceparent"] = _traceparent(ctx)
        query: dict[str, str] = {}
        for name, value in query_pairs(ctx.query):
            query[name] = f"{query[name]},{value}" if name in query else value
        raw_path = ctx.target.raw_path if ctx.target is not None else ctx.request.raw_path.partition("?")[0]
        request_context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "domainName": domain,
            "domainPrefix": domain.partition(".")[0],
            "http": {
                "method": ctx.request.method,
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": ctx.source_ip,
                "userAgent": agent,
            },
            "requestId": ctx.request_id,
            "routeKey": self.route_key,
            "stage": self.stage_v2,
            "time": request_time(ctx.started_wall),
            "timeEpoch": int(ctx.started_wall * 1000),
        }
        authorizer = self._v2_authorizer(ctx)
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": self.route_key,
            "rawPath": raw_path,
            "rawQueryString": ctx.query,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if query:
            event["queryStringParameters"] = query
        parameters = path_parameters(ctx)
        if parameters is not None:
            event["pathParameters"] = parameters
        variables = ctx.stage_variables
        if variables:
            event["stageVariables"] = dict(variables)
        event["requestContext"] = request_context
        if body is not None:
            binary = not is_text_like(ctx.request.headers.get("Content-Type")) or _content_coded(ctx)
            event["body"], event["isBase64Encoded"] = _body_field(body, binary=binary)
        else:
            event["isBase64Encoded"] = False
        return event

    @staticmethod
    def _v2_authorizer(ctx: context.RequestContext) -> dict[str, Any] | None:
        if ctx.claims is not None:
            claims = mappings.claims_as_text(ctx.claims)
            return {"jwt": {"claims": claims, "scopes": list(ctx.scopes) if ctx.scopes else None}}
        if ctx.authorizer_context is not None:
            return {"lambda": dict(ctx.authorizer_context)}
        return None


def _traceparent(ctx: context.RequestContext) -> str:
    """The W3C trace context a function sees, as an HTTP backend does: the client's trace
    continued with the gateway's span id (the one its exported span has), or a new trace when
    the client sent none (or a broken one)."""
    return tracing.traceparent(ctx)
