"""Choosing the limit store from the command line: in memory, or Redis (``--redis URL``).

Shared by ``propylon serve`` and ``propylon proxy``. Opening never waits on Redis: a Redis that
is down, or accepts connections and never answers, at start is reported in one line and the
gateway starts anyway (``--redis-failure`` then says what limited routes do until it answers).
``redis`` is imported only when a URL is given, so the in-memory default needs no extra package.
"""

from __future__ import annotations

from collections.abc import Callable

from propylon_proxy import state


async def open_store(
    url: str | None, *, cluster: bool = False, timeout: float | None = None, say: Callable[[str], None]
) -> state.StateStore:
    """The store ``url`` names (none: in memory). ``timeout`` is each Redis call's budget in
    seconds (``--redis-timeout-ms``); None keeps ``redis_store.DEFAULT_TIMEOUT`` (DESIGN.md §8)."""
    if not url:
        return state.MemoryStore()
    from propylon_proxy import redis_store

    budget = redis_store.DEFAULT_TIMEOUT if timeout is None else timeout
    store = redis_store.RedisStore(url, cluster=cluster, timeout=budget)
    where = redact(url)
    try:
        await store.ping()
    except state.StoreUnavailable as exc:
        say(f"propylon: limit store {where} unavailable at start ({exc}); retrying in the background")
    else:
        say(f"propylon: limits and quotas shared through {'Redis Cluster' if cluster else 'Redis'} at {where}")
    return store


def redact(url: str) -> str:
    """The URL without its password, for log lines."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
