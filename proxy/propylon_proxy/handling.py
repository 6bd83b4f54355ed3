"""The catch-all request handler: hygiene, routing, the route's chain, then send and record.

One handler per listener (public or internal) serves every request; aiohttp's router is never
used. Each request reads the current plan once and keeps it, so a config swap never changes a
request half-way. What runs for a route is its chain (``steps``, built by ``chains``); this
module only dispatches to it and stays that short.
"""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from propylon_proxy import (
    canary,
    context,
    cors,
    forwarding,
    gateway_responses,
    hygiene,
    ids,
    incoming,
    metrics,
    plans,
    recording,
    replies,
    responding,
    runtime,
    steps,
)
from propylon_proxy.websocket import entry as ws_entry


def _peer(request: incoming.Request) -> str:
    known: str | None = getattr(request, "peer", None)  # fast_server's, read once per connection
    if known is not None:
        return known
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple | list) and peername:
        return str(peername[0])
    return ""


class Pipeline:
    """Serves one listener: ``public`` (PUBLIC stages) or ``internal`` (every stage)."""

    def __init__(self, run: runtime.Runtime, holder: plans.PlanHolder, listener: str) -> None:
        self._runtime = run
        self._holder = holder
        self._internal = listener == "internal"
        self._stall_seconds = run.settings.listener.response_stall_timeout
        self._trusted = run.settings.trusted_proxies
        self._listener = run.settings.listener

    async def __call__(self, request: incoming.Request) -> web.StreamResponse:
        peer = _peer(request)
        # No trusted proxy: the peer is the client, and the headers need not be read for it.
        trusted_peer = bool(self._trusted) and forwarding.is_trusted(peer, self._trusted)
        source_ip = forwarding.source_ip(peer, request.headers.items(), self._trusted) if trusted_peer else peer
        ctx = context.RequestContext(
            request, self._holder.current, ids.request_id(), peer, source_ip, time.monotonic(), time.time()
        )
        if trusted_peer:
            ctx.peer_trusted = True
        try:
            return await self._serve(ctx)
        finally:
            recording.record(self._runtime, ctx)

    async def _serve(self, ctx: context.RequestContext) -> web.StreamResponse:
        request = ctx.request
        listener = self._listener
        plan = ctx.plan
        raw_headers = tuple(request.raw_headers)
        try:
            hygiene.check_version(request.version)
            hygiene.check_headers(
                raw_headers,
                http11=request.version >= (1, 1),
                max_header_bytes=listener.max_header_bytes,
                max_headers=listener.max_headers,
            )
            ctx.target = hygiene.split_target(request.raw_path, max_bytes=listener.max_request_line_bytes)
            if plan is None:
                return await self._refuse(ctx, gateway_responses.SERVICE_UNAVAILABLE)
            hygiene.check_declared_length(raw_headers, plan.config.settings.max_body_bytes)
        except hygiene.Rejected as rejected:
            if request.version not in hygiene.SUPPORTED_VERSIONS and isinstance(request, web.BaseRequest):
                # aiohttp answers in the request's version and has no public way to change it;
                # tests/proxy/test_framing.py notices if these private names ever move.
                request._version = aiohttp.HttpVersion11
                request._cache.pop("version", None)
            return await self._refuse_unrouted(ctx, rejected.error_type)
        websocket = plan.websocket
        # Only where this listener serves a WebSocket stage (the usual gateway has none, and then
        # the lookup, its coroutine and the decoded path it needs are not paid per request).
        if (
            websocket is not None
            and plan.sessions is not None
            and (websocket.internal if self._internal else websocket.public)
        ):
            served = await ws_entry.serve(ctx, websocket, plan.sessions, internal=self._internal)
            if served is not None:
                return await responding.adopt(ctx, served)
        table = plan.internal if self._internal else plan.public
        method = request.method
        header = incoming.header_lookup(request)  # no header multidict on fast_server (incoming)
        preflight_for = None
        if method == "OPTIONS" and header("Origin") is not None:
            preflight_for = header("Access-Control-Request-Method")
        ctx.stage, match, on_canary = table.find(
            method, header("Host") or "", ctx.target, preflight_for, header(canary.KEY_HEADER)
        )
        ctx.match = match
        if match is None:
            stage = ctx.stage
            cors_step = None
            if stage is not None and on_canary and stage.canary is not None:
                # A canary request no canary route matches is still the canary Api's.
                ctx.canary = True
                ctx.labels = metrics.GatewayMetrics.labels(stage.canary.api, stage.id, "")
                cors_step = plan.canary_cors.get(stage.id)
            elif stage is not None:
                cors_step = plan.cors.get(stage.id)
            if cors_step is not None:
                return await responding.send(ctx, await cors.without_route(cors_step, ctx))
            return await self._refuse(ctx, gateway_responses.RESOURCE_NOT_FOUND)
        if match.canary:
            ctx.canary = True
            route_plan = plan.canary_routes[match.route.id]
        else:
            route_plan = plan.routes[match.route.id]
        ctx.labels = route_plan.labels
        ctx.series = route_plan.series
        return await responding.send(ctx, await route_plan.chain.run(ctx), stall_seconds=self._stall_seconds)

    async def _refuse_unrouted(self, ctx: context.RequestContext, error_type: str) -> web.StreamResponse:
        """A request hygiene refuses before routing (a declared body over the limit, a framing or
        header error), answered as the Api whose Stage its path falls under answers its errors:
        that Api's gatewayResponses override, its CORS headers for an allowed origin (never a
        preflight answer: the request is refused whatever it asks), its route's metrics and its
        Stage's access log, as for a chunked body found over the limit later, in the chain.
        Without a plan, with a path that cannot be split (400, 414), or under no Stage: the
        built-in response, unlabelled. Only refused requests pay for the lookup."""
        plan = ctx.plan
        target = ctx.target
        if plan is not None and target is None:
            try:
                target = hygiene.split_target(ctx.request.raw_path, max_bytes=self._listener.max_request_line_bytes)
            except hygiene.Rejected:
                target = None
            ctx.target = target
        if plan is None or target is None:
            return await self._refuse(ctx, error_type)
        header = incoming.header_lookup(ctx.request)
        table = plan.internal if self._internal else plan.public
        ctx.stage, match, ctx.canary = table.find(
            ctx.request.method, header("Host") or "", target, None, header(canary.KEY_HEADER)
        )
        stage = ctx.stage
        if stage is None:
            return await self._refuse(ctx, error_type)
        ctx.match = match
        if match is not None:
            route_plan = (plan.canary_routes if match.canary else plan.routes)[match.route.id]
            ctx.labels, ctx.series = route_plan.labels, route_plan.series
        elif ctx.canary and stage.canary is not None:
            ctx.labels = metrics.GatewayMetrics.labels(stage.canary.api, stage.id, "")
        reply = steps.render_refusal(ctx, replies.refuse(error_type))
        cors_step = (plan.canary_cors if ctx.canary else plan.cors).get(stage.id)
        if cors_step is not None:
            reply = await cors_step.after(ctx, reply)
        return await responding.send(ctx, reply)

    async def _refuse(self, ctx: context.RequestContext, error_type: str) -> web.StreamResponse:
        """Requests refused before any route's chain runs (hygiene, no plan, no route)."""
        return await responding.send(ctx, steps.render_refusal(ctx, replies.refuse(error_type)))
