"""Fail-closed steps for route security settings this version of the proxy does not enforce yet.

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


def authorizer_guard(setup: steps.RouteSetup) -> steps.Step | None:
    if setup.route.authorizer is None:
        return None
    return _refusing("authorizer (not built: fails closed)", _UNVERIFIABLE_AUTHORIZER)
