"""``GET /admin/usage/<ns>/<plan>``: each key's quota use in the current period (DESIGN.md §8).

``{"plan": "<ns>/<plan>", "period": {"start": ISO, "end": ISO}, "keys": {"<key id>": {"used":
N, "remaining": N}}}``, read from the limit store the requests are decided by (Redis when the
replicas share one), so every replica answers the same. Key ids only, never a key. A plan
without a quota has no period: ``period`` is null and each key's ``remaining`` too.
"""

from __future__ import annotations

import datetime
from typing import Any

from propylon_config import model
from propylon_proxy import limiter, limits, quota_periods


async def report(
    config: model.GatewayConfig, plan_id: str, now: float, store: limiter.Limiter
) -> dict[str, Any] | None:
    """The report, or None when the snapshot has no such plan."""
    plan = next((p for p in config.usage_plans if p.id == plan_id), None)
    if plan is None:
        return None
    key_ids = sorted(key.name for key in config.api_keys if plan_id in key.plans)
    if plan.quota is None:
        return {"plan": plan_id, "period": None, "keys": {k: {"used": 0, "remaining": None} for k in key_ids}}
    period = quota_periods.current(plan.quota, now)
    used = await store.used([limits.quota_key(plan_id, k) for k in key_ids], period.start)
    keys = {}
    for key_id in key_ids:
        count = used.get(limits.quota_key(plan_id, key_id), 0)
        keys[key_id] = {"used": count, "remaining": max(0, plan.quota.limit - count)}
    return {"plan": plan_id, "period": {"start": _iso(period.start), "end": _iso(period.end)}, "keys": keys}


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
