"""One UsagePlan's quota use, combined from what the proxies answer on ``/admin/usage``.

Pure: the poller passes in each proxy's answer (None for one that did not answer) and what it
knows of the store, and gets back the ``status.usage`` to publish. How the answers combine
depends on where the proxies count:

- **shared** (``--redis``): every proxy reads the same counters, so the answers are the same
  number read at slightly different moments. They are never added (that would count each
  request once per replica); the highest reading per key wins, the latest one.
- **memory** (no Redis): each proxy counts only what it admitted, so the plan's use is the sum
  of all of them; a proxy that did not answer leaves the sum short, and ``reportedBy`` says so.

Only answers of the latest quota period count: at a period boundary a proxy that has not yet
rolled over still reports the old period's use. Key ids only (Secret names), never a key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Combined:
    usage: dict[str, Any] | None  # the status.usage to publish; None: nothing answered
    answered: int
    asked: int


def combine(answers: Sequence[dict[str, Any] | None], *, shared: bool, limit: int | None, read_at: str) -> Combined:
    """``answers``: each proxy's ``/admin/usage`` body, or None; ``limit``: the plan's quota."""
    good = [a for a in answers if isinstance(a, dict) and isinstance(a.get("keys"), dict)]
    if not good:
        return Combined(usage=None, answered=0, asked=len(answers))
    latest = max(_period_start(a) for a in good)
    current = [a for a in good if _period_start(a) == latest]
    used: dict[str, int] = {}
    for answer in current:
        for key_id, entry in sorted(answer["keys"].items()):
            count = _count(entry)
            if shared:
                used[key_id] = max(used.get(key_id, 0), count)
            else:
                used[key_id] = used.get(key_id, 0) + count
    keys = {
        key_id: {"used": count, "remaining": None if limit is None else max(0, limit - count)}
        for key_id, count in sorted(used.items())
    }
    usage = {
        "period": current[0].get("period"),
        "keys": keys,
        "store": "shared" if shared else "memory",
        "reportedBy": f"{len(good)} of {len(answers)} proxies",
        "readAt": read_at,
    }
    return Combined(usage=usage, answered=len(good), asked=len(answers))


def _period_start(answer: dict[str, Any]) -> str:
    period = answer.get("period")
    # RFC 3339 UTC with Z, all the same width: string order is time order.
    return str(period.get("start") or "") if isinstance(period, dict) else ""


def _count(entry: Any) -> int:
    value = entry.get("used") if isinstance(entry, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
