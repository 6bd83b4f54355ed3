"""Waiting for a burst of changes to settle before recompiling.

``kubectl apply -f`` of a folder arrives as a quick run of watch events; compiling after each
would publish half-applied states. So the reconcile waits for a short quiet spell, but never
longer than a ceiling, so that a steady trickle of changes (EndpointSlices churning) still gets
through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from propylon_operator import inventory


async def settle(
    wakeup: inventory.Wakeup,
    *,
    quiet: float,
    ceiling: float,
    clock: Callable[[], float] | None = None,
) -> None:
    """Return once ``quiet`` seconds pass without a wake-up, or ``ceiling`` seconds after the call."""
    now = clock or asyncio.get_running_loop().time
    deadline = now() + ceiling
    while True:
        remaining = deadline - now()
        if remaining <= 0:
            return
        if not await wakeup.wait(min(quiet, remaining)):
            return
