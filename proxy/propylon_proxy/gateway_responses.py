"""The JSON error responses the gateway makes itself (DESIGN.md section 3).

Every error the gateway answers on its own goes through ``render`` so that the body shape, the
``x-propylon-error-type`` header and ``x-request-id`` are the same everywhere, and so a Stage's
merged ``gatewayResponses`` overrides apply. Bodies never contain request bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from propylon_config import model

RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
BAD_REQUEST = "BAD_REQUEST"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
URI_TOO_LONG = "URI_TOO_LONG"
REQUEST_HEADERS_TOO_LARGE = "REQUEST_HEADERS_TOO_LARGE"
INTEGRATION_FAILURE = "INTEGRATION_FAILURE"
INTEGRATION_TIMEOUT = "INTEGRATION_TIMEOUT"
DEFAULT_4XX = "DEFAULT_4XX"
DEFAULT_5XX = "DEFAULT_5XX"

BUILTIN: dict[str, tuple[int, str]] = {
    RESOURCE_NOT_FOUND: (404, "Not Found"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "Forbidden"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "THROTTLED": (429, "Too Many Requests"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "BAD_REQUEST_PARAMETERS": (400, "Missing required request parameters"),
    REQUEST_TOO_LARGE: (413, "Request Too Long"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "AUTHORIZER_FAILURE": (500, "Internal Server Error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal Server Error"),
    INTEGRATION_FAILURE: (502, "Internal server error"),
    INTEGRATION_TIMEOUT: (504, "Endpoint request timed out"),
    "GONE": (410, "Gone"),
    BAD_REQUEST: (400, "Bad Request"),
    REQUEST_TIMEOUT: (408, "Request Timeout"),
    URI_TOO_LONG: (414, "Request-URI Too Long"),
    REQUEST_HEADERS_TOO_LARGE: (431, "Request Header Fields Too Large"),
    "SERVICE_UNAVAILABLE": (503, "Service Unavailable"),
    DEFAULT_5XX: (500, "Internal Server Error"),
}

# Responses after which the connection must not be reused (section 8, "Odds and ends").
CLOSING = frozenset({REQUEST_TIMEOUT, REQUEST_TOO_LARGE, URI_TOO_LONG, REQUEST_HEADERS_TOO_LARGE, BAD_REQUEST})


@dataclasses.dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error_type: str


def _builtin(error_type: str) -> model.GatewayResponse:
    status, message = BUILTIN.get(error_type, BUILTIN[DEFAULT_5XX])
    return model.GatewayResponse(status_code=status, body=json.dumps({"message": message}))


def resolve(overrides: Mapping[str, model.GatewayResponse] | None, error_type: str) -> model.GatewayResponse:
    """The stage's own response for this type, else its DEFAULT_4XX/5XX, else the built-in one."""
    if overrides:
        own = overrides.get(error_type)
        if own is not None:
            return own
        builtin = _builtin(error_type)
        fallback = overrides.get(DEFAULT_4XX if builtin.status_code < 500 else DEFAULT_5XX)
        if fallback is not None:
            # A DEFAULT_* override changes body and headers, never the status the type means.
            return dataclasses.replace(fallback, status_code=builtin.status_code)
        return builtin
    return _builtin(error_type)


def render(
    error_type: str,
    request_id: str,
    overrides: Mapping[str, model.GatewayResponse] | None = None,
) -> Rendered:
    response = resolve(overrides, error_type)
    headers = [("Content-Type", "application/json")]
    headers.extend(response.headers)
    if response.status_code == 429 and not any(name.lower() == "retry-after" for name, _ in headers):
        headers.append(("Retry-After", "1"))  # section 3: every 429 says when to come back
    headers.append(("x-propylon-error-type", error_type))
    headers.append(("x-request-id", request_id))
    return Rendered(response.status_code, tuple(headers), response.body.encode(), error_type)


def raw_bytes(rendered: Rendered, reason: str) -> bytes:
    """A whole HTTP/1.1 response, for errors raised below aiohttp's request layer (slow headers)."""
    lines = [f"HTTP/1.1 {rendered.status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in rendered.headers)
    lines.append(f"Content-Length: {len(rendered.body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rendered.body
