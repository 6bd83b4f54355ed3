"""Picking a backend address for a ``service`` integration.

Round-robin per request over the Service's ready addresses, skipping an address that failed to
connect for ``failure_seconds``. The state (counters, failures) is keyed by ``ServiceTarget.key``
and lives on the gateway, not the plan, so a config swap does not forget a dead endpoint.
The clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from propylon_config import model

_PRUNE_AT = 256


class Balancer:
    def __init__(self, *, failure_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._failure_seconds = failure_seconds
        self._clock = clock
        self._next: dict[str, int] = {}
        self._failed_until: dict[tuple[str, int], float] = {}

    def pick(
        self, key: str, addresses: Sequence[model.EndpointAddress], exclude: tuple[str, int] | None = None
    ) -> model.EndpointAddress | None:
        ready = [a for a in addresses if a.ready and (a.address, a.port) != exclude]
        if not ready:
            return None
        now = self._clock()
        healthy = [a for a in ready if self._failed_until.get((a.address, a.port), 0.0) <= now]
        # When every address failed recently, trying one beats refusing outright.
        candidates = healthy or ready
        index = self._next.get(key, 0)
        self._next[key] = index + 1
        return candidates[index % len(candidates)]

    def mark_failed(self, address: model.EndpointAddress) -> None:
        now = self._clock()
        if len(self._failed_until) >= _PRUNE_AT:
            # Expired marks mean nothing; dropping them keeps the map as large as the failures
            # of the last ``failure_seconds``, not of the gateway's lifetime.
            self._failed_until = {k: until for k, until in self._failed_until.items() if until > now}
        self._failed_until[(address.address, address.port)] = now + self._failure_seconds

    def retain(self, service_keys: set[str]) -> None:
        """Forget the round-robin positions of Services the current plan no longer routes to."""
        self._next = {key: index for key, index in self._next.items() if key in service_keys}

    def __len__(self) -> int:
        """How many entries the balancer holds (what must stay bounded)."""
        return len(self._next) + len(self._failed_until)
