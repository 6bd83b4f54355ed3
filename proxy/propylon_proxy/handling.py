"""The catch-all request handler: hygiene, routing, the route's chain, logging and metrics.

One handler per listener (public or internal) serves every request; aiohttp's router is never
used. Each request reads the current plan once and keeps it, so a config swap never changes a
request half-way. Every response, error or proxied, carries the gateway's own ``x-request-id``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from propylon_config import model
from propylon_proxy import (
    access_log,
    endpoints,
    forwarding,
    gateway_responses,
    hygiene,
    ids,
    mappings,
    metrics,
    mocks,
    plans,
    proxying,
    routing,
    settings,
    upstream,
)

log = logging.getLogger("propylon.proxy")


@dataclasses.dataclass(slots=True)
class Runtime:
    """What outlives plan swaps: the plan holder, the upstream client and shared state."""

    holder: plans.PlanHolder
    upstream: upstream.Upstream
    settings: settings.ProxySettings
    metrics: metrics.GatewayMetrics = dataclasses.field(default_factory=metrics.GatewayMetrics)
    balancer: endpoints.Balancer = dataclasses.field(default_factory=endpoints.Balancer)
    log_stream: TextIO | None = None  # None = stdout


@dataclasses.dataclass(slots=True)
class _Exchange:
    """What one request did, for the access log and metrics."""

    request: web.BaseRequest
    plan: plans.Plan | None
    request_id: str
    peer: str
    source_ip: str
    started: float  # monotonic, for durations
    started_wall: float  # time.time(), turned into requestTime only when the access log is on
    stage: model.Stage | None = None
    route: model.Route | None = None
    labels: metrics.Labels | None = None  # the matched route's, from its chain
    status: int = 0
    response_length: int = 0
    integration_latency: float | None = None
    integration_status: int | None = None
    error_type: str | None = None

    @property
    def overrides(self) -> dict[str, model.GatewayResponse] | None:
        if self.plan is None or self.stage is None:
            return None
        return self.plan.gateway_responses.get(self.stage.id)


def _peer(request: web.BaseRequest) -> str:
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple | list) and peername:
        return str(peername[0])
    return ""


def _as_written(value: str) -> str:
    """A header value received as latin-1 text (one char per byte, the upstream interface's
    convention), ready for aiohttp's writer, which encodes UTF-8: UTF-8 bytes pass through
    unchanged, other bytes cannot be written by aiohttp and become U+FFFD."""
    if value.isascii():
        return value
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


class _HeldHead(web.StreamResponse):
    """A response whose head waits for the first body bytes, so both leave in one ``send()``.

    aiohttp's ``web.Response`` does this; ``StreamResponse`` sends the head at ``prepare()``,
    which costs a system call per response. ``_send_headers_immediately`` is aiohttp's own
    switch (a class attribute, not public API): if a later aiohttp drops it, responses simply go
    back to two writes. Where the body may be slow to come, the caller sends the head itself
    (``writer.send_headers()``) so a client never waits for a head the gateway already has.
    """

    _send_headers_immediately = False


def _header_pairs(request: web.BaseRequest) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers]


class Pipeline:
    """Serves one listener: ``public`` (PUBLIC stages) or ``internal`` (every stage)."""

    def __init__(self, runtime: Runtime, listener: str) -> None:
        self._runtime = runtime
        self._internal = listener == "internal"

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        runtime = self._runtime
        peer = _peer(request)
        exchange = _Exchange(
            request=request,
            plan=runtime.holder.current,
            request_id=ids.request_id(),
            peer=peer,
            source_ip=forwarding.source_ip(peer, request.headers.items(), runtime.settings.trusted_proxies),
            started=time.monotonic(),
            started_wall=time.time(),
        )
        try:
            return await self._serve(exchange)
        finally:
            self._record(exchange)

    async def _serve(self, exchange: _Exchange) -> web.StreamResponse:
        request = exchange.request
        listener = self._runtime.settings.listener
        plan = exchange.plan
        try:
            hygiene.check_version(request.version)
            hygiene.check_headers(
                tuple(request.raw_headers),
                http11=request.version >= (1, 1),
                max_header_bytes=listener.max_header_bytes,
                max_headers=listener.max_headers,
            )
            target = hygiene.split_target(request.raw_path, max_bytes=listener.max_request_line_bytes)
            if plan is None:
                return await self._error(exchange, "SERVICE_UNAVAILABLE")
            hygiene.check_declared_length(tuple(request.raw_headers), plan.config.settings.max_body_bytes)
        except hygiene.Rejected as rejected:
            if request.version not in hygiene.SUPPORTED_VERSIONS:
                # aiohttp answers in the request's version and has no public way to change it;
                # tests/proxy/test_framing.py notices if these private names ever move.
                request._version = aiohttp.HttpVersion11
                request._cache.pop("version", None)
            return await self._error(exchange, rejected.error_type)
        table = plan.internal if self._internal else plan.public
        stage, match = table.match(request.method, request.headers.get("Host", ""), target)
        exchange.stage = stage
        if match is None:
            return await self._error(exchange, gateway_responses.RESOURCE_NOT_FOUND)
        exchange.route = match.route
        chain = plan.chains[match.route.id]
        exchange.labels = chain.labels
        if chain.steps:
            step_input = plans.StepInput(
                request=request, match=match, request_id=exchange.request_id, source_ip=exchange.source_ip
            )
            for step in chain.steps:
                refused = await step(step_input)
                if refused is not None:
                    return await self._error(exchange, refused)
        if chain.integration is model.IntegrationType.MOCK:
            return await self._mock(exchange, match)
        if chain.integration is model.IntegrationType.HTTP_PROXY:
            return await self._proxy(exchange, match, target)
        # HTTP (templates) and FUNCTION integrations are later issues.
        return await self._error(exchange, gateway_responses.INTEGRATION_FAILURE)

    async def _send(self, exchange: _Exchange, response: web.StreamResponse, body: bytes = b"") -> web.StreamResponse:
        """Send a response the gateway made itself (error or MOCK) in full."""
        response.headers["x-request-id"] = exchange.request_id
        # Otherwise aiohttp names itself and its version; proxied responses keep the backend's.
        response.headers.setdefault("Server", "propylon")
        exchange.status = response.status
        if response.status in (204, 304):
            body = b""  # these never carry a body; a stray one would desync the connection
        else:
            response.content_length = len(body)
        await response.prepare(exchange.request)  # a _HeldHead: the head goes with the body
        if body and exchange.request.method != "HEAD":
            # HEAD: same headers (Content-Length included), no body.
            await response.write(body)
            exchange.response_length += len(body)
        await response.write_eof()
        return response

    async def _error(self, exchange: _Exchange, error_type: str) -> web.StreamResponse:
        rendered = gateway_responses.render(error_type, exchange.request_id, exchange.overrides)
        exchange.error_type = error_type
        response = _HeldHead(status=rendered.status)
        for name, value in rendered.headers:
            response.headers.add(name, value)
        if error_type in gateway_responses.CLOSING:
            response.force_close()
        return await self._send(exchange, response, rendered.body)

    async def _mock(self, exchange: _Exchange, match: routing.Match) -> web.StreamResponse:
        mock = match.route.integration.mock or model.Mock()
        assert exchange.plan is not None
        body = mocks.render_body(
            mock.body,
            variables=exchange.plan.variables.get(match.stage.id, {}),
            request_id=exchange.request_id,
        ).encode()
        response = _HeldHead(status=mock.status_code)
        for name, value in mock.headers:
            if name.lower() not in forwarding.GATEWAY_FRAMED:
                response.headers.add(name, value)
        return await self._send(exchange, response, body)

    async def _proxy(self, exchange: _Exchange, match: routing.Match, target: hygiene.Target) -> web.StreamResponse:
        runtime = self._runtime
        request = exchange.request
        plan = exchange.plan
        assert plan is not None
        integration = match.route.integration
        method = integration.method or request.method
        body = None
        if request.body_exists:
            if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
                # Every check that could refuse the request has passed: invite the body now.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            body = proxying.RequestBody(
                request.content,
                limit=plan.config.settings.max_body_bytes,
                stall_timeout=runtime.settings.listener.body_stall_timeout,
            )
        attempts = 2 if method in proxying.IDEMPOTENT else 1
        exclude: tuple[str, int] | None = None
        response: upstream.UpstreamResponse | None = None
        began = time.monotonic()
        for attempt in range(attempts):
            try:
                where = proxying.destination(
                    integration, match, target.query, plan.endpoints, runtime.balancer, exclude
                )
            except proxying.NoEndpoint:
                return await self._error(exchange, gateway_responses.INTEGRATION_FAILURE)
            headers = forwarding.upstream_request_headers(
                _header_pairs(request),
                peer=exchange.peer,
                trusted=runtime.settings.trusted_proxies,
                scheme="http",
                upstream_host=where.host_header,
                request_id=exchange.request_id,
            )
            target_text = where.target
            if integration.request_parameters:
                mapped = mappings.apply_request(
                    integration.request_parameters,
                    self._mapping_context(exchange, match),
                    headers=headers,
                    path=where.path,
                    query=where.query,
                )
                headers = mapped.headers
                target_text = f"{mapped.path}?{mapped.query}" if mapped.query else mapped.path
            outgoing = upstream.UpstreamRequest(
                method=method,
                scheme=where.scheme,
                host=where.host,
                port=where.port,
                target=target_text,
                headers=headers,
                body=body,
                timeout=integration.timeout_ms / 1000,
            )
            began = time.monotonic()
            try:
                response = await runtime.upstream.send(outgoing)
                break
            except upstream.UpstreamConnectError:
                if where.address is not None:
                    runtime.balancer.mark_failed(where.address)
                    exclude = (where.address.address, where.address.port)
                if attempt + 1 < attempts and not (body is not None and body.started):
                    continue
                failure = gateway_responses.INTEGRATION_FAILURE
            except upstream.UpstreamTimeout:
                failure = gateway_responses.INTEGRATION_TIMEOUT
            except (upstream.UpstreamError, proxying.BodyTooLarge, TimeoutError, OSError):
                failure = gateway_responses.INTEGRATION_FAILURE
            except Exception:
                if body is None or body.failure is None:
                    raise
                failure = body.failure
            exchange.integration_latency = time.monotonic() - began
            if body is not None and body.failure is not None:
                failure = body.failure
            return await self._error(exchange, failure)
        assert response is not None
        exchange.integration_latency = time.monotonic() - began
        exchange.integration_status = response.status
        return await self._relay(exchange, match, response)

    def _mapping_context(
        self, exchange: _Exchange, match: routing.Match, response_headers: forwarding.Headers | None = None
    ) -> mappings.Context:
        plan = exchange.plan
        assert plan is not None
        return mappings.Context(
            headers=_header_pairs(exchange.request),
            query=exchange.request.raw_path.partition("?")[2],
            path_params=dict(match.params),
            greedy=frozenset(s.value for s in match.route.segments if s.kind is model.SegmentKind.GREEDY),
            request_id=exchange.request_id,
            stage=match.stage.name,
            source_ip=exchange.source_ip,
            stage_variables=plan.variables.get(match.stage.id, {}),
            response_headers=response_headers or (),
        )

    async def _relay(
        self, exchange: _Exchange, match: routing.Match, response: upstream.UpstreamResponse
    ) -> web.StreamResponse:
        """Stream the backend's response to the client, chunk by chunk.

        The head is held back until the first chunk when that chunk is already here (a small
        response usually arrives whole), so head and body go out in one write; when the body
        has still to come, the head is sent at once, as it would be without the hold.
        """
        headers = forwarding.client_response_headers(response.headers)
        blocks = match.route.integration.response_parameters
        if blocks:
            context = self._mapping_context(exchange, match, response.headers)
            headers = mappings.apply_response(blocks, response.status, context, headers)
        # Handed over whole (one C-level copy instead of an add() per header). Neither the
        # backend's headers nor a mapping can carry x-request-id, so appending it is setting it.
        written = [(name, value if value.isascii() else _as_written(value)) for name, value in headers]
        written.append(("x-request-id", exchange.request_id))
        out = _HeldHead(status=response.status, reason=response.reason or None, headers=written)
        exchange.status = response.status
        writer = None
        try:
            writer = await out.prepare(exchange.request)
            if writer is not None and not response.body_ready():
                writer.send_headers()
            async for chunk in response.iter_chunks():
                await out.write(chunk)
                exchange.response_length += len(chunk)
        except upstream.UpstreamError:
            # The head is already sent: the only honest signal left is to cut the connection.
            log.warning("backend hung up mid-response (request %s)", exchange.request_id)
            if writer is not None:
                writer.send_headers()  # if still held: the client gets the head, then the cut
            transport = exchange.request.transport
            if transport is not None:
                transport.close()
            return out
        finally:
            await response.release()
        await out.write_eof()
        return out

    def _record(self, exchange: _Exchange) -> None:
        duration = time.monotonic() - exchange.started
        stage, route = exchange.stage, exchange.route
        labels = exchange.labels
        if labels is None:
            labels = metrics.GatewayMetrics.labels(
                stage.api if stage else "", stage.id if stage else "", route.route_key if route else ""
            )
        status = exchange.status or 500
        self._runtime.metrics.record(labels, status, duration, exchange.integration_latency)
        if stage is None or not stage.access_log:
            return
        request = exchange.request
        latency = exchange.integration_latency
        values: dict[str, Any] = {
            "requestId": exchange.request_id,
            "ip": exchange.source_ip,
            "requestTime": access_log.rfc3339_millis(
                datetime.datetime.fromtimestamp(exchange.started_wall, datetime.UTC)
            ),
            "httpMethod": request.method,
            "routeKey": route.route_key if route else None,
            "path": request.raw_path.partition("?")[0],
            "status": status,
            "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
            "responseLength": exchange.response_length,
            "responseLatencyMs": round(duration * 1000),
            "integrationLatencyMs": round(latency * 1000) if latency is not None else None,
            "integrationStatus": exchange.integration_status,
            "apiId": stage.api,
            "stage": stage.name,
            "userAgent": request.headers.get("User-Agent"),
            "canary": False,
            "errorType": exchange.error_type,
        }
        access_log.write(values, self._runtime.log_stream)
