"""Phase: UsagePlans, after Stages (a plan names Stages and their route keys).

Each plan's own fields are checked here: its Stages (a missing one is reported and left out,
the rest of the plan stays in force), per-route throttles (keyed by route keys of the Stage's
Api or its canary's; a key naming neither is reported and limits nothing), the per-key
throttle and the quota (``offset`` as DESIGN.md §8 defines it). Its keys are found by
``api_keys``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from propylon_compiler import apis, fields, objects, stages
from propylon_config import model

OFFSET_LIMITS = {model.QuotaPeriod.DAY: 0, model.QuotaPeriod.WEEK: 6, model.QuotaPeriod.MONTH: 27}
OFFSET_MEANING = {
    model.QuotaPeriod.DAY: "a DAY quota starts at 00:00 UTC: offset must be 0",
    model.QuotaPeriod.WEEK: "the day the week starts, 0 (Sunday) to 6 (Saturday)",
    model.QuotaPeriod.MONTH: "the day of month minus one, 0 to 27",
}


def compile_all(
    index: objects.Index,
    reporter: objects.Reporter,
    served: tuple[model.Stage, ...],
    plans: Mapping[tuple[str, str], apis.ApiPlan],
) -> dict[str, tuple[objects.Object, model.UsagePlan]]:
    """The usable plans by id, with the object each came from (for key selection)."""
    by_id = {stage.id: stage for stage in served}
    out: dict[str, tuple[objects.Object, model.UsagePlan]] = {}
    for obj in index.of_kind("UsagePlan"):
        if reporter.is_broken(obj):
            continue
        plan = _compile(obj, fields.Fields(obj, reporter), by_id, plans)
        if plan is not None and not reporter.is_broken(obj):
            out[plan.id] = (obj, plan)
    return out


def _compile(
    obj: objects.Object,
    f: fields.Fields,
    served: Mapping[str, model.Stage],
    plans: Mapping[tuple[str, str], apis.ApiPlan],
) -> model.UsagePlan | None:
    spec = obj.spec
    plan_stages = _stages(obj, f, spec, served, plans)
    throttle_raw = f.mapping(spec, "throttle", "spec")
    throttle = stages.read_throttle(f, throttle_raw, "spec.throttle") if throttle_raw is not None else None
    quota = _quota(f, spec)
    allow = f.boolean(spec, "allowCacheInvalidation", "spec")
    if f.mapping(spec, "apiKeySelector", "spec") is None and "apiKeySelector" not in spec:
        f.error("spec.apiKeySelector", "no apiKeySelector: the plan selects no API keys", breaks=False)
    return model.UsagePlan(
        id=obj.id,
        namespace=obj.namespace,
        name=obj.name,
        stages=tuple(sorted(plan_stages, key=lambda s: s.stage)),
        throttle=throttle,
        quota=quota,
        allow_cache_invalidation=bool(allow),
        source=apis.source(obj),
    )


def _stages(
    obj: objects.Object,
    f: fields.Fields,
    spec: dict[str, Any],
    served: Mapping[str, model.Stage],
    plans: Mapping[tuple[str, str], apis.ApiPlan],
) -> list[model.PlanStage]:
    raw = spec.get("stages")
    if raw is None:
        return []
    if not isinstance(raw, list):
        f.error("spec.stages", "expected a list")
        return []
    out: list[model.PlanStage] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"spec.stages[{i}]"
        if not isinstance(item, dict):
            f.error(where, "expected a mapping with stageRef")
            continue
        name = f.string(item, "stageRef", where)
        if not name:
            f.error(fields.join(where, "stageRef"), "missing stageRef")
            continue
        stage_id = f"{obj.namespace}/{name}"
        if stage_id in seen:
            f.error(fields.join(where, "stageRef"), f"Stage {stage_id} is listed twice")
            continue
        seen.add(stage_id)
        stage = served.get(stage_id)
        if stage is None:
            f.error(
                fields.join(where, "stageRef"),
                f"Stage {stage_id} not found or not served; the plan does not cover it",
                reason="MissingReference",
                breaks=False,
            )
            continue
        api_namespace, _, api_name = stage.api.partition("/")
        api_plan = plans.get((api_namespace, api_name))
        route_keys = api_plan.route_keys if api_plan is not None else frozenset(r.route_key for r in stage.routes)
        named = f"Api {stage.api}"
        if stage.canary is not None:  # a canary-only route is the Stage's route too
            route_keys |= {r.route_key for r in stage.canary.routes}
            named += f" or its canary Api {stage.canary.api}" if stage.canary.api != stage.api else ""
        throttles: list[tuple[str, model.Throttle]] = []
        for key, block in (f.mapping(item, "throttle", where) or {}).items():
            at = fields.join(fields.join(where, "throttle"), str(key))
            if str(key) not in route_keys:
                # The limit applies to nothing, and the rest of the plan stays in force: an Api
                # edit that removes a route must not cut every key of the plan off (DESIGN.md §8).
                f.error(
                    at,
                    f"no route {key!r} in {named} (served by Stage {stage_id})",
                    reason="MissingReference",
                    breaks=False,
                )
                continue
            if not isinstance(block, dict):
                f.error(at, "expected a mapping with rateLimit and burstLimit")
                continue
            limit = stages.read_throttle(f, block, at)
            if limit is not None:
                throttles.append((str(key), limit))
        out.append(model.PlanStage(stage=stage_id, route_throttles=tuple(sorted(throttles, key=lambda t: t[0]))))
    return out


def _quota(f: fields.Fields, spec: dict[str, Any]) -> model.Quota | None:
    raw = f.mapping(spec, "quota", "spec")
    if raw is None:
        return None
    limit = f.integer(raw, "limit", "spec.quota")
    period_name = f.string(raw, "period", "spec.quota")
    offset = f.integer(raw, "offset", "spec.quota") or 0
    if limit is None or period_name is None:
        if "limit" not in raw or "period" not in raw:
            f.error("spec.quota", "a quota needs limit and period")
        return None
    if limit < 0:
        f.error("spec.quota.limit", "limit must not be negative")
        return None
    try:
        period = model.QuotaPeriod(period_name)
    except ValueError:
        f.error("spec.quota.period", f"unsupported period {period_name!r} (expected DAY, WEEK or MONTH)")
        return None
    if not 0 <= offset <= OFFSET_LIMITS[period]:
        f.error("spec.quota.offset", f"offset {offset} is out of range: {OFFSET_MEANING[period]}")
        return None
    return model.Quota(limit=limit, period=period, offset=offset)
