"""Choosing an ``Upstream`` implementation by name, so ``serve`` and bench/ can switch without code.

``PROPYLON_UPSTREAM=aiohttp|pool`` selects one; unset means ``DEFAULT``. Both implementations pass
the same behaviour table (tests/upstream); bench/RESULTS.md says how they compare.
"""

from __future__ import annotations

import os

from propylon_proxy import upstream, upstream_aiohttp, upstream_pool

ENV_VAR = "PROPYLON_UPSTREAM"
KINDS = ("aiohttp", "pool")
DEFAULT = "aiohttp"


def create(kind: str | None = None) -> upstream.Upstream:
    """A new upstream client of the given kind (``None``: from the environment, else DEFAULT)."""
    if kind is None:
        kind = os.environ.get(ENV_VAR, "").strip().lower() or DEFAULT
    if kind == "aiohttp":
        return upstream_aiohttp.AiohttpUpstream()
    if kind == "pool":
        return upstream_pool.PooledUpstream()
    raise ValueError(f"unknown upstream kind {kind!r} (expected one of {', '.join(KINDS)})")
