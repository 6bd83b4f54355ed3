"""FUNCTION integrations (DESIGN.md §2.2): the request as an API Gateway proxy event, invoked.

The whole body is read first (an event carries it whole; the size limit and stall timeout are
the same as for proxied bodies), the event is built from the RequestContext, the function is
invoked through the shared ``FunctionClient`` and its return value mapped back. A function
error, a crash or a malformed answer is 502 INTEGRATION_FAILURE; no answer within
``timeoutMillis`` is 504 INTEGRATION_TIMEOUT. The function never sees a half request: a body
that fails to arrive stops the request before anything is invoked.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from propylon_config import model
from propylon_proxy import context, gateway_responses, proxying, replies, runtime, steps, utf8
from propylon_proxy.functions import client, events, responses

log = logging.getLogger("propylon.proxy")

CLIENT_RESOURCE = "functions/client"


def shared_client(run: runtime.Runtime) -> client.FunctionClient:
    """The gateway's one function client (on its upstream pool and balancer)."""
    return run.resources.claim(CLIENT_RESOURCE, lambda: client.FunctionClient(run.upstream, run.balancer))


def target_for(url: str | None, service: model.ServiceTarget | None, ctx: context.RequestContext) -> client.Target:
    """Where this request's invocation goes: the URL, or the Service's endpoints in its plan."""
    addresses: tuple[model.EndpointAddress, ...] = ()
    plan = ctx.plan
    if service is not None and plan is not None:
        addresses = plan.endpoints.get(service.key, ())
    return client.Target(url=url, service=service, addresses=addresses)


class FunctionIntegration:
    def __init__(self, setup: steps.RouteSetup) -> None:
        integration = setup.route.integration
        self._runtime: runtime.Runtime = setup.runtime
        self._client = shared_client(setup.runtime)
        self._shape = events.EventShape.for_route(setup.route, setup.stage, setup.api)
        self._version = integration.payload_format_version
        self._url = integration.url
        self._service = integration.service
        self._timeout = integration.timeout_ms / 1000
        self._max_body_bytes = setup.config.settings.max_body_bytes
        self._route_id = setup.route.id

    async def _body(self, ctx: context.RequestContext) -> bytes | str | None:
        """The whole body, None without one, or the section-3 type of why it did not arrive."""
        request = ctx.request
        if not request.body_exists:
            return None
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        body = proxying.RequestBody(
            request.content,
            limit=self._max_body_bytes,
            stall_timeout=self._runtime.settings.listener.body_stall_timeout,
        )
        try:
            chunks = [chunk async for chunk in body]
        except (proxying.BodyTooLarge, TimeoutError):
            return body.failure or gateway_responses.REQUEST_TOO_LARGE
        except (OSError, ConnectionError, web.HTTPException):
            return gateway_responses.BAD_REQUEST
        return b"".join(chunks)

    async def invoke(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal:
        body = await self._body(ctx)
        if isinstance(body, str):
            return replies.refuse(body)
        event = utf8.json_bytes(self._shape.build(ctx, body))
        target = target_for(self._url, self._service, ctx)
        began = time.monotonic()
        try:
            answer = await self._client.invoke(target, event, self._timeout, request_id=ctx.request_id)
        except client.InvokeTimeout:
            ctx.integration_latency = time.monotonic() - began
            return replies.refuse(gateway_responses.INTEGRATION_TIMEOUT)
        except client.FunctionError as exc:
            ctx.integration_latency = time.monotonic() - began
            log.warning("function of %s raised %s: %s", self._route_id, exc.error_type, exc.error_message)
            return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
        except client.InvokeError as exc:
            ctx.integration_latency = time.monotonic() - began
            log.warning("function of %s failed: %s", self._route_id, exc)
            return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
        ctx.integration_latency = time.monotonic() - began
        try:
            reply = responses.reply(answer, self._version)
        except responses.Malformed as exc:
            log.warning("function of %s answered a malformed response: %s", self._route_id, exc)
            return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
        ctx.integration_status = reply.status
        return reply
