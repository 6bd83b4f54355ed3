"""Steps 5 and 6 of the chain: throttles, then the quota, decided in ONE state-store call.

DESIGN.md §4: a request must pass, in order, the usage plan's per-route limit for its key,
the plan's per-key limit, the stage's per-route limit (``routeSettings``) or else the stage
default (one bucket per route either way), the gateway-wide limit, and then the quota. Both
slots are one step because they are one decision: ``StateStore.admit`` checks every bucket and
the quota together and consumes from them only when all admit, so a throttled request never
counts toward the quota and one Redis round trip decides it all.

Bucket and quota keys are stable and readable, and carry a Redis hash tag (``{...}``) so one
key's plan buckets and quota share a slot in a Redis Cluster:
``plan_route:{<plan>:<key id>}:<route id>``, ``plan:{<plan>:<key id>}``,
``quota:{<plan>:<key id>}``, ``stage:{<route id>}``; the gateway-wide bucket is ``gateway``.

A refusal is 429 THROTTLED or QUOTA_EXCEEDED with ``Retry-After`` and counts in
``propylon_throttled_total`` with the refusing limit's ``reason``; a shared store that is down
with ``--redis-failure closed`` gives 503 SERVICE_UNAVAILABLE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from propylon_config import model
from propylon_proxy import context, gateway_responses, limiter, metrics, quota_periods, replies, state, steps

PLAN_ROUTE, PLAN, ROUTE, STAGE, GATEWAY, QUOTA = "plan_route", "plan", "route", "stage", "gateway", "quota"
_UNAVAILABLE = replies.refuse(gateway_responses.SERVICE_UNAVAILABLE)


@dataclasses.dataclass(frozen=True, slots=True)
class _PlanLimits:
    """One usage plan's limits on this route, before a key is known."""

    plan: str
    route_throttle: model.Throttle | None
    throttle: model.Throttle | None
    quota: model.Quota | None
    periods: quota_periods.PeriodCache | None


def step_for(setup: steps.RouteSetup) -> steps.Step:
    """Every route has one: the gateway-wide limit applies to every request."""
    route, run = setup.route, setup.runtime
    plans: dict[str, _PlanLimits] = {}
    if route.api_key_required:
        for plan in setup.config.usage_plans:
            covered = next((s for s in plan.stages if s.stage == setup.stage.id), None)
            if covered is None:
                continue
            plans[plan.id] = _PlanLimits(
                plan=plan.id,
                route_throttle=dict(covered.route_throttles).get(route.route_key),
                throttle=plan.throttle,
                quota=plan.quota,
                periods=quota_periods.PeriodCache(plan.quota) if plan.quota is not None else None,
            )
    stage_bucket = None
    if route.throttle is not None:
        stage_bucket = _bucket(
            f"stage:{{{route.id}}}", route.throttle, ROUTE if route.throttle_from_route_settings else STAGE
        )
    gateway = _bucket(GATEWAY, setup.config.settings.gateway_throttle, GATEWAY)
    return _Limits(
        limiter=_limiter(setup),
        clock=run.clock,
        metrics=run.metrics,
        route_id=route.id,
        plans=plans,
        stage_bucket=stage_bucket,
        gateway=gateway,
    )


def _limiter(setup: steps.RouteSetup) -> limiter.Limiter:
    found = setup.runtime.limiter
    assert found is not None  # Runtime.__post_init__ makes one
    return found


def key_tag(plan: str, key_id: str) -> str:
    """The hash tag of one API key's state under one plan: its buckets and quota share a slot."""
    return f"{{{plan}:{key_id}}}"


def quota_key(plan: str, key_id: str) -> str:
    return f"{QUOTA}:{key_tag(plan, key_id)}"


def _bucket(key: str, throttle: model.Throttle, reason: str) -> state.Bucket:
    return state.Bucket(key=key, rate=throttle.rate_limit, burst=throttle.burst_limit, reason=reason)


class _Limits:
    """The step; ``_keyed`` caches each (plan, key)'s buckets: bounded by the snapshot's keys."""

    name = "throttles and quota"
    after = None

    def __init__(
        self,
        *,
        limiter: limiter.Limiter,
        clock: Callable[[], float],
        metrics: metrics.GatewayMetrics,
        route_id: str,
        plans: dict[str, _PlanLimits],
        stage_bucket: state.Bucket | None,
        gateway: state.Bucket,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._metrics = metrics
        self._route_id = route_id
        self._plans = plans
        self._stage_bucket = stage_bucket
        self._gateway = gateway
        self._keyed: dict[tuple[str, str], tuple[tuple[state.Bucket, ...], str]] = {}
        self._plain: tuple[state.Bucket, ...] = (stage_bucket,) if stage_bucket is not None else ()
        self._quotas: dict[str, state.Quota] = {}  # quota key -> its Quota for the current period

    def _for_key(self, limits: _PlanLimits, key_id: str) -> tuple[tuple[state.Bucket, ...], str]:
        found = self._keyed.get((limits.plan, key_id))
        if found is None:
            tag = key_tag(limits.plan, key_id)
            buckets: list[state.Bucket] = []
            if limits.route_throttle is not None:
                buckets.append(_bucket(f"plan_route:{tag}:{self._route_id}", limits.route_throttle, PLAN_ROUTE))
            if limits.throttle is not None:
                buckets.append(_bucket(f"plan:{tag}", limits.throttle, PLAN))
            buckets.extend(self._plain)
            found = self._keyed[(limits.plan, key_id)] = (tuple(buckets), quota_key(limits.plan, key_id))
        return found

    async def before(self, ctx: context.RequestContext) -> replies.Refusal | None:
        now = self._clock()
        buckets = self._plain
        quota = None
        limits = self._plans.get(ctx.usage_plan) if ctx.usage_plan is not None else None
        if limits is not None and ctx.api_key_id is not None:
            buckets, quota_name = self._for_key(limits, ctx.api_key_id)
            if limits.quota is not None and limits.periods is not None:
                period = limits.periods.at(now)
                quota = self._quotas.get(quota_name)
                if quota is None or quota.period_start != period.start:  # one per key and period
                    quota = self._quotas[quota_name] = state.Quota(
                        key=quota_name, limit=limits.quota.limit, period_start=period.start, period_end=period.end
                    )
        # In memory (or the gateway-wide limit alone) the decision needs no coroutine.
        decision = self._limiter.decide_now(buckets, quota, self._gateway, now)
        if decision is None:
            decision = await self._limiter.admit(buckets, quota, self._gateway, now)
        if decision.admitted:
            return None
        if decision.reason == limiter.UNAVAILABLE.reason:
            return _UNAVAILABLE
        reason = decision.reason or GATEWAY
        labels = ctx.labels if ctx.labels is not None else metrics.route_labels(ctx.stage, ctx.route)
        self._metrics.throttled.inc((*labels, ("reason", reason)))
        error_type = gateway_responses.QUOTA_EXCEEDED if reason == QUOTA else gateway_responses.THROTTLED
        return replies.refuse(error_type, ("Retry-After", str(decision.retry_after)))
