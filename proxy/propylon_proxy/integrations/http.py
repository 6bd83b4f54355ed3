"""HTTP integrations (DESIGN.md §2.1, §2.5, §8 "Mappings"): HTTP_PROXY plus request templates.

Everything about reaching the backend (destination, forwarded headers, ``method``,
``requestParameters``, the upstream client, retries) is ``http_proxy``'s; this module only
decides the body. The template is chosen by the request's media type (none sent counts as
``application/json``); without one, ``passthroughBehavior`` either forwards the body as sent
or answers 415. A template is rendered from the whole body, read once within the size limit;
a compressed body cannot be read, so it answers 415. A render error answers 500
API_CONFIGURATION_ERROR and nothing is sent upstream. Templates are compiled once per plan.
With ``responses``, the backend's status selects the integration response (three digits
against each ``selectionPattern``); its body is read whole only when a response template
applies, otherwise it streams through with the new status and static headers.
"""

from __future__ import annotations

from propylon_proxy import (
    context,
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
from propylon_proxy.integrations import answers, http_proxy


class HttpIntegration:
    def __init__(self, setup: steps.RouteSetup) -> None:
        integration = setup.route.integration
        self._proxy = http_proxy.HttpProxyIntegration(setup)
        self._templates = request_templates.RequestTemplates(integration)
        self._responses = integration_responses.Responses(integration.responses, setup.route.path)
        self._resource = setup.route.path
        self._max_body_bytes = setup.config.settings.max_body_bytes
        self._stall = setup.runtime.settings.listener.body_stall_timeout

    async def invoke(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal:
        answer = await self._request(ctx)
        if isinstance(answer, replies.Refusal) or not self._responses:
            return answer
        return await self._answered(ctx, answer)

    async def _request(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal:
        """The backend's answer to the request, its body rewritten by a template (§2.5, §8)."""
        request = ctx.request
        chosen = self._templates.choose(request.headers.get("Content-Type"))
        if isinstance(chosen, replies.Refusal):
            return chosen
        kind, template = chosen
        if template is None:
            return await self._proxy.forward(ctx)
        body = await whole_body.read(request, self._max_body_bytes, self._stall)
        if isinstance(body, replies.Refusal):
            return body
        try:
            text = vtl.render(template, template_variables.namespace(ctx, body, self._resource))
        except vtl.RenderError:
            return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
        return await self._proxy.forward(ctx, rendered=(utf8.encode(text), kind))

    async def _answered(self, ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply | replies.Refusal:
        """The backend's reply through the integration responses (status selects, §2.5)."""
        chosen = self._responses.select(f"{reply.status:03d}")
        if chosen is None:
            return reply  # no match and no default: the backend's status and body as they are
        template = chosen.template_for(ctx.request.headers.get("Accept"))
        if template is None:
            reply.status, reply.reason = chosen.status, None
            reply.headers = integration_responses.with_static(reply.headers, chosen)
            return reply  # the body streams through unchanged
        body = await answers.read(reply, self._max_body_bytes)
        if isinstance(body, replies.Refusal):
            return body
        return self._responses.respond(ctx, chosen, headers=reply.headers, body=body, template=template)
