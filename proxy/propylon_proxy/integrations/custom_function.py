"""Custom FUNCTION integrations (``proxy: false``, DESIGN.md §2.5): AWS's "Lambda custom integration".

The event is what the request template renders for the request's media type, or, passed
through, the client's body; either way it must be JSON (a rendered output that is not: 500
API_CONFIGURATION_ERROR; a passed-through body that is not: 400 BAD_REQUEST_BODY; an empty
body is ``{}``). Nothing is invoked when the request template fails. The function is invoked
with the FUNCTION integration's shared client (``function.shared_client``), and its return
value, or for a raised error the RIE's ``{"errorMessage", "errorType", ...}`` document, is the
integration response: an error's ``errorMessage`` selects a response by ``selectionPattern``,
a success only the default. Without a selected response a success is 200 with the result as
JSON and an error 502 INTEGRATION_FAILURE. A timeout is 504, any other failure 502.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from propylon_proxy import (
    context,
    fast_json,
    gateway_responses,
    integration_responses,
    replies,
    request_templates,
    steps,
    template_variables,
    utf8,
    vtl,
    whole_body,
)
from propylon_proxy.functions import client
from propylon_proxy.integrations import function

log = logging.getLogger("propylon.proxy")

_JSON = [("Content-Type", "application/json")]


class CustomFunctionIntegration:
    def __init__(self, setup: steps.RouteSetup) -> None:
        integration = setup.route.integration
        self._client = function.shared_client(setup.runtime)
        self._templates = request_templates.RequestTemplates(integration)
        self._responses = integration_responses.Responses(integration.responses, setup.route.path)
        self._url = integration.url
        self._service = integration.service
        self._timeout = integration.timeout_ms / 1000
        self._resource = setup.route.path
        self._route_id = setup.route.id
        self._max_body_bytes = setup.config.settings.max_body_bytes
        self._stall = setup.runtime.settings.listener.body_stall_timeout

    async def _event(self, ctx: context.RequestContext) -> bytes | replies.Refusal:
        """The event's JSON bytes: the rendered template, or the body passed through."""
        chosen = self._templates.choose(ctx.request.headers.get("Content-Type"))
        if isinstance(chosen, replies.Refusal):
            return chosen
        _, template = chosen
        body = await whole_body.read(ctx.request, self._max_body_bytes, self._stall)
        if isinstance(body, replies.Refusal):
            return body
        if template is None:
            if not body.strip():
                return b"{}"
            return body if _is_json(body) else replies.refuse(gateway_responses.BAD_REQUEST_BODY)
        try:
            text = vtl.render(template, template_variables.namespace(ctx, body, self._resource))
        except vtl.RenderError:
            return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
        event = utf8.encode(text)
        return event if _is_json(event) else replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)

    async def invoke(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal:
        event = await self._event(ctx)
        if isinstance(event, replies.Refusal):
            return event
        target = function.target_for(self._url, self._service, ctx)
        began = time.monotonic()
        error: str | None = None
        try:
            answer: Any = await self._client.invoke(target, event, self._timeout, request_id=ctx.request_id)
        except client.InvokeTimeout:
            ctx.integration_latency = time.monotonic() - began
            return replies.refuse(gateway_responses.INTEGRATION_TIMEOUT)
        except client.FunctionError as exc:
            error, answer = exc.error_message, exc.payload
        except client.InvokeError as exc:
            ctx.integration_latency = time.monotonic() - began
            log.warning("function of %s failed: %s", self._route_id, exc)
            return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
        ctx.integration_latency = time.monotonic() - began
        ctx.integration_status = 200  # the invocation answered (a raised error is an answer too)
        chosen = self._responses.select(error)
        if chosen is None:
            if error is not None:
                log.warning("function of %s raised (no integration response matched): %s", self._route_id, error)
                return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
            return replies.Reply(status=200, headers=list(_JSON), body=_dumps(answer))
        template = chosen.template_for(ctx.request.headers.get("Accept"))
        return self._responses.respond(ctx, chosen, headers=list(_JSON), body=_dumps(answer), template=template)


def _is_json(data: bytes) -> bool:
    """RFC 8259 JSON: json's parser without the NaN and Infinity it would take."""
    try:
        fast_json.strict_loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def _dumps(value: Any) -> bytes:
    return utf8.json_bytes(value)
