"""``responseParameters`` as a step that acts on the way out (DESIGN.md §1, §2.1, §2.5).

It runs after the integration (and after a cache hit or an integration response has set the
final status), keyed by that final status code, and evaluates ``$response.header.*`` against
the headers the client would otherwise get. Responses the gateway made itself from the
section-3 table are left alone: their headers are the gateway's.
"""

from __future__ import annotations

from propylon_config import model
from propylon_proxy import context, mappings, replies, steps


class ResponseParameters:
    name = "response parameters"

    def __init__(self, setup: steps.RouteSetup) -> None:
        self._blocks = setup.route.integration.response_parameters
        self._greedy = setup.greedy

    async def before(self, ctx: context.RequestContext) -> None:
        return None

    @property
    def after(self) -> steps.AfterHook:
        return self._apply

    async def _apply(self, ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply:
        if reply.error_type is not None:
            return reply
        view = mappings.Context.from_request(ctx, greedy=self._greedy, response_headers=reply.headers)
        reply.headers = mappings.apply_response(self._blocks, reply.status, view, reply.headers)
        return reply


def step_for(setup: steps.RouteSetup) -> steps.Step | None:
    integration = setup.route.integration
    if not integration.response_parameters:
        return None
    if integration.type not in (model.IntegrationType.HTTP_PROXY, model.IntegrationType.HTTP):
        return None
    return ResponseParameters(setup)
