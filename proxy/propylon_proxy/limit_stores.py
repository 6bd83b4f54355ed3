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


# Query parameters whose values are secrets: redis-py turns every query parameter into a client
# option, so ``?password=`` is as much the password as the user part is.
_SECRET_PARAMETERS = ("pass", "secret", "token", "auth")


def redact(url: str) -> str:
    """The URL without its secrets, for log lines and errors.

    The user part ends at the LAST ``@`` before the query, as urllib (so redis-py) reads it: a
    password may hold ``@`` (and ``/``, which urllib would cut, is masked all the same); its
    password becomes ``***``, a user name alone is shown. Values of secret query parameters
    (``?password=``) become ``***``, as does a
    query item holding ``@`` (a password's tail after an unencoded ``?``, which hides the rest of
    the URL too) and any fragment."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest, hash_sign, _ = rest.partition("#")
    head, question, query = rest.partition("?")
    userinfo, at, after = head.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        head = (f"{user}:***@" if user else "***@") + after if colon else f"{userinfo}@{after}"
    if question:
        items = [_redacted_item(item) for item in query.split("&")]
        if not at and "@***" in items:
            head = "***"  # a password holding ``?`` put its tail in the query: its head is here
        query = "&".join(items)
    return f"{scheme}{sep}{head}{question}{query}{hash_sign and '#***'}"


def _redacted_item(item: str) -> str:
    name, equals, value = item.partition("=")
    if equals and value and any(word in name.lower() for word in _SECRET_PARAMETERS):
        return f"{name}=***"
    return "@***" if "@" in item else item
