"""Gateway responses: an Api's overrides of DESIGN.md section 3's table, checked and compiled.

Only the overrides travel in the snapshot (``Stage.gateway_responses``); the table itself is
``propylon_config.gateway_responses``, shared with the proxy, which applies the fallback when it
prepares a plan: a type's own override, else the DEFAULT_4XX/DEFAULT_5XX override (its body and
headers, with the status the type means), else the built-in response. Shipping overrides only
keeps snapshots and goldens small; the merge rule lives in one place. An override that leaves
out ``statusCode`` or ``body`` gets the type's own. Where the message is only known at request
time (BAD_REQUEST_PARAMETERS lists names; DEFAULT_4XX/5XX stand for any error) the default body
is Amazon API Gateway's template ``{"message":$context.error.messageString}``.
"""

from __future__ import annotations

import json
from typing import Any

from propylon_compiler import fields
from propylon_config import gateway_responses as table
from propylon_config import model

# One table for both planes: the statuses and messages live in the snapshot model's package.
TABLE = table.TABLE
TYPES = table.TYPES
# Where the message is only known per request, an override without a body gets AWS's template.
_PER_REQUEST_MESSAGE = frozenset({"BAD_REQUEST_PARAMETERS", *table.FALLBACKS})


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
        override: dict[str, Any] = {"headers": f.header_map(block, "headers", here)}
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
        status, text = table.status_and_message(name)
        out.append((name, _response(status, "" if name in _PER_REQUEST_MESSAGE else text, override)))
    return tuple(sorted(out))


def _response(status: int, text: str, override: dict[str, Any]) -> model.GatewayResponse:
    # json.dumps' own spacing, as the built-in bodies have it (``{"message": "Not Found"}``): an
    # override of only the headers or status must not change the body's bytes.
    default_body = json.dumps({"message": text}) if text else table.MESSAGE_TEMPLATE
    return model.GatewayResponse(
        status_code=override.get("statusCode", status),
        headers=tuple(sorted(override.get("headers", ()))),
        body=override.get("body", default_body),
    )
