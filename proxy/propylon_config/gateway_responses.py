"""The table of gateway response types (DESIGN.md section 3), shared by both planes.

The compiler checks and compiles an Api's ``gatewayResponses`` overrides against it; the proxy
answers with it. Keeping the one table here means the two can never disagree about a status
or a default message. Standard library only, no behaviour beyond lookups.
"""

from __future__ import annotations

DEFAULT_4XX = "DEFAULT_4XX"
DEFAULT_5XX = "DEFAULT_5XX"
# The two types a route that fails closed refuses with (the compiler sets ``Route.refusal``).
AUTHORIZER_CONFIGURATION_ERROR = "AUTHORIZER_CONFIGURATION_ERROR"
API_CONFIGURATION_ERROR = "API_CONFIGURATION_ERROR"

TABLE: dict[str, tuple[int, str]] = {
    "RESOURCE_NOT_FOUND": (404, "Not Found"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "Forbidden"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "THROTTLED": (429, "Too Many Requests"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    # The real message names the missing parameters and is only known per request.
    "BAD_REQUEST_PARAMETERS": (400, "Missing required request parameters"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "AUTHORIZER_FAILURE": (500, "Internal Server Error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal Server Error"),
    "INTEGRATION_FAILURE": (502, "Internal server error"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error"),
    "GONE": (410, "Gone"),
    "BAD_REQUEST": (400, "Bad Request"),
    "REQUEST_TIMEOUT": (408, "Request Timeout"),
    "URI_TOO_LONG": (414, "Request-URI Too Long"),
    "REQUEST_HEADERS_TOO_LARGE": (431, "Request Header Fields Too Large"),
    "SERVICE_UNAVAILABLE": (503, "Service Unavailable"),
}
"""type -> (status, default message)."""

FALLBACKS: dict[str, tuple[int, str]] = {
    DEFAULT_4XX: (400, "Bad Request"),
    DEFAULT_5XX: (500, "Internal Server Error"),
}
"""The catch-all types: they answer "as raised"; these statuses serve only unknown types."""

TYPES: tuple[str, ...] = (*TABLE, *FALLBACKS)

MESSAGE_TEMPLATE = '{"message": $context.error.messageString}'
"""Amazon API Gateway's default body template: the message, JSON-quoted, filled in per request;
spaced as the built-in bodies are, so an override that sets only headers keeps their bytes."""


def status_and_message(error_type: str) -> tuple[int, str]:
    """The built-in status and message of a type (unknown types answer as DEFAULT_5XX)."""
    return TABLE.get(error_type) or FALLBACKS.get(error_type) or FALLBACKS[DEFAULT_5XX]


def fallback_for(status: int) -> str:
    """Which catch-all override applies to an error with this status."""
    return DEFAULT_4XX if status < 500 else DEFAULT_5XX
