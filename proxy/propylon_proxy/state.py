"""State that must be exact across replicas, behind one small interface.

Token buckets and quota counters (and, later, usage reports and the WebSocket connection
registry) live in a ``StateStore``. Every admission decision is ONE call, ``admit``: it checks
all of a request's buckets in order and then its quota, and consumes from them only when all
of them admit, so a Redis implementation can make the decision in one round trip (one Lua
script, keys under one hash tag so Redis Cluster can run it) and N replicas never admit more
than the limits allow in total.

``MemoryStore`` is the default, exact within one process. Time is never read here: the caller
passes ``now`` (seconds, from the runtime's injected clock), so tests move time instead of
sleeping.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """A token bucket as Amazon API Gateway defines it: ``rate`` tokens per second refill a
    bucket that holds at most ``burst``; a full bucket to begin with."""

    key: str  # stable and readable: "<reason>:<ns>/<stage>/<routeKey>[:<key id>]"
    rate: float
    burst: int
    reason: str  # what a refusal by this bucket is counted as (section 8 ``reason`` labels)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """At most ``limit`` admitted requests between ``period_start`` and ``period_end``."""

    key: str  # "<ns>/<plan>:<key id>"
    limit: int
    period_start: float  # epoch seconds, UTC
    period_end: float


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    reason: str | None = None  # the refusing bucket's reason, or "quota"
    retry_after: int = 0  # whole seconds until a token (or the next period) is there
    quota_remaining: int | None = None  # after this request, when a quota applied


ADMITTED = Decision(admitted=True)


class StoreUnavailable(Exception):
    """The store could not decide in time (Redis down, slow, or refusing): the caller falls
    back (``--redis-failure open``) or refuses (``closed``). Never raised by ``MemoryStore``.

    ``outage`` says whether the store looks down (connections fail, or several calls in a row
    went unanswered) rather than one call being slow: only an outage stops the caller asking."""

    def __init__(self, message: str, *, outage: bool = True) -> None:
        super().__init__(message)
        self.outage = outage


class StateStore(Protocol):
    async def admit(self, buckets: Sequence[Bucket], quota: Quota | None, now: float) -> Decision:
        """Check every bucket in order, then the quota; consume one token from each bucket and
        one unit of quota only if all admit. Nothing is consumed by a refused request."""
        ...

    async def used(self, quota_keys: Sequence[str], period_start: float) -> dict[str, int]:
        """How much of each quota the current period has used (0 when never used)."""
        ...

    async def close(self) -> None: ...


@dataclasses.dataclass(slots=True)
class _Level:
    tokens: float
    updated: float
    bucket: Bucket  # its rate and burst as last used: the sweep forgets only a full bucket


def _full(level: _Level, now: float) -> bool:
    """Whether the bucket has refilled to its burst by ``now``: only then is forgetting it (it
    comes back full) the same as keeping it."""
    bucket = level.bucket
    return level.tokens + (now - level.updated) * bucket.rate >= bucket.burst


class MemoryStore:
    """Exact within one process (one event loop, so no locks). Buckets untouched for an hour
    are forgotten once they have refilled to their burst (as the Redis store lets a bucket
    expire only then), so state stays bounded by the keys in recent use and a slow bucket
    (``rateLimit: 0.001`` takes hours to refill) is never handed back full too early."""

    IDLE_SECONDS = 3600.0

    def __init__(self) -> None:
        self._levels: dict[str, _Level] = {}
        self._counts: dict[str, tuple[float, int]] = {}  # quota key -> (period start, used)
        self._next_sweep = 0.0

    async def admit(self, buckets: Sequence[Bucket], quota: Quota | None, now: float) -> Decision:
        return self.admit_now(buckets, quota, now)

    def _refilled(self, bucket: Bucket, now: float) -> _Level:
        """The bucket's level as of ``now``: full when first seen, else refilled at its rate up to
        its burst (the one place the token-bucket arithmetic lives, for ``admit_now`` and ``take``)."""
        level = self._levels.get(bucket.key)
        if level is None:
            level = self._levels[bucket.key] = _Level(tokens=float(bucket.burst), updated=now, bucket=bucket)
        else:
            if now > level.updated:
                level.tokens = min(float(bucket.burst), level.tokens + (now - level.updated) * bucket.rate)
                level.updated = now
            level.bucket = bucket  # a reload may have changed its rate: the sweep judges by this one
        return level

    def admit_now(self, buckets: Sequence[Bucket], quota: Quota | None, now: float) -> Decision:
        """``admit`` without the coroutine, for callers already on the loop's thread."""
        if now >= self._next_sweep:
            self._sweep(now)
        levels: list[_Level] = []
        for bucket in buckets:
            level = self._refilled(bucket, now)
            if level.tokens < 1.0:
                wait = (1.0 - level.tokens) / bucket.rate if bucket.rate > 0 else math.inf
                return Decision(admitted=False, reason=bucket.reason, retry_after=whole_seconds(wait))
            levels.append(level)
        remaining = None
        if quota is not None:
            start, used = self._counts.get(quota.key, (quota.period_start, 0))
            if start != quota.period_start:
                used = 0  # a new period began: the old count is gone, so the map stays bounded
            if used >= quota.limit:
                return Decision(
                    admitted=False,
                    reason="quota",
                    retry_after=whole_seconds(quota.period_end - now),
                    quota_remaining=0,
                )
            self._counts[quota.key] = (quota.period_start, used + 1)
            remaining = quota.limit - used - 1
        for level in levels:
            level.tokens -= 1.0
        return Decision(admitted=True, quota_remaining=remaining) if remaining is not None else ADMITTED

    def take(self, bucket: Bucket, now: float) -> float:
        """One bucket alone, the hot path of every request (the gateway-wide limit): 0.0 when a
        token was taken, else the seconds until there is one. No objects made per call."""
        level = self._refilled(bucket, now)
        if level.tokens < 1.0:
            return (1.0 - level.tokens) / bucket.rate if bucket.rate > 0 else math.inf
        level.tokens -= 1.0
        return 0.0

    def refund(self, bucket: Bucket) -> None:
        """Give back the token a request took from ``bucket`` when a later check refused it."""
        level = self._levels.get(bucket.key)
        if level is not None:
            level.tokens = min(float(bucket.burst), level.tokens + 1.0)

    async def used(self, quota_keys: Sequence[str], period_start: float) -> dict[str, int]:
        found = {key: self._counts.get(key, (period_start, 0)) for key in quota_keys}
        return {key: used if start == period_start else 0 for key, (start, used) in found.items()}

    async def close(self) -> None:
        self._levels.clear()
        self._counts.clear()

    def _sweep(self, now: float) -> None:
        idle = [
            key for key, level in self._levels.items() if now - level.updated > self.IDLE_SECONDS and _full(level, now)
        ]
        for key in idle:
            del self._levels[key]
        self._next_sweep = now + self.IDLE_SECONDS


def whole_seconds(seconds: float) -> int:
    """``Retry-After`` is whole seconds: round up, and never say 0 to a refused client."""
    if math.isinf(seconds):
        return 3600
    return max(1, math.ceil(seconds))
