"""Stages: where each Api is served, with which variables, limits and cache settings.

Steps, in order: read each Stage's own fields; settle host + basePath conflicts (the older
Stage keeps the claim; without timestamps, the one loaded first); then give every route of
the Stage's Api its id, effective throttle and cache, and this Stage's variable values.
Per-route problems that only a Stage reveals (an undefined variable, a Service that is
missing or in a namespace that does not allow it) drop that route from that Stage only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from propylon_compiler import apis, backends, fields, integrations, objects, routes, stage_variables
from propylon_config import gateway_responses as table
from propylon_config import model

_HOST_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CACHE_STRATEGIES = ("SUCCEED_WITH_RESPONSE_HEADER", "FAIL_WITH_403", "SUCCEED_WITHOUT_RESPONSE_HEADER")
CACHE_TTL_RANGE = (0, 3600)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StageSpec:
    """A Stage's own fields, checked; routes come later."""

    obj: objects.Object
    api_name: str
    base_path: str
    hosts: tuple[str, ...]
    endpoint: model.Endpoint
    variables: dict[str, str]
    throttle: model.Throttle | None
    cache: model.CacheSettings | None
    route_settings: dict[str, dict[str, Any]]  # route key -> {"throttle": Throttle|None, "cache": {...}}
    access_log: bool
    canary: dict[str, Any] | None  # {"api": name, "percent": float, "variables": {...}}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    index: objects.Index
    reporter: objects.Reporter
    backends: backends.Backends
    plans: Mapping[tuple[str, str], apis.ApiPlan]
    allow_cross_namespace: bool
    targets: set[model.ServiceTarget]  # filled as routes are compiled, for the endpoints phase
    load_order_wins: bool = False  # CompileOptions.load_order_wins: files, where the first loaded keeps a claim


def compile_all(ctx: Context) -> tuple[model.Stage, ...]:
    specs = []
    for obj in ctx.index.of_kind("Stage"):
        spec = _read(obj, ctx)
        if spec is not None and not ctx.reporter.is_broken(obj):
            specs.append(spec)
    winners = _settle_conflicts(specs, ctx.reporter, load_order_wins=ctx.load_order_wins)
    return tuple(sorted((_compile(spec, ctx) for spec in winners), key=lambda s: s.id))


def _read(obj: objects.Object, ctx: Context) -> StageSpec | None:
    f = fields.Fields(obj, ctx.reporter)
    spec = obj.spec
    api_name = f.string(spec, "apiRef", "spec")
    if api_name is None:
        if "apiRef" not in spec:
            f.error("spec.apiRef", "missing apiRef")
        return None
    base_path = _base_path(f, spec, obj.name)
    hosts = _hosts(f, spec)
    endpoint_name = f.string(spec, "endpoint", "spec") or "PUBLIC"
    try:
        endpoint = model.Endpoint(endpoint_name)
    except ValueError:
        f.error("spec.endpoint", f"unsupported endpoint {endpoint_name!r} (expected PUBLIC or PRIVATE)")
        return None
    variables = _variables(f, spec, "spec")
    throttle = _throttle(f, spec, "spec")
    cache_raw = f.mapping(spec, "cache", "spec")
    cache = _cache(f, cache_raw, "spec.cache", model.CacheSettings()) if cache_raw is not None else None
    route_settings = _route_settings(f, spec, cache or model.CacheSettings())
    access_log = f.mapping(spec, "accessLog", "spec")
    canary = _canary(f, spec, api_name)
    if ctx.reporter.is_broken(obj):
        return None
    plan = ctx.plans.get((obj.namespace, api_name))
    if plan is None:
        exists = ctx.index.get("Api", obj.namespace, api_name) is not None
        state = "is not valid" if exists else "not found"
        reason = "ApiNotReady" if exists else "MissingReference"
        f.error("spec.apiRef", f"Api {obj.namespace}/{api_name} {state}; the Stage serves nothing", reason=reason)
        return None
    _check_route_settings(f, route_settings, plan, canary, ctx)
    return StageSpec(
        obj=obj,
        api_name=api_name,
        base_path=base_path,
        hosts=hosts,
        endpoint=endpoint,
        variables=variables,
        throttle=throttle,
        cache=cache,
        route_settings=route_settings,
        access_log=bool(access_log and access_log.get("enabled") is True),
        canary=canary,
    )


def _check_route_settings(
    f: fields.Fields,
    route_settings: dict[str, dict[str, Any]],
    plan: apis.ApiPlan,
    canary: dict[str, Any] | None,
    ctx: Context,
) -> None:
    """Report routeSettings keys that name no route of the Api nor of its canary's Api.

    Such a key applies to nothing, and the Stage keeps serving: an Api edit that removes a
    route must not take down every Stage naming it (DESIGN.md section 1, "the rest of the gateway
    keeps serving"; the Stage document did not change, so no last good version could help).
    """
    known = _served_keys(plan, canary, ctx.plans)
    where = f"Api {plan.api.id}"
    if canary is not None and canary["api"] != plan.api.name:
        where += f" or its canary Api {plan.obj.namespace}/{canary['api']}"
    for key in route_settings:
        if key not in known:
            f.error(
                fields.join("spec.routeSettings", key),
                f"no route {key!r} in {where}",
                reason="MissingReference",
                breaks=False,
            )


def _served_keys(
    plan: apis.ApiPlan, canary: dict[str, Any] | None, plans: Mapping[tuple[str, str], apis.ApiPlan]
) -> frozenset[str]:
    """The route keys a Stage serves on either side: its Api's, and its canary Api's when valid."""
    canary_plan = plans.get((plan.obj.namespace, canary["api"])) if canary is not None else None
    return plan.route_keys if canary_plan is None else plan.route_keys | canary_plan.route_keys


def _settle_conflicts(
    specs: list[StageSpec], reporter: objects.Reporter, *, load_order_wins: bool = False
) -> list[StageSpec]:
    """Give each host + basePath to one Stage; the others are reported and left out.

    In the cluster, older first when Stages carry creationTimestamp, then namespace/name; from
    files (``load_order_wins``), and for Stages without a timestamp, input order (files in path
    order, documents in order).
    """

    def priority(spec: StageSpec) -> tuple[Any, ...]:
        created = spec.obj.metadata.get("creationTimestamp")
        if created and not load_order_wins:
            return (0, str(created), spec.obj.namespace, spec.obj.name)
        return (1, spec.obj.order)

    owners: dict[tuple[str, str], StageSpec] = {}
    winners: list[StageSpec] = []
    for spec in sorted(specs, key=priority):
        claims = [(host, spec.base_path) for host in (spec.hosts or ("",))]
        taken = next((owners[c] for c in claims if c in owners), None)
        if taken is not None:
            host = next(c[0] for c in claims if c in owners)
            where = f"host {host} and " if host else ""
            reporter.error(
                spec.obj,
                "spec.basePath",
                f"{where}basePath {spec.base_path} {'are' if host else 'is'} already served by Stage {taken.obj.id} "
                f"({taken.obj.document.origin})",
                reason="Conflict",
            )
            continue
        owners.update((c, spec) for c in claims)
        winners.append(spec)
    return winners


def _compile(spec: StageSpec, ctx: Context) -> model.Stage:
    obj = spec.obj
    plan = ctx.plans[(obj.namespace, spec.api_name)]
    stage_routes = _routes(spec, plan, spec.variables, ctx, canary=False)
    canary = _compile_canary(spec, plan, ctx)
    return model.Stage(
        id=obj.id,
        namespace=obj.namespace,
        name=obj.name,
        api=plan.api.id,
        base_path=spec.base_path,
        hosts=spec.hosts,
        endpoint=spec.endpoint,
        variables=tuple(sorted(spec.variables.items())),
        routes=stage_routes,
        gateway_responses=plan.gateway_responses,
        access_log=spec.access_log,
        throttle=spec.throttle,
        cache=spec.cache,
        canary=canary,
        cache_flush=_flush_generation(spec.obj),
        source=apis.source(obj),
    )


def _compile_canary(spec: StageSpec, plan: apis.ApiPlan, ctx: Context) -> model.Canary | None:
    """The canary side, or None when its Api cannot serve it: then every request goes to the main Api.

    A canary that cannot be served is a problem the Stage's status shows (Ready=False) without
    taking the main side down.
    """
    if spec.canary is None:
        return None
    obj = spec.obj
    name = spec.canary["api"]
    fallback = f"the canary is not served and every request goes to Api {plan.api.id}"
    canary_plan = ctx.plans.get((obj.namespace, name))
    if canary_plan is None:
        exists = ctx.index.get("Api", obj.namespace, name) is not None
        ctx.reporter.error(
            obj,
            "spec.canary.apiRef",
            f"Api {obj.namespace}/{name} {'is not valid' if exists else 'not found'}; {fallback}",
            reason="ApiNotReady" if exists else "MissingReference",
            breaks=False,
        )
        return None
    if plan.api.protocol is not model.Protocol.HTTP or canary_plan.api.protocol is not model.Protocol.HTTP:
        ctx.reporter.error(
            obj,
            "spec.canary",
            f"a canary needs HTTP Apis (Api {plan.api.id} is {plan.api.protocol.value}, "
            f"Api {canary_plan.api.id} is {canary_plan.api.protocol.value}); {fallback}",
            breaks=False,
        )
        return None
    variables = {**spec.variables, **spec.canary["variables"]}
    return model.Canary(
        percent_traffic=spec.canary["percent"],
        api=canary_plan.api.id,
        variables=tuple(sorted(spec.canary["variables"].items())),
        routes=_routes(spec, canary_plan, variables, ctx, canary=True),
        gateway_responses=canary_plan.gateway_responses,
    )


def _routes(
    spec: StageSpec, plan: apis.ApiPlan, variables: dict[str, str], ctx: Context, *, canary: bool
) -> tuple[model.Route, ...]:
    out: list[model.Route] = []
    # Declaration order, so diagnostics read top to bottom; the result is sorted at the end.
    for template in sorted(plan.routes, key=lambda t: t.index):
        route = template.route
        integration_path = f"spec.routes[{template.index}].integration"
        integration, problems = integrations.resolve(route.integration, variables)
        unusable = False
        for where, problem in problems:
            unusable = True
            if problem.startswith("variable:"):
                name = problem.removeprefix("variable:")
                which = "canary variables or variables" if canary else "variables"
                ctx.reporter.error(
                    spec.obj,
                    "spec.canary.variables" if canary else "spec.variables",
                    f"stage variable {name!r} is not in spec.{which} (used by Api {plan.api.id} at "
                    f"{integration_path}.{where}); "
                    f"route {route.route_key!r} {apis.REFUSES_API}",
                    reason="MissingReference",
                    breaks=False,
                )
            else:
                ctx.reporter.error(
                    spec.obj,
                    "spec.variables",
                    f"{problem} (Api {plan.api.id} {integration_path}.{where}); "
                    f"route {route.route_key!r} {apis.REFUSES_API}",
                    breaks=False,
                )
        # A route that cannot be served as written stays in the table and refuses everything.
        refusal = route.refusal
        if unusable or not _service_usable(integration, route, plan, integration_path, spec, ctx):
            refusal = refusal or table.API_CONFIGURATION_ERROR
        elif refusal is None and integration.service is not None:
            ctx.targets.add(integration.service)
        settings = spec.route_settings.get(route.route_key, {})
        out.append(
            dataclasses.replace(
                route,
                id=f"{spec.obj.namespace}/{plan.api.name}/{spec.obj.name}/{route.route_key}",
                integration=integration,
                throttle=settings.get("throttle") or spec.throttle,
                throttle_from_route_settings=settings.get("throttle") is not None,
                cache=_route_cache(route, spec.cache, settings),
                refusal=refusal,
            )
        )
    return routes.sort(out)


def _service_usable(
    integration: model.Integration, template: model.Route, plan: apis.ApiPlan, path: str, spec: StageSpec, ctx: Context
) -> bool:
    """Reference checks on a ``service`` target; problems are reported on the Api's route."""
    target = integration.service
    if target is None:
        return True
    api_namespace = plan.obj.namespace
    # A name built from stage variables is only wrong for some Stages: say which.
    templated = template.integration.service is not None and template.integration.service.name != target.name
    in_stage = f" (Stage {spec.obj.id})" if templated else ""
    refuses = f"route {template.route_key!r} {apis.REFUSES_API}"
    if not (ctx.allow_cross_namespace or ctx.backends.allows(api_namespace, target.namespace)):
        ctx.reporter.error(
            plan.obj,
            f"{path}.service.namespace",
            f"routing to namespace {target.namespace} is not allowed: it has no Service labelled "
            f"{backends.ALLOW_FROM_LABEL}: {api_namespace}; {refuses}",
            reason="RefNotPermitted",
            breaks=False,
        )
        return False
    if not ctx.backends.exists(target):
        ctx.reporter.error(
            plan.obj,
            f"{path}.service.name",
            f"Service {target.namespace}/{target.name} not found{in_stage} (no Service and no EndpointSlice "
            f"labelled {backends.SERVICE_NAME_LABEL}: {target.name}); {refuses}",
            reason="MissingReference",
            breaks=False,
        )
        return False
    if ctx.backends.missing_port(target):
        ctx.reporter.error(
            plan.obj,
            f"{path}.service.port",
            f"Service {target.namespace}/{target.name} has no port {target.port}{in_stage}; {refuses}",
            reason="MissingReference",
            breaks=False,
        )
        return False
    return True


FLUSH_ANNOTATION = "propylon.dev/flush-cache"


def _flush_generation(obj: objects.Object) -> str:
    """The Stage's flush annotation: the proxy flushes the stage's cache when it changes."""
    found = obj.metadata.get("annotations")
    value = found.get(FLUSH_ANNOTATION) if isinstance(found, dict) else None
    return "" if value is None else str(value)


def _route_cache(
    route: model.Route, stage_cache: model.CacheSettings | None, settings: dict[str, Any]
) -> model.CacheSettings | None:
    """DESIGN.md section 8: cached when the effective setting is on and the method is GET,
    or when routeSettings turn caching on for this route explicitly."""
    effective = settings.get("cache") or stage_cache or model.CacheSettings()
    explicit = settings.get("cache_enabled")
    enabled = explicit if explicit is not None else effective.enabled and route.method == "GET"
    if not enabled or effective.ttl_seconds == 0:
        return None
    return dataclasses.replace(effective, enabled=True)


def _base_path(f: fields.Fields, spec: dict[str, Any], name: str) -> str:
    raw = f.string(spec, "basePath", "spec")
    value = f"/{name}" if raw is None else raw.strip()
    if not value.startswith("/"):
        value = "/" + value
    value = value.rstrip("/") or "/"
    if value != "/":
        for segment in value[1:].split("/"):
            if "%" in segment:
                f.error("spec.basePath", f"basePath {raw!r}: {routes.PERCENT_PROBLEM}")
                break
            if segment == "" or "{" in segment or "}" in segment or not routes.is_literal(segment):
                f.error("spec.basePath", f"basePath {raw!r} must be '/' or literal path segments such as '/prod'")
                break
            if segment in (".", ".."):
                f.error("spec.basePath", f"basePath {raw!r} must not contain '.' or '..' segments")
                break
    return value


def _hosts(f: fields.Fields, spec: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for i, raw in enumerate(f.strings(spec, "hosts", "spec")):
        host = raw.strip().lower()
        if ":" in host and not host.startswith("["):
            host = host.rsplit(":", 1)[0]  # hosts ignore the port (section 8)
        labels = host.split(".")
        plain = labels[1:] if labels[0] == "*" else labels
        if not host or (len(labels) == 1 and labels[0] == "*") or not all(_HOST_LABEL.match(label) for label in plain):
            f.error(f"spec.hosts[{i}]", f"invalid host {raw!r}: a DNS name, optionally starting with one '*.' label")
            continue
        if host not in out:
            out.append(host)
    return tuple(sorted(out))


def _variables(f: fields.Fields, spec: dict[str, Any], path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in f.string_map(spec, "variables", path):
        if not stage_variables.NAME.match(name):
            f.error(
                fields.join(fields.join(path, "variables"), name),
                f"invalid stage variable name {name!r}: letters, digits and '_'",
            )
            continue
        out[name] = value
    return out


def _throttle(f: fields.Fields, spec: dict[str, Any], path: str) -> model.Throttle | None:
    raw = f.mapping(spec, "throttle", path)
    if raw is None:
        return None
    return read_throttle(f, raw, fields.join(path, "throttle"))


def read_throttle(f: fields.Fields, raw: dict[str, Any], where: str) -> model.Throttle | None:
    """One ``{rateLimit, burstLimit}`` block at ``where`` (Stages and UsagePlans share it)."""
    rate = f.number(raw, "rateLimit", where)
    burst = f.integer(raw, "burstLimit", where)
    if rate is None or burst is None:
        if "rateLimit" not in raw or "burstLimit" not in raw:
            f.error(where, "a throttle needs rateLimit and burstLimit")
        return None
    if rate < 0 or burst < 0:
        f.error(where, "rateLimit and burstLimit must not be negative")
        return None
    # Always a float, so the snapshot's version survives a JSON round trip unchanged.
    return model.Throttle(rate_limit=float(rate), burst_limit=burst)


def _cache(f: fields.Fields, raw: dict[str, Any], path: str, base: model.CacheSettings) -> model.CacheSettings:
    enabled = f.boolean(raw, "enabled", path)
    ttl = f.integer(raw, "ttlSeconds", path)
    if ttl is not None and not CACHE_TTL_RANGE[0] <= ttl <= CACHE_TTL_RANGE[1]:
        f.error(
            fields.join(path, "ttlSeconds"), f"ttlSeconds must be between {CACHE_TTL_RANGE[0]} and {CACHE_TTL_RANGE[1]}"
        )
    capacity = f.integer(raw, "capacityMiB", path)
    if capacity is not None and capacity <= 0:
        f.error(fields.join(path, "capacityMiB"), "capacityMiB must be positive")
    require = f.boolean(raw, "requireAuthorizationForCacheControl", path)
    strategy = f.string(raw, "unauthorizedCacheControlHeaderStrategy", path)
    if strategy is not None and strategy not in CACHE_STRATEGIES:
        f.error(
            fields.join(path, "unauthorizedCacheControlHeaderStrategy"),
            f"unsupported strategy {strategy!r} (expected one of: {', '.join(CACHE_STRATEGIES)})",
        )
    return model.CacheSettings(
        enabled=base.enabled if enabled is None else enabled,
        ttl_seconds=base.ttl_seconds if ttl is None else ttl,
        capacity_mib=base.capacity_mib if capacity is None else capacity,
        require_authorization_for_cache_control=base.require_authorization_for_cache_control
        if require is None
        else require,
        unauthorized_cache_control_header_strategy=strategy or base.unauthorized_cache_control_header_strategy,
    )


def _route_settings(
    f: fields.Fields, spec: dict[str, Any], stage_cache: model.CacheSettings
) -> dict[str, dict[str, Any]]:
    raw = f.mapping(spec, "routeSettings", "spec") or {}
    out: dict[str, dict[str, Any]] = {}
    for key, block in raw.items():
        where = fields.join("spec.routeSettings", str(key))
        if not isinstance(block, dict):
            f.error(where, "expected a mapping with throttle and/or cache")
            continue
        settings: dict[str, Any] = {"throttle": _throttle(f, block, where)}
        cache_raw = f.mapping(block, "cache", where)
        if cache_raw is not None:
            # A routeSettings cache block refines the Stage's; "enabled" counts only if written.
            settings["cache"] = _cache(f, cache_raw, fields.join(where, "cache"), stage_cache)
            settings["cache_enabled"] = cache_raw.get("enabled") if isinstance(cache_raw.get("enabled"), bool) else None
        out[str(key)] = settings
    return out


def _canary(f: fields.Fields, spec: dict[str, Any], api_name: str) -> dict[str, Any] | None:
    raw = f.mapping(spec, "canary", "spec")
    if raw is None:
        return None
    percent = f.number(raw, "percentTraffic", "spec.canary")
    if percent is not None and not 0 <= percent <= 100:
        f.error("spec.canary.percentTraffic", "percentTraffic must be between 0 and 100")
    return {
        "api": f.string(raw, "apiRef", "spec.canary") or api_name,
        "percent": float(percent or 0.0),
        "variables": _variables(f, raw, "spec.canary"),
    }
