"""The data plane: an aiohttp proxy that serves one ``propylon_config`` snapshot at a time.

Start at ``gateway.Gateway`` (listeners, swaps); a request goes ``server`` (HTTP parsing and
its errors) -> ``handling`` (hygiene, routing, the route's chain) -> ``mocks`` or
``proxying`` + ``forwarding`` + ``mappings`` -> an ``upstream.Upstream`` chosen by
``upstreams``. Never imports the compiler: snapshots arrive as data.
"""

__all__ = [
    "access_log",
    "admin",
    "endpoints",
    "forwarding",
    "gateway",
    "gateway_responses",
    "handling",
    "hygiene",
    "mappings",
    "metrics",
    "mocks",
    "plans",
    "proxying",
    "routing",
    "server",
    "settings",
    "upstream",
    "upstreams",
]
