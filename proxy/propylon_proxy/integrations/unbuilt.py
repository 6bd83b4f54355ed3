"""Integrations whose module is not built yet (custom FUNCTION with
``proxy: false``): they fail closed with 502.

A route of such a type must never be served as if it worked; INTEGRATION_FAILURE is what a
client of a broken integration sees, and the access log names the type's absence by the
error type. Each type leaves this module when its own module lands.
"""

from __future__ import annotations

from propylon_config import model
from propylon_proxy import context, gateway_responses, replies


class Unbuilt:
    def __init__(self, kind: model.IntegrationType) -> None:
        self.kind = kind

    async def invoke(self, ctx: context.RequestContext) -> replies.Refusal:
        return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
