"""Fail-closed steps: routes the compiler marked broken, and security settings not enforced yet.

A route whose Authorizer, model, Service or stage variable is missing or broken comes with a
``refusal`` from the compiler: it stays in the route table (so its requests never fall through
to a less specific route) and ``refusing_route`` answers every request with that type.

A route that names an Authorizer must never be served as if it were open. Until authorizers
are built, such routes refuse every request with the response DESIGN.md gives for "cannot be
verified": an authorizer the gateway cannot run is a configuration error (500
AUTHORIZER_CONFIGURATION_ERROR). The guard is replaced by the real step when it lands: the
step factory in ``chains.STEP_FACTORIES`` changes, nothing else. (API keys have their real
step, ``api_keys``.)
"""

from __future__ import annotations

from propylon_proxy import context, gateway_responses, replies, steps

_UNVERIFIABLE_AUTHORIZER = replies.refuse(gateway_responses.AUTHORIZER_CONFIGURATION_ERROR)


def _refusing(name: str, refusal: replies.Refusal) -> steps.Step:
    async def check(_: context.RequestContext) -> replies.Refusal:
        return refusal

    return steps.BeforeOnly(name=name, check=check)


def refusing_route(setup: steps.RouteSetup) -> steps.Step | None:
    if setup.route.refusal is None:
        return None
    return _refusing("fails closed (broken reference)", replies.refuse(setup.route.refusal))


def authorizer_guard(setup: steps.RouteSetup) -> steps.Step | None:
    if setup.route.authorizer is None:
        return None
    return _refusing("authorizer (not built: fails closed)", _UNVERIFIABLE_AUTHORIZER)
