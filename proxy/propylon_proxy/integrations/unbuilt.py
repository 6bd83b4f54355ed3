"""The integration of a route that fails closed (``chains.build``): never reached, 502 if it were.

Every integration type has its own module now; a route whose parts are missing or broken is
refused by its one fail-closed step before any integration runs, and it gets this one (which
claims nothing: no upstream, no function client) so that even a bug in that step could never
serve the route as if it worked. INTEGRATION_FAILURE is what a client of a broken integration
would see.
"""

from __future__ import annotations

from propylon_config import model
from propylon_proxy import context, gateway_responses, replies


class Unbuilt:
    def __init__(self, kind: model.IntegrationType) -> None:
        self.kind = kind

    async def invoke(self, ctx: context.RequestContext) -> replies.Refusal:
        return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
