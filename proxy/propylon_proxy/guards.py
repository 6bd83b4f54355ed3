"""Fail-closed steps: routes the compiler marked broken, and security settings not enforced yet.

A route whose Authorizer, model, Service or stage variable is missing or broken comes with a
``refusal`` from the compiler: it stays in the route table (so its requests never fall through
to a less specific route) and ``refusing_route`` answers every request with that type.

A route that names an Authorizer must never be served as if it were open. Where the gateway
cannot enforce it (a JWT one whose HS* secret does not open, a REQUEST or TOKEN one without a
function) the route refuses every request with the response DESIGN.md gives for "cannot be
verified": 500 AUTHORIZER_CONFIGURATION_ERROR; ``authorizers.steps`` falls back on
that guard. API keys have their real step, ``api_keys``.

A route that fails closed runs no other step, so on an Api with ``cors`` its refusal is
answered through ``cors.answer_refusal``: a preflight still gets the Api's CORS answer, and the
500 carries the CORS headers and ``Vary: Origin`` like every other gateway error (DESIGN.md §8).
"""

from __future__ import annotations

from propylon_proxy import context, cors, gateway_responses, replies, steps

_UNVERIFIABLE_AUTHORIZER = replies.refuse(gateway_responses.AUTHORIZER_CONFIGURATION_ERROR)


def _refusing(name: str, refusal: replies.Refusal) -> steps.Step:
    async def check(_: context.RequestContext) -> replies.Refusal:
        return refusal

    return steps.BeforeOnly(name=name, check=check)


def broken_model() -> steps.Step:
    """A body model the validator cannot build (a snapshot from a compiler that did not check it
    with jsonschema-rs): the route answers 500 API_CONFIGURATION_ERROR, the plan still builds."""
    return _refusing("fails closed (model does not build)", replies.refuse(gateway_responses.API_CONFIGURATION_ERROR))


def refusing_route(setup: steps.RouteSetup) -> steps.Step | None:
    if setup.route.refusal is None:
        return None
    name = "fails closed (broken reference)"
    refusal = replies.refuse(setup.route.refusal)
    cors_step = cors.step_for(setup)
    if not isinstance(cors_step, cors.CorsStep):
        return _refusing(name, refusal)

    async def check(ctx: context.RequestContext) -> replies.Reply:
        return await cors.answer_refusal(cors_step, ctx, refusal)

    return steps.BeforeOnly(name=name, check=check)


def authorizer_guard(setup: steps.RouteSetup) -> steps.Step | None:
    if setup.route.authorizer is None:
        return None
    return _refusing("authorizer (not built: fails closed)", _UNVERIFIABLE_AUTHORIZER)
