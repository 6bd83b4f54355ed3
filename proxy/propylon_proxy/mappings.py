"""``requestParameters`` and ``responseParameters`` (DESIGN.md §1, §8 "Mappings").

Pure functions: evaluate a value expression (literal text mixed with ``$request.*``,
``$context.*``, ``$stageVariables.*``, ``$response.header.*`` or one quoted literal) and apply
the mappings to the upstream request's headers, query string and path, or to the client
response's headers. The gateway's own headers (Host, X-Forwarded-*, X-Request-Id, traceparent)
and framing headers cannot be changed by a mapping, and a value that would carry CR, LF or NUL
into a header is dropped, so a mapping can never be turned into header injection.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping, Sequence

from propylon_config import model
from propylon_proxy import hygiene

Headers = list[tuple[str, str]]

_EXPRESSION = re.compile(
    r"\$\{stageVariables\.(?P<braced>[A-Za-z0-9_]+)\}"
    r"|\$(?P<source>request\.(?:header|querystring|path)|response\.header|stageVariables)\.(?P<name>[A-Za-z0-9_-]+)"
    r"|\$context\.(?P<context>identity\.sourceIp|requestId|stage|authorizer(?:\.[A-Za-z0-9_]+)+)"
)
_PROTECTED = frozenset(
    {
        "host",
        "x-request-id",
        "traceparent",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
    }
)
_UNSAFE = re.compile(r"[\r\n\x00]")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything an expression may read for one request."""

    headers: Sequence[tuple[str, str]]  # the client's request headers
    query: str  # raw query string as sent
    path_params: Mapping[str, str]  # decoded values (greedy: raw form)
    greedy: frozenset[str] = frozenset()
    request_id: str
    stage: str
    source_ip: str
    stage_variables: Mapping[str, str]
    response_headers: Sequence[tuple[str, str]] = ()


def _first(headers: Sequence[tuple[str, str]], name: str) -> str:
    lower = name.lower()
    return ", ".join(v for n, v in headers if n.lower() == lower)


def _query_value(query: str, name: str) -> str:
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return ""


def evaluate(expression: str, ctx: Context, *, for_path: bool = False) -> str:
    """The value of a mapping expression; in a path, request values are percent-encoded segments."""
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        return expression[1:-1]

    def value(found: re.Match[str]) -> str:
        if found.group("braced"):
            return ctx.stage_variables.get(found.group("braced"), "")
        context = found.group("context")
        if context == "requestId":
            return ctx.request_id
        if context == "stage":
            return ctx.stage
        if context == "identity.sourceIp":
            return ctx.source_ip
        if context:
            return ""  # $context.authorizer.*: no authorizers yet
        source, name = found.group("source"), found.group("name")
        if source == "stageVariables":
            text = ctx.stage_variables.get(name, "")
        elif source == "request.header":
            text = _first(ctx.headers, name)
        elif source == "request.querystring":
            text = _query_value(ctx.query, name)
        elif source == "request.path":
            text = ctx.path_params.get(name, "")
            if for_path:
                return text if name in ctx.greedy else hygiene.encode_segment(text)
        else:
            text = _first(ctx.response_headers, name)
        return hygiene.encode_segment(text) if for_path else text

    return _EXPRESSION.sub(value, expression)


def _set_header(headers: Headers, mapping: model.ParameterMapping, value: str | None) -> Headers:
    lower = mapping.name.lower()
    if lower in _PROTECTED:
        return headers
    if mapping.action is model.MappingAction.REMOVE:
        return [(n, v) for n, v in headers if n.lower() != lower]
    if value is None or _UNSAFE.search(value):
        return headers
    if mapping.action is model.MappingAction.OVERWRITE:
        return [*((n, v) for n, v in headers if n.lower() != lower), (mapping.name, value)]
    existing = [v for n, v in headers if n.lower() == lower]
    if not existing:
        return [*headers, (mapping.name, value)]
    merged = ", ".join([*existing, value])
    return [*((n, v) for n, v in headers if n.lower() != lower), (mapping.name, merged)]


def _set_query(query: str, mapping: model.ParameterMapping, value: str) -> str:
    """Edit the raw query; parameters a mapping does not name stay exactly as sent."""
    pairs = [p for p in query.split("&") if p] if query else []
    if mapping.action is not model.MappingAction.APPEND:
        pairs = [p for p in pairs if urllib.parse.unquote_plus(p.partition("=")[0]) != mapping.name]
    if mapping.action is not model.MappingAction.REMOVE:
        pairs.append(f"{urllib.parse.quote(mapping.name, safe='')}={urllib.parse.quote(value, safe='')}")
    return "&".join(pairs)


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    headers: Headers
    path: str
    query: str


def apply_request(
    mappings: Sequence[model.ParameterMapping], ctx: Context, *, headers: Headers, path: str, query: str
) -> Upstream:
    for mapping in mappings:
        if mapping.target is model.MappingTarget.HEADER:
            value = None if mapping.action is model.MappingAction.REMOVE else evaluate(mapping.value, ctx)
            headers = _set_header(headers, mapping, value)
        elif mapping.target is model.MappingTarget.QUERYSTRING:
            value = "" if mapping.action is model.MappingAction.REMOVE else evaluate(mapping.value, ctx)
            query = _set_query(query, mapping, value)
        else:
            rebuilt = evaluate(mapping.value, ctx, for_path=True)
            # The result must still be one clean origin-form path; otherwise keep the matched one.
            try:
                hygiene.split_target(rebuilt if rebuilt.startswith("/") else "/" + rebuilt)
            except hygiene.Rejected:
                continue
            path = rebuilt if rebuilt.startswith("/") else "/" + rebuilt
    return Upstream(headers=headers, path=path, query=query)


def apply_response(
    blocks: Sequence[model.ResponseMappings], status: int, ctx: Context, headers: Headers
) -> Headers:
    for block in blocks:
        if block.status_code != str(status):
            continue
        for mapping in block.mappings:
            if mapping.target is not model.MappingTarget.HEADER:
                continue
            value = None if mapping.action is model.MappingAction.REMOVE else evaluate(mapping.value, ctx)
            headers = _set_header(headers, mapping, value)
    return headers
