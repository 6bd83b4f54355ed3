"""Plans: a snapshot prepared for serving, and the holder that swaps them atomically.

A plan is built once per snapshot (route tries per listener, per-route chains, lookup tables)
and never changes. A request reads ``PlanHolder.current`` once and keeps that plan to the end,
so a swap in the middle of a request cannot mix two configurations. What must outlive a swap
lives in ``runtime``, claimed by stable ids while the plan is built.
"""

from __future__ import annotations

import dataclasses

from propylon_config import gc_pause, model
from propylon_proxy import chains, cors, metrics, routing, runtime, steps
from propylon_proxy.websocket import session as ws_session
from propylon_proxy.websocket import tables as ws_tables


@dataclasses.dataclass(frozen=True, slots=True)
class RoutePlan:
    """What runs for one route, decided once per plan."""

    route: model.Route
    chain: steps.Chain
    labels: metrics.Labels  # the route's metric labels, built once rather than per request
    series: metrics.RouteSeries  # its request series, bound once rather than looked up per request


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    config: model.GatewayConfig
    public: routing.StageTable
    internal: routing.StageTable
    routes: dict[str, RoutePlan]  # route id -> its plan
    gateway_responses: dict[str, dict[str, model.GatewayResponse]]  # stage id -> type -> response
    variables: dict[str, dict[str, str]]  # stage id -> stage variables
    apis: dict[str, model.Api]
    endpoints: dict[str, tuple[model.EndpointAddress, ...]]  # ServiceTarget.key -> addresses
    websocket: ws_tables.Tables | None = None  # WebSocket stages by base path (issue 14)
    sessions: ws_session.Sessions | None = None  # open connections; outlive plans
    # Canary sides (issue 13): route id -> plan, stage id -> the Stage's variables overlaid by
    # the canary's. Canary routes keep their main route's id, so they have a table of their own.
    canary_routes: dict[str, RoutePlan] = dataclasses.field(default_factory=dict)
    canary_variables: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    # Stage id -> its canary Api's gateway responses and CORS step (as ``gateway_responses`` and
    # ``cors`` are for the main side): a canary request is the canary Api's from its first refusal
    # to its last, also when no canary route matches it. (Declared before ``cors``, whose name
    # would hide the module in these annotations.)
    canary_gateway_responses: dict[str, dict[str, model.GatewayResponse]] = dataclasses.field(default_factory=dict)
    canary_cors: dict[str, cors.CorsStep] = dataclasses.field(default_factory=dict)
    # Stage id -> its Api's CORS step, for requests no route matches (the 404, and a preflight
    # for a method no route has): DESIGN.md §8 wants both answered as the Api's CORS says.
    cors: dict[str, cors.CorsStep] = dataclasses.field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.config.version


def build(config: model.GatewayConfig, run: runtime.Runtime) -> Plan:
    apis = {a.id: a for a in config.apis}
    http_stages = [s for s in config.stages if _is_http(apis, s)]
    routes: dict[str, RoutePlan] = {}
    canary_routes: dict[str, RoutePlan] = {}
    for stage in http_stages:
        _plan_routes(routes, stage, apis, stage.api, stage.routes, config, run)
        if stage.canary is not None:
            _plan_routes(canary_routes, stage, apis, stage.canary.api, stage.canary.routes, config, run)
    # Stages whose Api has `cors`: there the gateway answers a preflight for any route's path,
    # even when no OPTIONS (or ANY) route is declared (DESIGN.md section 8, CORS).
    cors_stages = frozenset(s.id for s in http_stages if (api := apis.get(s.api)) is not None and api.cors is not None)
    canary_cors = frozenset(
        s.id
        for s in http_stages
        if s.canary is not None and (a := apis.get(s.canary.api)) is not None and a.cors is not None
    )
    return Plan(
        config=config,
        public=routing.StageTable(
            (s for s in http_stages if s.endpoint is model.Endpoint.PUBLIC), cors_stages, canary_cors
        ),
        internal=routing.StageTable(http_stages, cors_stages, canary_cors),
        routes=routes,
        gateway_responses={s.id: dict(s.gateway_responses) for s in config.stages},
        variables={s.id: dict(s.variables) for s in config.stages},
        apis=apis,
        endpoints={e.key: e.addresses for e in config.endpoints},
        websocket=ws_tables.build(config, run),
        sessions=ws_session.shared(run),
        canary_routes=canary_routes,
        canary_variables={
            s.id: {**dict(s.variables), **dict(s.canary.variables)} for s in http_stages if s.canary is not None
        },
        cors={
            s.id: cors.CorsStep(cors.CorsPolicy.of(api.cors))
            for s in http_stages
            if (api := apis.get(s.api)) is not None and api.cors is not None
        },
        canary_gateway_responses={s.id: dict(s.canary.gateway_responses) for s in http_stages if s.canary is not None},
        canary_cors={
            s.id: cors.CorsStep(cors.CorsPolicy.of(api.cors))
            for s in http_stages
            if s.canary is not None and (api := apis.get(s.canary.api)) is not None and api.cors is not None
        },
    )


def _plan_routes(
    into: dict[str, RoutePlan],
    stage: model.Stage,
    apis: dict[str, model.Api],
    api_id: str,
    stage_routes: tuple[model.Route, ...],
    config: model.GatewayConfig,
    run: runtime.Runtime,
) -> None:
    api = apis.get(api_id)
    for route in stage_routes:
        setup = steps.RouteSetup(route=route, stage=stage, api=api, config=config, runtime=run)
        labels = metrics.GatewayMetrics.labels(api_id, stage.id, route.route_key)
        into[route.id] = RoutePlan(
            route=route, chain=chains.build(setup), labels=labels, series=run.metrics.series(labels)
        )


def _is_http(apis: dict[str, model.Api], stage: model.Stage) -> bool:
    api = apis.get(stage.api)
    return api is None or api.protocol is model.Protocol.HTTP


class PlanHolder:
    """The current plan; ``swap`` replaces it in one assignment."""

    def __init__(self, run: runtime.Runtime) -> None:
        self._runtime = run
        self._current: Plan | None = None

    @property
    def current(self) -> Plan | None:
        return self._current

    def swap(self, config: model.GatewayConfig) -> Plan:
        """Build the plan for ``config`` and serve it; resources only the old plan used retire."""
        resources = self._runtime.resources
        resources.begin()
        with gc_pause.paused():  # 0.65 s -> 0.25 s for 10,000 routes (propylon_config.gc_pause)
            plan = build(config, self._runtime)
        self._current = plan
        resources.settle()
        # Bounded state (issue 8, item 9): metric series and balancer entries of routes and
        # Services the new plan no longer has are dropped.
        kept = [*plan.routes.values(), *plan.canary_routes.values()]
        live = {route.labels for route in kept}
        # A served Stage's requests that no route of it matched (its 404s, route="") are the
        # Stage's series, not a route's: they stay while the Stage does, or every reload would
        # reset them (canary side: counted under the canary's Api, as handling labels them).
        for stage in config.stages:
            live.add(metrics.GatewayMetrics.labels(stage.api, stage.id, ""))
            if stage.canary is not None:
                live.add(metrics.GatewayMetrics.labels(stage.canary.api, stage.id, ""))
        if plan.websocket is not None:  # $connect's series (upgrades, its refusals) are a route's too
            live.update(ws.connect_labels for ws in plan.websocket.internal.values())
        self._runtime.metrics.retain_routes(live)
        self._runtime.balancer.retain({e.key for e in config.endpoints})
        ws_session.retain(plan.sessions, plan.websocket)  # close connections of removed stages (1001)
        return plan
