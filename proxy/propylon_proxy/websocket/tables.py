"""WebSocket stages by base path, per listener, built once per plan.

HTTP route tries never hold WebSocket stages; a WebSocket Api is served on its Stage's base
path as a whole (route selection happens per message, not per URL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from propylon_config import model
from propylon_proxy import metrics, runtime, steps
from propylon_proxy.websocket import checks


@dataclasses.dataclass(frozen=True, slots=True)
class WsStage:
    stage: model.Stage
    api: model.Api
    routes: dict[str, model.Route]  # route key -> route
    connect_checks: steps.Chain | None  # $connect's steps before its integration
    # $connect's metric labels, built once as an HTTP route's are (``plans.RoutePlan.labels``):
    # its steps count throttles under them and the upgrade's request is recorded under them.
    connect_labels: metrics.Labels = ()
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)  # for MOCK bodies (§2.4)

    @property
    def limits(self) -> model.WebSocketLimits:
        return self.api.websocket or model.WebSocketLimits()


@dataclasses.dataclass(frozen=True, slots=True)
class Tables:
    public: dict[str, WsStage]  # base path -> stage
    internal: dict[str, WsStage]
    # ServiceTarget.key -> ready addresses, as the plan resolved them from the EndpointSlices:
    # an integration with ``service`` is sent to these (the latest plan's, for every connection).
    endpoints: Mapping[str, tuple[model.EndpointAddress, ...]] = dataclasses.field(default_factory=dict)

    def match(self, path: str, *, internal: bool) -> WsStage | None:
        table = self.internal if internal else self.public
        return table.get(path.rstrip("/") or "/")


def build(config: model.GatewayConfig, run: runtime.Runtime) -> Tables:
    apis = {a.id: a for a in config.apis}
    public: dict[str, WsStage] = {}
    internal: dict[str, WsStage] = {}
    for stage in config.stages:
        api = apis.get(stage.api)
        if api is None or api.protocol is not model.Protocol.WEBSOCKET:
            continue
        routes = {r.route_key: r for r in stage.routes}
        connect = routes.get("$connect")
        chain = None
        if connect is not None:
            setup = steps.RouteSetup(route=connect, stage=stage, api=api, config=config, runtime=run)
            chain = checks.connect_chain(setup)
        ws = WsStage(
            stage=stage,
            api=api,
            routes=routes,
            connect_checks=chain,
            connect_labels=metrics.GatewayMetrics.labels(stage.api, stage.id, "$connect"),
            variables=dict(stage.variables),
        )
        key = stage.base_path.rstrip("/") or "/"
        internal.setdefault(key, ws)
        if stage.endpoint is model.Endpoint.PUBLIC:
            public.setdefault(key, ws)
    return Tables(public=public, internal=internal, endpoints={e.key: e.addresses for e in config.endpoints})
