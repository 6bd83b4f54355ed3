"""HTTP_PROXY integrations: where the request goes, and streaming it there and back.

The upstream path is rebuilt from what the route matched (``routing.Match.upstream_path``
and the path parameters), never re-normalised, so the backend sees the path the route saw.
Bodies stream both ways in chunks; nothing is buffered whole and nothing is content-decoded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import urllib.parse
from collections.abc import AsyncIterator

from propylon_config import model
from propylon_proxy import endpoints, gateway_responses, hygiene, incoming, routing

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@dataclasses.dataclass(frozen=True, slots=True)
class Destination:
    scheme: str
    host: str
    port: int
    path: str  # encoded
    query: str  # as it goes upstream, without "?"
    host_header: str
    address: model.EndpointAddress | None = None  # set for ``service`` targets

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


class NoEndpoint(Exception):
    """A ``service`` target has no ready address (-> 502)."""


def _parameter_values(match: routing.Match) -> dict[str, str]:
    """Path parameters as they are written into a template: encoded, greedy ones raw."""
    greedy = {s.value for s in match.route.segments if s.kind is model.SegmentKind.GREEDY}
    return {name: value if name in greedy else hygiene.encode_segment(value) for name, value in match.params}


def _query_values(match: routing.Match) -> dict[str, str]:
    """Path parameters as they are written into a template's query: each one's decoded value
    (a greedy one's raw form decoded) percent-encoded as a query value, so a "&", "=", "+" or
    "#" in it stays data. Undecodable bytes go as the bytes they were."""
    greedy = {s.value for s in match.route.segments if s.kind is model.SegmentKind.GREEDY}
    out = {}
    for name, value in match.params:
        if name in greedy:
            value = urllib.parse.unquote(value, errors="surrogateescape")
        out[name] = urllib.parse.quote(value, safe="", errors="surrogateescape")
    return out


def _fill(template: str, match: routing.Match, *, query: bool = False) -> str:
    """``template`` with its ``{name}`` placeholders filled: as path segments, or (``query``)
    as query values."""
    if "{" not in template:
        return template
    values = _query_values(match) if query else _parameter_values(match)
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1).rstrip("+"), ""), template)


@dataclasses.dataclass(frozen=True, slots=True)
class _Url:
    scheme: str
    host: str
    port: int
    path: str  # may hold {placeholders}
    query: str
    netloc: str
    # The destination itself when it cannot vary: no placeholders, and a request without a query.
    fixed: Destination | None


@functools.lru_cache(maxsize=4096)
def _parse(url: str) -> _Url:
    """An integration URL taken apart once, not on every request (bounded: URLs come from
    snapshots, and an evicted one is only parsed again)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    host = parts.hostname or ""
    fixed = None
    if "{" not in parts.path and "{" not in parts.query:
        fixed = Destination(
            scheme=scheme, host=host, port=port, path=parts.path or "/", query=parts.query, host_header=parts.netloc
        )
    return _Url(
        scheme=scheme, host=host, port=port, path=parts.path, query=parts.query, netloc=parts.netloc, fixed=fixed
    )


def _join_query(template_query: str, client_query: str) -> str:
    return "&".join(q for q in (template_query, client_query) if q)


def destination(
    integration: model.Integration,
    match: routing.Match,
    query: str,
    addresses: dict[str, tuple[model.EndpointAddress, ...]],
    balancer: endpoints.Balancer,
    exclude: tuple[str, int] | None = None,
) -> Destination:
    if integration.url:
        url = _parse(integration.url)
        if url.fixed is not None and not query:
            return url.fixed
        return Destination(
            scheme=url.scheme,
            host=url.host,
            port=url.port,
            path=_fill(url.path, match) or "/",
            query=_join_query(_fill(url.query, match, query=True), query),
            host_header=url.netloc,
        )
    service = integration.service
    if service is None:
        raise NoEndpoint("integration has neither url nor service")
    picked = balancer.pick(service.key, addresses.get(service.key, ()), exclude)
    if picked is None:
        raise NoEndpoint(f"no ready endpoint for {service.key}")
    # A ``path`` may carry a query of its own ("/p?id={id}"): the client's joins it with "&".
    template, _, template_query = (integration.path or "").partition("?")
    path = _fill(template, match) if integration.path else match.upstream_path
    host = f"[{picked.address}]" if ":" in picked.address else picked.address
    return Destination(
        scheme="http",
        host=picked.address,
        port=picked.port,
        path=path or "/",
        query=_join_query(_fill(template_query, match, query=True), query),
        host_header=f"{host}:{picked.port}",
        address=picked,
    )


class RequestBody:
    """The client's body as an async iterable, enforcing the size limit and the stall timeout.

    A failure is recorded in ``failure`` (a section-3 type) before the iteration aborts, so the
    caller can answer 413/408 whatever the upstream client makes of the aborted upload.
    """

    def __init__(self, content: incoming.Body, *, limit: int, stall_timeout: float) -> None:
        self._content = content
        self._limit = limit
        self._stall_timeout = stall_timeout
        self.started = False
        self.failure: str | None = None
        self.received = 0

    def whole(self) -> bytes | None:
        """The entire body when all of it has already arrived (a small body comes in the same
        packet as its head), else None: then it streams. Raises ``BodyTooLarge`` past the limit.

        A whole body goes upstream as bytes, in the same write as the request head, with no
        body task and no per-chunk wait (propylon-posted: see docs/performance.md)."""
        content = self._content
        if not content.is_eof():
            return None
        data = content.read_nowait()
        self.received = len(data)
        if self.received > self._limit:
            self.failure = gateway_responses.REQUEST_TOO_LARGE
            raise BodyTooLarge()
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every read in a Task.
                async with asyncio.timeout(self._stall_timeout):
                    chunk = await self._content.readany()
            except TimeoutError:
                self.failure = gateway_responses.REQUEST_TIMEOUT
                raise
            if not chunk:
                return
            self.received += len(chunk)
            if self.received > self._limit:
                self.failure = gateway_responses.REQUEST_TOO_LARGE
                raise BodyTooLarge()
            yield chunk


class BodyTooLarge(Exception):
    pass
