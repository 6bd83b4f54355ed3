"""The data plane: an aiohttp proxy that serves one ``propylon_config`` snapshot at a time.

Start at ``gateway.Gateway`` (listeners, swaps); a request goes ``server`` (HTTP parsing and
its errors) -> ``handling`` (hygiene, routing) -> the route's ``steps.Chain`` (built once per
plan by ``chains``, its steps reading and filling one ``context.RequestContext``) -> an
integration from ``integrations`` (MOCK, HTTP_PROXY with ``proxying`` + ``forwarding`` +
``mappings`` -> an ``upstream.Upstream`` chosen by ``upstreams``) -> ``responding`` and
``recording``. What outlives a plan swap (upstream client, balancer, ``state.StateStore``,
keyed resources) is the ``runtime``. Never imports the compiler: snapshots arrive as data.
"""

__all__ = [
    "access_log",
    "admin",
    "chains",
    "context",
    "endpoints",
    "forwarding",
    "gateway",
    "gateway_responses",
    "guards",
    "handling",
    "hygiene",
    "integrations",
    "mappings",
    "metrics",
    "plans",
    "proxying",
    "recording",
    "replies",
    "responding",
    "response_parameters",
    "routing",
    "runtime",
    "server",
    "settings",
    "state",
    "steps",
    "upstream",
    "upstreams",
]
