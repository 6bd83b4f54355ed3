"""The runtime's one door to the state store: one decision per request, and what happens
when the shared store fails (DESIGN.md §4, §8 "Redis").

With the in-memory store everything, the gateway-wide bucket included, is one exact
``admit`` call. With a shared store (Redis) the gateway-wide limit stays local to the process:
it guards this replica's capacity, and sharing it would put one hot key on every request of
every replica. It is still checked where §4 puts it, after the plan and stage limits: taken
once the shared decision admitted (no extra round trip), and when it refuses, what the store
took is given back in the background (the refusal is not held for it). After a quota refusal
(the quota comes after every bucket), or when the store cannot decide, an empty gateway-wide
bucket still refuses first, as with the in-memory store; in ``open`` mode the local decision
takes the gateway-wide bucket last, in the same order.

When the shared store cannot decide (``state.StoreUnavailable``: down, or slower than its
50 ms budget), ``--redis-failure open`` decides with a local ``MemoryStore`` (quotas too,
counted locally meanwhile), ``closed`` answers 503 on routes that have shared limits; every
failed call is counted. One slow call affects only its request. An outage (the store says
so: connections fail, or calls keep going unanswered) is logged once, and until it ends
every request is decided that way without asking: the next attempt waits for a backoff that
doubles up to ``MAX_BACKOFF`` seconds, and only one request at a time probes, so a dead
Redis costs at most one 50 ms wait per backoff period, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from propylon_proxy import metrics, state

log = logging.getLogger("propylon.proxy")

UNAVAILABLE = state.Decision(admitted=False, reason="unavailable")
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
FAILURE_MODES = ("open", "closed")


@runtime_checkable
class _GivesBack(Protocol):
    async def give_back(self, buckets: Sequence[state.Bucket], quota: state.Quota | None) -> None: ...


class Limiter:
    def __init__(
        self,
        store: state.StateStore,
        *,
        failure: str = "open",
        failures: metrics.Counter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure not in FAILURE_MODES:
            raise ValueError(f"failure mode must be one of {FAILURE_MODES}, not {failure!r}")
        self.store = store
        self.local = store if isinstance(store, state.MemoryStore) else state.MemoryStore()
        self.shared = not isinstance(store, state.MemoryStore)
        self._closed = failure == "closed"
        self._failures = failures
        self._monotonic = monotonic
        self._down = False
        self._retry_at = 0.0
        self._backoff = FIRST_BACKOFF
        self._probing = False
        self._gives_back = store if isinstance(store, _GivesBack) else None
        self._background: set[asyncio.Future[Any]] = set()

    @property
    def down(self) -> bool:
        return self._down

    def decide_now(
        self, buckets: Sequence[state.Bucket], quota: state.Quota | None, gateway: state.Bucket | None, now: float
    ) -> state.Decision | None:
        """``admit``'s decision when no shared store takes part (the gateway-wide limit alone, or
        the in-memory store), without a coroutine; None when only awaiting ``admit`` can decide."""
        if not buckets and quota is None:  # most routes: only the gateway-wide limit
            return self._gateway_only(gateway, now)
        if not self.shared:
            return self.local.admit_now((*buckets, gateway) if gateway is not None else buckets, quota, now)
        return None

    async def admit(
        self, buckets: Sequence[state.Bucket], quota: state.Quota | None, gateway: state.Bucket | None, now: float
    ) -> state.Decision:
        decided = self.decide_now(buckets, quota, gateway, now)
        if decided is not None:
            return decided
        return await self._shared(buckets, quota, gateway, now)

    def _gateway_only(self, gateway: state.Bucket | None, now: float) -> state.Decision:
        if gateway is None:
            return state.ADMITTED
        wait = self.local.take(gateway, now)
        if wait == 0.0:
            return state.ADMITTED
        return state.Decision(admitted=False, reason=gateway.reason, retry_after=state.whole_seconds(wait))

    def _gateway_refusal(self, gateway: state.Bucket | None, now: float) -> state.Decision | None:
        """The gateway-wide refusal if its bucket is empty, taking nothing (else None)."""
        if gateway is None:
            return None
        decided = self._gateway_only(gateway, now)
        if decided.admitted:
            self.local.refund(gateway)
            return None
        return decided

    def _after_shared(
        self,
        decision: state.Decision,
        buckets: Sequence[state.Bucket],
        quota: state.Quota | None,
        gateway: state.Bucket | None,
        now: float,
    ) -> state.Decision:
        """The store's decision, then the gateway-wide bucket (§4: the last bucket, before the quota)."""
        if gateway is None:
            return decision
        if not decision.admitted:
            if decision.reason == "quota":
                return self._gateway_refusal(gateway, now) or decision
            return decision
        refused = self._gateway_only(gateway, now)
        if not refused.admitted and self._gives_back is not None:
            task = asyncio.ensure_future(self._gives_back.give_back(buckets, quota))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return refused

    def _locally(
        self, buckets: Sequence[state.Bucket], quota: state.Quota | None, gateway: state.Bucket | None, now: float
    ) -> state.Decision:
        """The decision while the store cannot make it: 503 (``closed``; an empty gateway-wide
        bucket still refuses first), or the local store with the gateway-wide bucket last (``open``)."""
        if self._closed:
            return self._gateway_refusal(gateway, now) or UNAVAILABLE
        return self.local.admit_now((*buckets, gateway) if gateway is not None else buckets, quota, now)

    async def used(self, quota_keys: Sequence[str], period_start: float) -> dict[str, int]:
        """Quota use: the shared store's (asked even during an outage: reports are rare), or the
        local counts when it cannot answer (raises ``state.StoreUnavailable`` in ``closed`` mode)."""
        if self.shared:
            try:
                return await self.store.used(quota_keys, period_start)
            except state.StoreUnavailable as exc:
                self._failed(exc)
        if self.shared and self._closed:
            raise state.StoreUnavailable("the limit store is down")
        return await self.local.used(quota_keys, period_start)

    async def _shared(
        self, buckets: Sequence[state.Bucket], quota: state.Quota | None, gateway: state.Bucket | None, now: float
    ) -> state.Decision:
        if self._down and (self._probing or self._monotonic() < self._retry_at):
            return self._locally(buckets, quota, gateway, now)
        self._probing = self._down
        try:
            decision = await self.store.admit(buckets, quota, now)
        except state.StoreUnavailable as exc:
            self._failed(exc)
            return self._locally(buckets, quota, gateway, now)
        finally:
            self._probing = False
        if self._down:
            log.warning("limit store reachable again: shared limits and quotas are back")
            self._down = False
            self._backoff = FIRST_BACKOFF
        return self._after_shared(decision, buckets, quota, gateway, now)

    def _failed(self, exc: state.StoreUnavailable) -> None:
        if self._failures is not None:
            self._failures.inc(())
        if not exc.outage and not self._down:
            return  # one slow call: this request is decided without the store, the next one asks
        if not self._down:
            mode = "refusing limited routes with 503" if self._closed else "limits and quotas are local meanwhile"
            log.error("limit store unavailable (%s): %s", exc, mode)
            self._down = True
        else:
            self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        self._retry_at = self._monotonic() + self._backoff
