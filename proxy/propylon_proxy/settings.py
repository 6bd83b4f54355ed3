"""Listener knobs: the limits and timeouts the data plane enforces before any route runs.

Defaults are DESIGN.md section 8 ("Request hygiene and limits"); tests shrink the timeouts so
slow-client behaviour can be exercised without sleeping for tens of seconds.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# How long a replica that died keeps its WebSocket connections in the shared registry
# (``--ws-registry-ttl``; ``PROPYLON_WS_REGISTRY_TTL`` for the commands a Deployment runs).
WS_REGISTRY_TTL_SECONDS = 30.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListenerSettings:
    max_request_line_bytes: int = 8192
    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout: float = 10.0
    body_stall_timeout: float = 30.0
    # A proxied response body that makes no progress this long, either way, is cut (issue 8.6).
    response_stall_timeout: float = 30.0
    keepalive_timeout: float = 75.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    listener: ListenerSettings = dataclasses.field(default_factory=ListenerSettings)
    trusted_proxies: tuple[Network, ...] = ()
    upstream_kind: str = "pool"
    http_server: str = "httptools"  # the public listener's: one of HTTP_SERVERS (docs/performance.md)
    endpoint_failure_seconds: float = 10.0
    # Opens the secrets the compiler sealed into the snapshot (HS* JWT secrets); never logged.
    # ``serve`` makes one per process; without one, HS* Authorizers refuse every request.
    sealing_secret: bytes | None = dataclasses.field(default=None, repr=False)
    redis_failure: str = "open"  # what limits do while the shared store is down: "open" | "closed"
    # WebSocket connections shared across replicas (--redis); the URL may hold a password.
    redis_url: str | None = dataclasses.field(default=None, repr=False)
    ws_registry_ttl_seconds: float = WS_REGISTRY_TTL_SECONDS  # a dead replica's connections leave within this
    redis_cluster: bool = False  # redis_url names any node of a Redis Cluster


# The public listener's server: fast_server on httptools (the default since issue 15: the same
# section-8 tables pass on both, at less CPU per request), or aiohttp's web.Server.
HTTP_SERVERS = ("httptools", "aiohttp")


def http_server_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """PROPYLON_HTTP_SERVER, the default of ``serve`` and ``proxy``'s ``--http-server``."""
    return environ.get("PROPYLON_HTTP_SERVER") or HTTP_SERVERS[0]


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8,127.0.0.1"`` -> networks; raises ValueError naming the bad entry."""
    networks: list[Network] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a CIDR: {part!r}") from exc
    return tuple(networks)
