"""Gateway responses: an Api's overrides of DESIGN.md section 3's table, checked and compiled.

Only the overrides travel in the snapshot (``Stage.gateway_responses``); the proxy keeps the
built-in table and applies the fallback at request time: a type's own override, else the
DEFAULT_4XX/DEFAULT_5XX override (its body and headers, with the status the type means), else
the built-in response. An override that leaves out ``statusCode`` or ``body`` gets the type's
own. Where the message is only known at request time (BAD_REQUEST_PARAMETERS lists names;
DEFAULT_4XX/5XX stand for any error) the default body is Amazon API Gateway's template
``{"message":$context.error.messageString}``, which users moving from AWS also write.
"""

from __future__ import annotations

import json
from typing import Any

from propylon_compiler import fields
from propylon_config import model

TEMPLATE_BODY = '{"message":$context.error.messageString}'

TABLE: dict[str, tuple[int, str]] = {
    "RESOURCE_NOT_FOUND": (404, "Not Found"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "Forbidden"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "THROTTLED": (429, "Too Many Requests"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "BAD_REQUEST_PARAMETERS": (400, ""),  # "Missing required request parameters: [a, b]", at request time
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "AUTHORIZER_FAILURE": (500, "Internal Server Error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal Server Error"),
    "INTEGRATION_FAILURE": (502, "Internal server error"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    "GONE": (410, "Gone"),
    "BAD_REQUEST": (400, "Bad Request"),
    "REQUEST_TIMEOUT": (408, "Request Timeout"),
    "URI_TOO_LONG": (414, "Request-URI Too Long"),
    "REQUEST_HEADERS_TOO_LARGE": (431, "Request Header Fields Too Large"),
    "SERVICE_UNAVAILABLE": (503, "Service Unavailable"),
}
"""type -> (status, default message). The fallbacks below answer "as raised"."""

DEFAULTS: dict[str, int] = {"DEFAULT_4XX": 400, "DEFAULT_5XX": 500}
"""Fallback types; the status is only used for an error type missing from ``TABLE``."""

TYPES = (*TABLE, *DEFAULTS)


def parse_overrides(f: fields.Fields, spec: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    """Read ``spec.gatewayResponses``; unknown types and bad values are diagnostics."""
    raw = f.mapping(spec, "gatewayResponses", path) or {}
    where = fields.join(path, "gatewayResponses")
    out: dict[str, dict[str, Any]] = {}
    for name, block in raw.items():
        here = fields.join(where, str(name))
        if name not in TYPES:
            f.error(here, f"unknown gateway response type {name!r} (expected one of: {', '.join(TYPES)})")
            continue
        if not isinstance(block, dict):
            f.error(here, "expected a mapping with statusCode, headers and body")
            continue
        status = f.integer(block, "statusCode", here)
        if status is not None and not 400 <= status <= 599:
            f.error(fields.join(here, "statusCode"), f"statusCode {status} must be an error status (400..599)")
        override: dict[str, Any] = {"headers": f.string_map(block, "headers", here)}
        if status is not None:
            override["statusCode"] = status
        body = f.string(block, "body", here)
        if body is not None:
            override["body"] = body
        out[str(name)] = override
    return out


def compile_overrides(overrides: dict[str, dict[str, Any]]) -> tuple[tuple[str, model.GatewayResponse], ...]:
    """The overrides as snapshot entries, sorted by type."""
    out: list[tuple[str, model.GatewayResponse]] = []
    for name, override in overrides.items():
        status, text = TABLE.get(name, (DEFAULTS.get(name, 500), ""))
        out.append((name, _response(status, text, override)))
    return tuple(sorted(out))


def _response(status: int, text: str, override: dict[str, Any]) -> model.GatewayResponse:
    default_body = json.dumps({"message": text}, separators=(",", ":")) if text else TEMPLATE_BODY
    return model.GatewayResponse(
        status_code=override.get("statusCode", status),
        headers=tuple(sorted(override.get("headers", ()))),
        body=override.get("body", default_body),
    )
