"""Integration responses: checking an integration's ``responses`` list (DESIGN.md §2.5).

Everything that can be wrong with a response is found here, once, so the proxy never meets a
pattern or a template it cannot compile: a ``selectionPattern`` that is not a regular
expression, a second default response (no pattern), a status outside 200..599, a bad header,
a response template that does not parse, or ``responses`` on an integration that is not HTTP
or a custom FUNCTION (``proxy: false``). Pure; no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from propylon_compiler import fields
from propylon_config import headers as header_names
from propylon_config import model
from propylon_config.templates import template_error

MAX_PATTERN = 1024


def applies(kind: model.IntegrationType, proxy: bool | None) -> bool:
    """True for the integrations that are not proxies: HTTP, and FUNCTION with ``proxy: false``."""
    return kind is model.IntegrationType.HTTP or (kind is model.IntegrationType.FUNCTION and proxy is False)


def parse(
    f: fields.Fields, raw: dict[str, Any], path: str, kind: model.IntegrationType, proxy: bool | None
) -> tuple[model.IntegrationResponse, ...]:
    """The checked ``responses`` of one integration block (problems reported, entries skipped)."""
    if "responses" not in raw:
        return ()
    where = fields.join(path, "responses")
    items = raw.get("responses")
    if items is None:
        return ()
    if not applies(kind, proxy):
        applies_to = "HTTP and FUNCTION (proxy: false)"
        f.error(where, f"responses apply only to {applies_to} integrations, not {_name(kind, proxy)}")
        return ()
    if not isinstance(items, list):
        f.error(where, "expected a list of integration responses")
        return ()
    out: list[model.IntegrationResponse] = []
    default_at: int | None = None
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            f.error(here, "expected a mapping (selectionPattern, statusCode, headers, responseTemplates)")
            continue
        response = _response(f, item, here)
        if response is None:
            continue
        if response.selection_pattern is None:
            if default_at is not None:
                f.error(
                    fields.join(here, "selectionPattern"),
                    f"a second default response (no selectionPattern): {where}[{default_at}] is already the default",
                )
                continue
            default_at = index
        out.append(response)
    return tuple(out)


# Checks a WEBSOCKET Api makes once, on $connect, for the whole connection (as AWS allows
# authorization and API keys only there): on any other route they would be accepted and never run.
CONNECT_ONLY = ("authorizer", "authorizationScopes", "apiKeyRequired", "requestValidation", "cacheKeyParameters")


def websocket_problems(f: fields.Fields, raw: dict[str, Any], path: str, route_key: str) -> None:
    """A WEBSOCKET route's integration relays messages as they are: templates, integration
    responses and custom FUNCTION events are REST features it would silently ignore. A message
    route's checks would be ignored too (a client without a token, key or valid body would get
    the route's answer), so they are refused rather than fail open; ``false``/null are unset."""
    if route_key != "$connect":
        for name in CONNECT_ONLY:
            if raw.get(name) not in (None, False):
                where_not = f"WEBSOCKET route {route_key!r}"
                f.error(fields.join(path, name), f"{name} does not apply to {where_not} (only $connect checks it)")
    integration = raw.get("integration")
    if not isinstance(integration, dict):
        return
    where = fields.join(path, "integration")
    for name in ("requestTemplates", "responses"):
        if name in integration:
            f.error(fields.join(where, name), f"{name} do not apply to WEBSOCKET routes (messages are relayed as sent)")
    if integration.get("proxy") is False:
        f.error(fields.join(where, "proxy"), "proxy: false does not apply to WEBSOCKET routes")


def _name(kind: model.IntegrationType, proxy: bool | None) -> str:
    return "FUNCTION (proxy: true)" if kind is model.IntegrationType.FUNCTION else kind.value


def _response(f: fields.Fields, item: dict[str, Any], here: str) -> model.IntegrationResponse | None:
    before = len(f.reporter.diagnostics)
    pattern = f.string(item, "selectionPattern", here)
    if pattern is not None and (problem := pattern_error(pattern)) is not None:
        f.error(fields.join(here, "selectionPattern"), problem)
    status = f.integer(item, "statusCode", here)
    if status is None and "statusCode" not in item:
        f.error(fields.join(here, "statusCode"), "missing statusCode (the status the client gets)")
    elif status is not None and not 200 <= status <= 599:
        # A 1xx is an interim answer: no client takes it as the response.
        f.error(fields.join(here, "statusCode"), f"statusCode {status} is not a final HTTP status code (200..599)")
    headers = f.header_map(item, "headers", here)
    for name, _ in headers:
        if header_names.is_gateway_owned(name):
            f.error(fields.join(fields.join(here, "headers"), name), f"{name} is set only by the gateway")
    templates: list[tuple[str, str]] = []
    for media_type, text in f.string_map(item, "responseTemplates", here):
        at = fields.join(fields.join(here, "responseTemplates"), media_type)
        if "/" not in media_type or any(c in media_type for c in " ;,"):
            f.error(at, f"{media_type!r} is not a media type (such as application/json)")
        elif (problem := template_error(text)) is not None:
            f.error(at, f"template {problem}")
        else:
            templates.append((media_type.lower(), text))
    for name in item:
        if name not in ("selectionPattern", "statusCode", "headers", "responseTemplates"):
            f.error(fields.join(here, str(name)), "unknown field of an integration response")
    if len(f.reporter.diagnostics) != before or status is None:
        return None
    return model.IntegrationResponse(
        # An empty pattern is AWS's way of writing the default response.
        selection_pattern=pattern or None,
        status_code=status,
        headers=headers,
        response_templates=tuple(templates),
    )


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a selectionPattern, or None."""
    if len(pattern) > MAX_PATTERN:
        return f"selectionPattern is longer than {MAX_PATTERN} characters"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"selectionPattern is not a valid regular expression: {exc}"
    return None
