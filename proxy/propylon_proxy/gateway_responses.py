"""The JSON error responses the gateway makes itself (DESIGN.md section 3).

Every error the gateway answers on its own goes through ``render`` so that the body shape, the
``x-propylon-error-type`` header and ``x-request-id`` are the same everywhere, and so a Stage's
merged ``gatewayResponses`` overrides apply. Bodies never contain request bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from propylon_config import gateway_responses as table
from propylon_config import model
from propylon_proxy import forwarding

RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
BAD_REQUEST = "BAD_REQUEST"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
URI_TOO_LONG = "URI_TOO_LONG"
REQUEST_HEADERS_TOO_LARGE = "REQUEST_HEADERS_TOO_LARGE"
INTEGRATION_FAILURE = "INTEGRATION_FAILURE"
INTEGRATION_TIMEOUT = "INTEGRATION_TIMEOUT"
UNAUTHORIZED = "UNAUTHORIZED"
ACCESS_DENIED = "ACCESS_DENIED"
INVALID_API_KEY = "INVALID_API_KEY"
THROTTLED = "THROTTLED"
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
BAD_REQUEST_BODY = "BAD_REQUEST_BODY"
BAD_REQUEST_PARAMETERS = "BAD_REQUEST_PARAMETERS"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
AUTHORIZER_FAILURE = "AUTHORIZER_FAILURE"
AUTHORIZER_CONFIGURATION_ERROR = table.AUTHORIZER_CONFIGURATION_ERROR
API_CONFIGURATION_ERROR = table.API_CONFIGURATION_ERROR
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
GONE = "GONE"
DEFAULT_4XX = table.DEFAULT_4XX
DEFAULT_5XX = table.DEFAULT_5XX


# Responses after which the connection must not be reused (section 8, "Odds and ends").
CLOSING = frozenset({REQUEST_TIMEOUT, REQUEST_TOO_LARGE, URI_TOO_LONG, REQUEST_HEADERS_TOO_LARGE, BAD_REQUEST})


@dataclasses.dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error_type: str


def _builtin(error_type: str) -> model.GatewayResponse:
    status, _ = table.status_and_message(error_type)
    # json.dumps' spacing, which clients of earlier versions have seen byte for byte
    return model.GatewayResponse(status_code=status, body='{"message": $context.error.messageString}')


def resolve(overrides: Mapping[str, model.GatewayResponse] | None, error_type: str) -> model.GatewayResponse:
    """The stage's own response for this type, else its DEFAULT_4XX/5XX, else the built-in one."""
    if overrides:
        own = overrides.get(error_type)
        if own is not None:
            return own
        builtin = _builtin(error_type)
        fallback = overrides.get(table.fallback_for(builtin.status_code))
        if fallback is not None:
            # A DEFAULT_* override changes body and headers, never the status the type means.
            return dataclasses.replace(fallback, status_code=builtin.status_code)
        return builtin
    return _builtin(error_type)


def render(
    error_type: str,
    request_id: str,
    overrides: Mapping[str, model.GatewayResponse] | None = None,
    message: str | None = None,
    defaults: Sequence[tuple[str, str]] = (),
) -> Rendered:
    """The response for ``error_type``; ``message`` replaces the type's default message
    (BAD_REQUEST_PARAMETERS names the missing parameters).

    ``defaults`` are the headers the gateway itself means for this refusal (the computed
    ``Retry-After``, ``WWW-Authenticate: Bearer``, ``Vary: Origin``). An override that names the
    same header keeps its own value: it is what the Api's owner wrote (DESIGN.md §1's example
    sets ``Retry-After``), except ``Vary``, whose tokens are joined so a cache still keys on them.
    """
    response = resolve(overrides, error_type)
    text = message if message is not None else table.status_and_message(error_type)[1]
    headers = [(name, value) for name, value in response.headers if name.lower() not in _GATEWAY_OWNED]
    if defaults:
        headers = _with_defaults(headers, defaults)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.insert(0, ("Content-Type", "application/json"))
    if response.status_code == 429 and not any(name.lower() == "retry-after" for name, _ in headers):
        headers.append(("Retry-After", "1"))  # section 3: every 429 says when to come back
    headers.append(("x-propylon-error-type", error_type))
    headers.append(("x-request-id", request_id))
    body = _fill(response.body, error_type=error_type, message=text, request_id=request_id)
    return Rendered(response.status_code, tuple(headers), body.encode(), error_type)


def _with_defaults(headers: list[tuple[str, str]], defaults: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The override's headers, then each default whose name the override does not set."""
    named = {name.lower(): index for index, (name, _) in enumerate(headers)}
    out = list(headers)
    for name, value in defaults:
        lower = name.lower()
        index = named.get(lower)
        if index is None:
            named[lower] = len(out)
            out.append((name, value))
        elif lower == "vary":
            own_name, own = out[index]
            out[index] = (own_name, join_vary(own, value))
    return out


def join_vary(own: str, more: str) -> str:
    """A ``Vary`` value that also names ``more``'s tokens (case-insensitively, once each);
    ``Vary: *`` already varies by everything and stays as it is."""
    tokens = {token.strip().lower() for token in own.split(",")}
    if "*" in tokens:
        return own
    missing = [token.strip() for token in more.split(",") if token.strip().lower() not in tokens]
    return ", ".join([own, *missing]) if missing else own


# Headers that identify the error and the request, the framing of the body the gateway sends,
# and the cache's verdict (DESIGN.md §8): an override may not forge or contradict them.
_GATEWAY_OWNED = forwarding.GATEWAY_FRAMED | {"x-propylon-error-type", "x-request-id", "x-propylon-cache"}


def _fill(body: str, *, error_type: str, message: str, request_id: str) -> str:
    """Substitute Amazon API Gateway's gateway-response variables in an (override) body.

    ``messageString`` is the message as a JSON string literal, so ``{"message":$context.error.messageString}``
    stays valid JSON whatever the message holds; the longer names are replaced first."""
    if "$context" not in body:
        return body
    return (
        body.replace("$context.error.messageString", json.dumps(message))
        .replace("$context.error.message", message)
        .replace("$context.error.responseType", error_type)
        .replace("$context.requestId", request_id)
    )
