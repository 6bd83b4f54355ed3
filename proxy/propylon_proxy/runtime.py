"""The runtime layer: what the data plane needs at run time and what outlives a plan swap.

A plan is data prepared from one snapshot; the things it uses at run time (the upstream client,
the endpoint balancer, the state store, metrics, and per-feature resources such as JWKS
fetchers, Redis pools, function clients, WebSocket registries) are opened with the gateway and
closed with it. Resources are keyed by the stable, readable ids of what they serve
(``shop/cognito`` for an authorizer's key set, ``shop/users/prod/GET /users/{id}`` for a
route), so a swap that keeps an id keeps its resource, and one the new plan no longer claims is
closed after a grace period (requests still running on the old plan may be using it).

Nothing here is on the per-request path except plain attribute reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO, TypeVar

from propylon_proxy import endpoints, limiter, log_writer, metrics, settings, state, tracing, upstream

log = logging.getLogger("propylon.proxy")

T = TypeVar("T")


class Closable(Protocol):
    async def close(self) -> None: ...


class Resources:
    """Long-lived objects keyed by stable ids, created on first claim, closed when unclaimed.

    A plan build is one round: ``begin`` starts it, every ``claim`` while the plan is built is
    recorded, and ``settle`` (once the plan is swapped in) retires every resource the round did
    not claim: it is closed after the grace period unless a later plan claims it again.
    """

    def __init__(self, retire_seconds: float = 30.0) -> None:
        self._items: dict[str, Any] = {}
        self._retire_seconds = retire_seconds
        self._retiring: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._round: set[str] = set()

    def begin(self) -> None:
        self._round = set()

    def claim(self, key: str, factory: Callable[[], T]) -> T:
        """The resource under ``key``, made by ``factory`` the first time it is asked for."""
        self._round.add(key)
        retiring = self._retiring.pop(key, None)
        if retiring is not None:
            retiring.cancel()
        if key not in self._items:
            self._items[key] = factory()
        item: T = self._items[key]
        return item

    def peek(self, key: str) -> Any:
        """The resource under ``key`` if one exists, without claiming it (admin actions)."""
        return self._items.get(key)

    def keys(self) -> frozenset[str]:
        return frozenset(self._items)

    def settle(self) -> None:
        """Retire what this round did not claim: closed after the grace period."""
        claimed = self._round
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for key in list(self._items):
            if key in claimed or key in self._retiring:
                continue
            if loop is None:
                self._items.pop(key)  # no loop: nothing can be using it any more
                continue
            self._retiring[key] = loop.call_later(self._retire_seconds, self._retire, key)

    def _retire(self, key: str) -> None:
        self._retiring.pop(key, None)
        item = self._items.pop(key, None)
        close = getattr(item, "close", None)
        if close is not None:
            task = asyncio.get_running_loop().create_task(_close_quietly(key, close))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close everything, newest first (a resource may use one made before it)."""
        for handle in self._retiring.values():
            handle.cancel()
        self._retiring.clear()
        items, self._items = self._items, {}
        for key, item in reversed(list(items.items())):
            close = getattr(item, "close", None)
            if close is not None:
                await _close_quietly(key, close)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _close_quietly(key: str, close: Callable[[], Any]) -> None:
    """Close one resource; a failure is logged, never allowed to stop the others closing."""
    try:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    except Exception:
        log.warning("closing runtime resource %s failed", key, exc_info=True)


@dataclasses.dataclass(slots=True)
class Runtime:
    """Everything a plan's steps and integrations use at run time, for the gateway's lifetime."""

    upstream: upstream.Upstream
    settings: settings.ProxySettings
    metrics: metrics.GatewayMetrics = dataclasses.field(default_factory=metrics.GatewayMetrics)
    balancer: endpoints.Balancer = dataclasses.field(default_factory=endpoints.Balancer)
    store: state.StateStore = dataclasses.field(default_factory=state.MemoryStore)
    resources: Resources = dataclasses.field(default_factory=Resources)
    clock: Callable[[], float] = time.time  # wall clock, injected by tests (quotas, TTLs)
    log_stream: TextIO | None = None  # None = stdout
    api_key_secret: bytes | None = dataclasses.field(default=None, repr=False)  # key_hashing's secret
    limiter: limiter.Limiter | None = None  # made from ``store`` when not given
    log_writer: log_writer.LineWriter | None = None  # stdout's access log, off the event loop
    spans: tracing.SpanSink | None = None  # OTLP span export when configured (tracing.from_env)

    def __post_init__(self) -> None:
        if self.log_writer is None and self.log_stream is None:
            self.log_writer = log_writer.LineWriter(dropped=self.metrics.access_log_dropped)
        if self.limiter is None:
            self.limiter = limiter.Limiter(
                self.store, failure=self.settings.redis_failure, failures=self.metrics.store_failures
            )

    # Set when shutdown begins: /readyz answers 503 from then on, so load balancers that still
    # probe take this replica out before its listeners close.
    draining: bool = False

    async def close(self) -> None:
        if self.log_writer is not None:
            self.log_writer.close()
        if self.spans is not None:
            await asyncio.to_thread(self.spans.close)  # flushes queued spans: blocking
        await self.resources.close()
        await self.store.close()
        await self.upstream.close()
