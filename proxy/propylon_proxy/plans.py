"""Plans: a snapshot prepared for serving, and the holder that swaps them atomically.

A plan is built once per snapshot (route tries per listener, per-route chains, lookup tables)
and never changes. A request reads ``PlanHolder.current`` once and keeps that plan to the end,
so a swap in the middle of a request cannot mix two configurations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

from propylon_config import model
from propylon_proxy import guards, metrics, routing


@dataclasses.dataclass(frozen=True, slots=True)
class StepInput:
    """What a chain step may look at: the request as checked and routed, never raw bytes again."""

    request: web.BaseRequest
    match: routing.Match
    request_id: str
    source_ip: str


# A step answers with a section-3 response type to stop the chain ("UNAUTHORIZED",
# "THROTTLED", ...), or None to let the request go on.
Step = Callable[[StepInput], Awaitable[str | None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    """What runs for one route, decided once per plan.

    ``steps`` run in order before the integration; authorizers, API keys, throttling,
    validation and caching slot in here as they are built, each
    prepared once per plan with the route's settings rather than looked up per request.
    Until they are built, ``guards`` refuses routes whose security settings cannot be enforced.
    """

    route: model.Route
    steps: tuple[Step, ...]
    integration: model.IntegrationType
    labels: metrics.Labels  # the route's metric labels, built once rather than per request


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    config: model.GatewayConfig
    public: routing.StageTable
    internal: routing.StageTable
    chains: dict[str, Chain]
    gateway_responses: dict[str, dict[str, model.GatewayResponse]]  # stage id -> type -> response
    variables: dict[str, dict[str, str]]  # stage id -> stage variables
    apis: dict[str, model.Api]
    endpoints: dict[str, tuple[model.EndpointAddress, ...]]  # ServiceTarget.key -> addresses

    @property
    def version(self) -> str:
        return self.config.version


def _chain(stage: model.Stage, route: model.Route) -> Chain:
    return Chain(
        route=route,
        steps=guards.steps_for(route),
        integration=route.integration.type,
        labels=metrics.GatewayMetrics.labels(stage.api, stage.id, route.route_key),
    )


def build(config: model.GatewayConfig) -> Plan:
    http_stages = [s for s in config.stages if _is_http(config, s)]
    chains: dict[str, Chain] = {}
    for stage in http_stages:
        for route in stage.routes:
            chains[route.id] = _chain(stage, route)
    return Plan(
        config=config,
        public=routing.StageTable(s for s in http_stages if s.endpoint is model.Endpoint.PUBLIC),
        internal=routing.StageTable(http_stages),
        chains=chains,
        gateway_responses={s.id: dict(s.gateway_responses) for s in config.stages},
        variables={s.id: dict(s.variables) for s in config.stages},
        apis={a.id: a for a in config.apis},
        endpoints={e.key: e.addresses for e in config.endpoints},
    )


def _is_http(config: model.GatewayConfig, stage: model.Stage) -> bool:
    api = next((a for a in config.apis if a.id == stage.api), None)
    return api is None or api.protocol is model.Protocol.HTTP


class PlanHolder:
    """The current plan; ``swap`` replaces it in one assignment."""

    def __init__(self) -> None:
        self._current: Plan | None = None

    @property
    def current(self) -> Plan | None:
        return self._current

    def swap(self, config: model.GatewayConfig) -> Plan:
        plan = build(config)
        self._current = plan
        return plan
