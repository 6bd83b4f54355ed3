"""HTTP integrations (DESIGN.md §2.1, §2.5, §8 "Mappings"): HTTP_PROXY plus request templates.

Everything about reaching the backend (destination, forwarded headers, ``method``,
``requestParameters``, the upstream client, retries) is ``http_proxy``'s; this module only
decides the body. The template is chosen by the request's media type (none sent counts as
``application/json``); without one, ``passthroughBehavior`` either forwards the body as sent
or answers 415. A template is rendered from the whole body, read once within the size limit;
a compressed body cannot be read, so it answers 415. A render error answers 500
API_CONFIGURATION_ERROR and nothing is sent upstream. Templates are compiled once per plan.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import airspeed

from propylon_config import model
from propylon_proxy import context, gateway_responses, replies, steps, vtl, whole_body
from propylon_proxy.integrations import http_proxy

_DEFAULT_TYPE = "application/json"


def media_type(header: str | None) -> str:
    """The media type of a Content-Type, lower-cased without parameters; none -> JSON."""
    kind = (header or "").partition(";")[0].strip().lower()
    return kind or _DEFAULT_TYPE


class HttpIntegration:
    def __init__(self, setup: steps.RouteSetup) -> None:
        integration = setup.route.integration
        self._proxy = http_proxy.HttpProxyIntegration(setup)
        self._templates: dict[str, airspeed.Template] = {
            kind.lower(): vtl.compile(text) for kind, text in integration.request_templates
        }
        self._passthrough = integration.passthrough_behavior
        self._greedy = setup.greedy
        self._resource = setup.route.path
        self._method = setup.route.method
        self._max_body_bytes = setup.config.settings.max_body_bytes
        self._stall = setup.runtime.settings.listener.body_stall_timeout

    def _refuses(self) -> bool:
        """True when a request without a matching template gets 415 (§8)."""
        if self._passthrough is model.PassthroughBehavior.NEVER:
            return True
        return self._passthrough is model.PassthroughBehavior.WHEN_NO_TEMPLATES and bool(self._templates)

    async def invoke(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal:
        request = ctx.request
        kind = media_type(request.headers.get("Content-Type"))
        template = self._templates.get(kind)
        if template is None:
            if self._refuses():
                return replies.refuse(gateway_responses.UNSUPPORTED_MEDIA_TYPE)
            return await self._proxy.forward(ctx)
        body = await whole_body.read(request, self._max_body_bytes, self._stall)
        if isinstance(body, replies.Refusal):
            return body
        try:
            text = vtl.render(template, self._namespace(ctx, body))
        except vtl.RenderError:
            return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
        return await self._proxy.forward(ctx, rendered=(text.encode(), kind))

    def _namespace(self, ctx: context.RequestContext, body: bytes) -> dict[str, Any]:
        match = ctx.match
        path_params = dict(match.params) if match is not None else {}
        query = urllib.parse.parse_qsl(ctx.query, keep_blank_values=True)
        params = vtl.params_of(path_params, query, ctx.headers)
        authorizer: dict[str, Any] = dict(ctx.authorizer_context or {})
        authorizer["principalId"] = ctx.principal_id or ""
        authorizer["claims"] = dict(ctx.claims or {})
        user_agent = ctx.request.headers.get("User-Agent", "")
        return {
            "input": vtl.Input(body, params),
            "util": vtl.UTIL,
            "stageVariables": dict(ctx.stage_variables),
            "context": {
                "requestId": ctx.request_id,
                "stage": ctx.stage.name if ctx.stage is not None else "",
                "httpMethod": ctx.request.method,
                "resourcePath": self._resource,
                "path": ctx.request.path,
                "requestTimeEpoch": int(ctx.started_wall * 1000),
                "identity": {"sourceIp": ctx.source_ip, "userAgent": user_agent},
                "authorizer": authorizer,
            },
        }
