"""Canary releases: which side of a Stage's split one request lands on.

A Stage with a ``canary`` serves ``percentTraffic`` percent of its requests from the canary
routes (the canary Api, or the same one, compiled with the canary's variables). The choice is
one cheap draw per request. A client that sends ``x-propylon-canary-key`` is placed by a stable
hash of that value instead, so it always lands on the same side, on every replica and across
restarts (the hash has no per-process seed). See docs/canary.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from propylon_config import model

KEY_HEADER = "x-propylon-canary-key"

Draw = Callable[[], float]  # uniform in [0, 1), like random.random


def key_position(key: str) -> float:
    """Where a sticky key falls in [0, 100): the same value everywhere, for ever."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 * 100.0


def chooses_canary(canary: model.Canary, key: str | None, draw: Draw) -> bool:
    """True when this request is served by the canary side."""
    percent = canary.percent_traffic
    if percent <= 0.0:
        return False
    if percent >= 100.0:
        return True
    position = key_position(key) if key is not None else draw() * 100.0
    return position < percent
