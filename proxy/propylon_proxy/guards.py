"""Fail-closed guards for route security settings this version of the proxy does not enforce yet.

A route that names an Authorizer or requires an API key must never be served as if it were
open. Until authorizers and usage plans are built, such routes refuse every request with the
response DESIGN.md gives for "cannot be verified": no key can be valid without usage plans
(403 INVALID_API_KEY), and an authorizer the gateway cannot run is a configuration error
(500 AUTHORIZER_CONFIGURATION_ERROR). Each guard is replaced by the real step when it lands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from propylon_config import model

if TYPE_CHECKING:  # plans builds its chains from these guards; only the types flow back
    from propylon_proxy import plans


async def _refuse_unverifiable_authorizer(_: plans.StepInput) -> str:
    return "AUTHORIZER_CONFIGURATION_ERROR"


async def _refuse_unverifiable_api_key(_: plans.StepInput) -> str:
    return "INVALID_API_KEY"


def steps_for(route: model.Route) -> tuple[plans.Step, ...]:
    """The guards a route needs, in the order the real checks will run (authorizer first)."""
    steps: list[plans.Step] = []
    if route.authorizer is not None:
        steps.append(_refuse_unverifiable_authorizer)
    if route.api_key_required:
        steps.append(_refuse_unverifiable_api_key)
    return tuple(steps)
