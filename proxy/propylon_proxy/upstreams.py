"""Choosing the upstream client implementation behind ``upstream.Upstream``.

The one place that knows which implementations exist, so the request pipeline and
``propylon serve`` stay unaware of them and bench/ can swap them by name.
"""

from __future__ import annotations

from propylon_proxy import upstream, upstream_aiohttp, upstream_pool

KINDS = ("aiohttp", "pool")


def create(kind: str = "pool") -> upstream.Upstream:
    """``pool``: the httptools pool (the default: 1.5x the requests/s behind Propylon, see
    bench/RESULTS.md); ``aiohttp``: one shared ClientSession."""
    if kind == "aiohttp":
        return upstream_aiohttp.AiohttpUpstream()
    if kind == "pool":
        return upstream_pool.PooledUpstream()
    raise ValueError(f"unknown upstream kind {kind!r}; expected one of {', '.join(KINDS)}")
