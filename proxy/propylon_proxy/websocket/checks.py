"""$connect's checks: the route's own chain steps (authorizer, API key, limits), run as HTTP runs them.

The chain is the one ``chains.build`` makes for any route, with the integration swapped for a
gate that only says "every step let it through": the $connect integration itself runs later
in the session, with a WebSocket event. So a new step (REQUEST authorizers, ...) applies to
$connect the moment it joins STEP_FACTORIES.
"""

from __future__ import annotations

from propylon_proxy import chains, context, replies, steps


class _Passed:
    async def invoke(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal:
        return replies.Reply(status=200, headers=[])


PASSED = _Passed()


def connect_chain(setup: steps.RouteSetup) -> steps.Chain:
    built = chains.build(setup)
    return steps.Chain(steps=built.steps, integration=PASSED)
