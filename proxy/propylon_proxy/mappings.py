"""``requestParameters`` and ``responseParameters`` (DESIGN.md §1, §8 "Mappings").

Pure functions: evaluate a value expression (literal text mixed with ``$request.*``,
``$context.*``, ``$stageVariables.*``, ``$response.header.*`` or one quoted literal) and apply
the mappings to the upstream request's headers, query string and path, or to the client
response's headers. The gateway's own headers (Host, X-Forwarded-*, X-Request-Id, traceparent)
and framing headers cannot be changed by a mapping, and a value that would carry CR, LF or NUL
into a header is dropped (with, for ``overwrite``, the header it was to replace), so a mapping can
never be turned into header injection nor leave a client's value where the gateway's should be.

Header text crosses the upstream and client interfaces as latin-1 (one character per byte), so a
value written into a header carries its UTF-8 bytes (undecodable request bytes, kept as
surrogates, as the bytes they were); client and backend headers read into a value are already
bytes. A value UTF-8 cannot carry (a lone surrogate from a claim) is dropped as an unsafe one is.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from propylon_config import headers as headers_
from propylon_config import model
from propylon_proxy import context, hygiene

Headers = list[tuple[str, str]]

_EXPRESSION = re.compile(
    r"\$\{stageVariables\.(?P<braced>[A-Za-z0-9_]+)\}"
    r"|\$(?P<source>request\.(?:header|querystring|path)|response\.header)\.(?P<name>[A-Za-z0-9_-]+)"
    # Stage variable names are letters, digits and "_": a "-" after one is literal text.
    r"|\$stageVariables\.(?P<variable>[A-Za-z0-9_]+)"
    r"|\$context\.(?P<context>identity\.sourceIp|requestId|stage|authorizer(?:\.[A-Za-z0-9_:]+)+)"
)
_UNSAFE = re.compile(r"[\r\n\x00]")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything an expression may read for one request: a view of ``context.RequestContext``
    (``from_request``), kept as its own small type so expressions can be tested without a server."""

    headers: Sequence[tuple[str, str]]  # the client's request headers
    query: str  # raw query string as sent
    path_params: Mapping[str, str]  # decoded values (greedy: raw form)
    greedy: frozenset[str] = frozenset()
    request_id: str
    stage: str
    source_ip: str
    stage_variables: Mapping[str, str]
    response_headers: Sequence[tuple[str, str]] = ()
    principal_id: str | None = None
    claims: Mapping[str, Any] | None = None
    authorizer_context: Mapping[str, Any] | None = None

    @classmethod
    def from_request(
        cls,
        ctx: context.RequestContext,
        *,
        greedy: frozenset[str],
        response_headers: Sequence[tuple[str, str]] = (),
    ) -> Context:
        match = ctx.match
        return cls(
            headers=ctx.headers,
            query=ctx.query,
            path_params=dict(match.params) if match is not None else {},
            greedy=greedy,
            request_id=ctx.request_id,
            stage=ctx.stage.name if ctx.stage is not None else "",
            source_ip=ctx.source_ip,
            stage_variables=ctx.stage_variables,
            response_headers=response_headers,
            principal_id=ctx.principal_id,
            claims=ctx.claims,
            authorizer_context=ctx.authorizer_context,
        )


def _as_text(value: Any) -> str:
    """A claim or context value as a header/query value: strings as they are, others as JSON
    would write them (AWS passes numbers and booleans as their text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def claims_as_text(claims: Mapping[str, Any]) -> dict[str, str]:
    """Verified JWT claims as function events carry them: Amazon API Gateway's claims map is
    string to string (``"exp": "1796610016"``), and handlers written for it read them so.
    Lists and objects are JSON text, as ``$context.authorizer.claims.*`` gives them."""
    return {name: _as_text(value) for name, value in claims.items()}


def authorizer_value(ctx: Context, path: str) -> str:
    """``$context.authorizer.<path>``: ``principalId``, ``claims.<name>`` (a JWT's verified
    claims) or ``<name>`` (an authorizer function's context); unknown names are empty."""
    if path == "principalId":
        return ctx.principal_id or ""
    if path.startswith("claims."):
        claims = ctx.claims or {}
        return _as_text(claims.get(path[len("claims.") :]))
    values = ctx.authorizer_context or {}
    return _as_text(values.get(path))


def _first(headers: Sequence[tuple[str, str]], name: str) -> str:
    lower = name.lower()
    return ", ".join(v for n, v in headers if n.lower() == lower)


def _query_value(query: str, name: str) -> str:
    # Undecodable bytes stay as surrogates, so a header or query value carries them back as sent.
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        if key == name:
            return value
    return ""


def _as_bytes(text: str) -> str:
    """Text as header text crosses the interfaces: its UTF-8 bytes, one character per byte.
    Raises UnicodeEncodeError for a lone surrogate that is not an undecodable byte."""
    return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("latin-1")


def _decoded(header: str) -> str:
    """A header value (bytes, one character per byte) as text: UTF-8, other bytes as surrogates."""
    return header if header.isascii() else header.encode("latin-1").decode("utf-8", "surrogateescape")


def evaluate(expression: str, ctx: Context, *, for_path: bool = False, for_header: bool = False) -> str:
    """The value of a mapping expression; in a path, request values are percent-encoded segments.

    ``for_header``: the value as header text (see the module doc); raises UnicodeEncodeError when
    UTF-8 cannot carry it. Otherwise header values read into it are decoded as UTF-8 text."""
    if for_header:
        # The expressions are ASCII, so this changes only the literal text around them.
        expression = _as_bytes(expression)
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        return expression[1:-1]

    def value(found: re.Match[str]) -> str:
        source = found.group("source")
        if source is not None:
            name = found.group("name")
            if source == "request.header" or source == "response.header":
                header = _first(ctx.headers if source == "request.header" else ctx.response_headers, name)
                if for_header:
                    return header
                text = _decoded(header)
            elif source == "request.querystring":
                text = _query_value(ctx.query, name)
            else:
                text = ctx.path_params.get(name, "")
                if for_path and name in ctx.greedy:
                    return text
        elif found.group("braced") is not None:
            text = ctx.stage_variables.get(found.group("braced"), "")
            return _as_bytes(text) if for_header else text
        elif found.group("variable") is not None:
            text = ctx.stage_variables.get(found.group("variable"), "")
        else:
            context = found.group("context")
            if context == "requestId":
                return ctx.request_id
            if context == "stage":
                return ctx.stage
            if context == "identity.sourceIp":
                return ctx.source_ip
            text = authorizer_value(ctx, context[len("authorizer.") :])
        if for_path:
            return hygiene.encode_segment(text)
        return _as_bytes(text) if for_header else text

    return _EXPRESSION.sub(value, expression)


def header_value(expression: str, ctx: Context) -> str | None:
    """A mapping's value as header text, or None when no header can carry it."""
    try:
        value = evaluate(expression, ctx, for_header=True)
    except UnicodeEncodeError:
        return None
    return value if _UNSAFE.search(value) is None else None


def _set_header(headers: Headers, mapping: model.ParameterMapping, writable: str | None) -> Headers:
    """Apply one header mapping; ``writable`` is its value as header text (``header_value``),
    None for a remove or for a value no header can carry."""
    lower = mapping.name.lower()
    if headers_.is_gateway_owned(lower):
        return headers
    if "_" in lower or "-" in lower:
        # The client's underscore (or dash) twin of a mapped name goes whatever the action, so a
        # backend that folds the two spellings never sees a client value beside the mapped one.
        folded = headers_.folded(lower)
        headers = [(n, v) for n, v in headers if n.lower() == lower or headers_.folded(n) != folded]
    if mapping.action is model.MappingAction.REMOVE:
        return [(n, v) for n, v in headers if n.lower() != lower]
    if mapping.action is model.MappingAction.OVERWRITE:
        # A value that cannot be written is dropped, and so is the header it was to replace: a
        # backend that trusts a mapped identity header must never get the client's copy instead.
        kept = [(n, v) for n, v in headers if n.lower() != lower]
        return kept if writable is None else [*kept, (mapping.name, writable)]
    if writable is None:
        return headers  # an append of nothing: the header stays as it was
    existing = [v for n, v in headers if n.lower() == lower]
    if not existing:
        return [*headers, (mapping.name, writable)]
    merged = ", ".join([*existing, writable])
    return [*((n, v) for n, v in headers if n.lower() != lower), (mapping.name, merged)]


def _set_query(query: str, mapping: model.ParameterMapping, value: str) -> str:
    """Edit the raw query; parameters a mapping does not name stay exactly as sent. A value goes
    as its UTF-8 bytes (undecodable bytes it was read from as they were); one that UTF-8 cannot
    carry (a lone surrogate from a claim) is dropped, as a header mapping drops it."""
    pairs = [p for p in query.split("&") if p] if query else []
    if mapping.action is not model.MappingAction.APPEND:
        pairs = [p for p in pairs if urllib.parse.unquote_plus(p.partition("=")[0]) != mapping.name]
    if mapping.action is not model.MappingAction.REMOVE:
        try:
            encoded = urllib.parse.quote(value, safe="", errors="surrogateescape")
        except UnicodeEncodeError:
            return "&".join(pairs)
        pairs.append(f"{urllib.parse.quote(mapping.name, safe='')}={encoded}")
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
            value = None if mapping.action is model.MappingAction.REMOVE else header_value(mapping.value, ctx)
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


def apply_response(blocks: Sequence[model.ResponseMappings], status: int, ctx: Context, headers: Headers) -> Headers:
    for block in blocks:
        if block.status_code != str(status):
            continue
        for mapping in block.mappings:
            if mapping.target is not model.MappingTarget.HEADER:
                continue
            value = None if mapping.action is model.MappingAction.REMOVE else header_value(mapping.value, ctx)
            headers = _set_header(headers, mapping, value)
    return headers
