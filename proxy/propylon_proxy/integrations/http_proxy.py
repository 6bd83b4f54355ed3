"""HTTP_PROXY integrations (DESIGN.md §2.1): the request streamed to a backend, its answer back.

Where the request goes comes from ``proxying`` (URL or Service endpoints), its headers from
``forwarding`` and ``requestParameters`` from ``mappings``; the backend's response becomes a
streamed ``Reply`` that ``after`` hooks (response parameters, ...) see before the dispatcher
relays it. A connect failure of an idempotent request is retried once on another endpoint.
"""

from __future__ import annotations

import time

from propylon_proxy import (
    context,
    forwarding,
    gateway_responses,
    incoming,
    mappings,
    proxying,
    replies,
    runtime,
    steps,
    tracing,
    upstream,
)


class HttpProxyIntegration:
    def __init__(self, setup: steps.RouteSetup) -> None:
        self._integration = setup.route.integration
        self._runtime: runtime.Runtime = setup.runtime
        self._greedy = setup.greedy
        self._max_body_bytes = setup.config.settings.max_body_bytes
        self._timeout = self._integration.timeout_ms / 1000
        # Headers the cache keys by: their underscore twins never reach the backend (DESIGN §8).
        self._keyed = forwarding.cache_key_headers(setup.route.cache_key_parameters)

    async def forward(
        self, ctx: context.RequestContext, rendered: tuple[bytes, str] | None = None
    ) -> replies.Reply | replies.Refusal:
        """Send the request upstream; ``rendered`` (body, content type) replaces the client's
        body with a mapping template's output (the HTTP integration, ``integrations.http``)."""
        run = self._runtime
        request = ctx.request
        match, target, plan = ctx.match, ctx.target, ctx.plan
        assert match is not None and target is not None and plan is not None
        integration = self._integration
        method = integration.method or request.method
        body = None  # a body still arriving: streamed
        payload: bytes | proxying.RequestBody | None = rendered[0] if rendered is not None else None
        if rendered is None and request.body_exists:
            if request.version >= (1, 1) and (incoming.header(request, "Expect") or "").lower() == "100-continue":
                # Every check that could refuse the request has passed: invite the body now.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            reader = proxying.RequestBody(
                request.content,
                limit=self._max_body_bytes,
                stall_timeout=run.settings.listener.body_stall_timeout,
            )
            try:
                payload = reader.whole()
            except proxying.BodyTooLarge:
                return replies.refuse(gateway_responses.REQUEST_TOO_LARGE)
            if payload is None:
                payload = body = reader
        attempts = 2 if method in proxying.IDEMPOTENT else 1
        exclude: tuple[str, int] | None = None
        response: upstream.UpstreamResponse | None = None
        began = time.monotonic()
        for attempt in range(attempts):
            try:
                where = proxying.destination(integration, match, target.query, plan.endpoints, run.balancer, exclude)
            except proxying.NoEndpoint:
                return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
            headers = forwarding.upstream_request_headers(
                ctx.headers,
                peer=ctx.peer,
                trusted=run.settings.trusted_proxies,
                scheme="http",
                upstream_host=where.host_header,
                request_id=ctx.request_id,
                trace=tracing.traceparent(ctx),
                keyed=self._keyed,
            )
            target_text = where.target
            if integration.request_parameters:
                mapped = mappings.apply_request(
                    integration.request_parameters,
                    mappings.Context.from_request(ctx, greedy=self._greedy),
                    headers=headers,
                    path=where.path,
                    query=where.query,
                )
                headers = mapped.headers
                target_text = f"{mapped.path}?{mapped.query}" if mapped.query else mapped.path
            if rendered is not None:
                headers = forwarding.reframed(headers, length=len(rendered[0]), content_type=rendered[1])
            outgoing = upstream.UpstreamRequest(
                method=method,
                scheme=where.scheme,
                host=where.host,
                port=where.port,
                target=target_text,
                headers=headers,
                body=payload,
                timeout=self._timeout,
            )
            began = time.monotonic()
            try:
                response = await run.upstream.send(outgoing)
                break
            except upstream.UpstreamConnectError as refused:
                # A stale kept-alive connection says nothing about the endpoint: retry anywhere.
                if where.address is not None and not isinstance(refused, upstream.UpstreamStaleConnection):
                    run.balancer.mark_failed(where.address)
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
            ctx.integration_latency = time.monotonic() - began
            if body is not None and body.failure is not None:
                failure = body.failure
            return replies.refuse(failure)
        assert response is not None
        ctx.integration_latency = time.monotonic() - began
        ctx.integration_status = response.status
        return replies.Reply(
            status=response.status,
            reason=response.reason or None,
            headers=forwarding.client_response_headers(response.headers),
            stream=response,
        )

    # The Integration protocol's entry is ``forward`` itself: a wrapper coroutine per request
    # (created, then resumed once per wait inside) bought nothing.
    invoke = forward
