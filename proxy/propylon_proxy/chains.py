"""Building each route's chain once per plan, in the order ``steps`` documents.

``STEP_FACTORIES`` is that order as code: each factory looks at one route (and the runtime,
for resources that outlive the plan) and returns its step, or ``None`` when the route does not
need it. A feature lands as a factory in its own module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from propylon_proxy import (
    api_keys,
    authorizers,
    cache,
    cors,
    guards,
    integrations,
    limits,
    response_parameters,
    steps,
    validation,
)

StepFactory = Callable[[steps.RouteSetup], steps.Step | None]

STEP_FACTORIES: tuple[StepFactory, ...] = (
    # 1. fail-closed refusal of broken routes: see build()
    cors.step_for,  # 2. CORS preflight; its after decorates every later reply and refusal
    cache.refusals_step_for,  # only after: x-propylon-cache on refusals made before the lookup
    authorizers.steps.step_for,  # 3. authorizer: JWT, REQUEST and TOKEN
    api_keys.step_for,  # 4. API key: learns the key id and its usage plan
    limits.step_for,  # 5. throttles and 6. quota: one state-store decision
    validation.step_for,  # 7. request validation: required parameters, then the body's model
    response_parameters.step_for,  # only after: so it sees cache hits and misses alike
    cache.step_for,  # 8. cache lookup; its after (the store) runs before response parameters
)


def build(setup: steps.RouteSetup) -> steps.Chain:
    refusing = guards.refusing_route(setup)
    if refusing is not None:
        # 1. A route that fails closed runs nothing else and claims nothing (no upstream, no
        # key set): its one step refuses every request, so its integration is never reached.
        return steps.Chain(steps=(refusing,), integration=integrations.unbuilt.Unbuilt(setup.route.integration.type))
    made = (factory(setup) for factory in STEP_FACTORIES)
    chain_steps = tuple(step for step in made if step is not None)
    return steps.Chain(steps=chain_steps, integration=integrations.for_route(setup))
