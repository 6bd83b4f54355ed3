"""Header names only the gateway sets, shared by both planes.

The compiler refuses a mapping that names one (a diagnostic), and the proxy never lets a mapping
or a client set one, under any spelling a backend would fold into it (``X_Real_IP`` is
``X-Real-IP`` to nginx, CGI and WSGI). Standard library only.
"""

from __future__ import annotations

GATEWAY_OWNED = frozenset(
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
        "x-propylon-error-type",
        "x-propylon-cache",  # present exactly when the route caches (DESIGN.md section 8, Cache)
        "x-propylon-cache-invalidation",
    }
)


def folded(name: str) -> str:
    """The name a backend that folds ``_`` into ``-`` reads."""
    return name.lower().replace("_", "-")


def is_gateway_owned(name: str) -> bool:
    """Whether only the gateway may set ``name``: its own headers, framing, every X-Forwarded-*."""
    name = folded(name)
    return name in GATEWAY_OWNED or name.startswith("x-forwarded-")
