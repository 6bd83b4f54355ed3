"""The chain a routed request runs through: steps around one integration.

THE ORDER (DESIGN.md §4, issue 7; ``chains.STEP_FACTORIES`` builds it, and this list is the
one place it is written down):

    hygiene and route match          (the dispatcher, before any step)
    1. fail-closed refusal           a route whose parts are missing or broken refuses everything
    2. CORS preflight                answers OPTIONS preflights itself
    3. authorizer                    JWT or function; learns principal, claims, context
    4. API key                       learns key id and usage plan
    5. throttles                     plan per route, plan, stage per route, stage, gateway
    6. quota                         only admitted requests count (5 and 6 are one step,
                                     ``limits``: one state-store decision for both)
    7. request validation
       response parameters           acts only on the way out
    8. cache lookup                  a hit answers from here
       integration                   HTTP_PROXY, HTTP, MOCK, FUNCTION: the terminal step
    (after, in reverse order) cache store, response parameters, CORS response headers

Each step is prepared once per plan (never per request) and has a ``before`` that returns
``None`` to continue, a ``Reply`` to answer by itself (a cache hit, a preflight), or a
``Refusal`` (a gateway-response type plus headers such as ``Retry-After``). A step may also
have an ``after`` that sees the reply (the integration's, a later step's answer, or a rendered
refusal) and returns the reply to send. ``after`` hooks run in reverse order, and only for the
steps whose ``before`` let the request go on: a step never post-processes its own answer, and
an early step (CORS) decorates the refusals of later ones (an authorizer's 401).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol

from propylon_config import model
from propylon_proxy import context, gateway_responses, replies, runtime

Outcome = replies.Reply | replies.Refusal | None
AfterHook = Callable[[context.RequestContext, replies.Reply], Awaitable[replies.Reply]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RouteSetup:
    """What a step factory or an integration gets when a plan is built, once per route.

    ``runtime`` is for what must outlive the plan (claim resources by stable id through
    ``runtime.resources``); everything else is the snapshot's data.
    """

    route: model.Route
    stage: model.Stage
    api: model.Api | None
    config: model.GatewayConfig
    runtime: runtime.Runtime

    @property
    def greedy(self) -> frozenset[str]:
        """The route's greedy parameter names (their values keep their raw form)."""
        return frozenset(s.value for s in self.route.segments if s.kind is model.SegmentKind.GREEDY)


class Step(Protocol):
    """One link of a route's chain. ``after`` is optional: ``None`` means there is none."""

    @property
    def name(self) -> str: ...

    async def before(self, ctx: context.RequestContext) -> Outcome: ...

    @property
    def after(self) -> AfterHook | None: ...


class Integration(Protocol):
    """The terminal step: produces the reply (or a refusal such as INTEGRATION_FAILURE)."""

    async def invoke(self, ctx: context.RequestContext) -> replies.Reply | replies.Refusal: ...


@dataclasses.dataclass(frozen=True, slots=True)
class BeforeOnly:
    """A step made of one ``before`` function (the usual shape of a check)."""

    name: str
    check: Callable[[context.RequestContext], Awaitable[Outcome]]
    after: None = None

    async def before(self, ctx: context.RequestContext) -> Outcome:
        return await self.check(ctx)


@dataclasses.dataclass(frozen=True, slots=True)
class AfterOnly:
    """A step that only acts on the way out (response parameters)."""

    name: str
    after: AfterHook

    async def before(self, ctx: context.RequestContext) -> Outcome:
        return None


def render_refusal(ctx: context.RequestContext, refusal: replies.Refusal) -> replies.Reply:
    """A refusal as the reply the client gets: the stage's override of its type, its headers."""
    rendered = gateway_responses.render(
        refusal.error_type, ctx.request_id, ctx.gateway_responses, message=refusal.message, defaults=refusal.headers
    )
    return replies.Reply(
        status=rendered.status,
        headers=[pair for pair in rendered.headers if pair[0].lower() != "x-request-id"],
        body=rendered.body,
        error_type=refusal.error_type,
        close=refusal.error_type in gateway_responses.CLOSING,
    )


Before = Callable[[context.RequestContext], Awaitable[Outcome]]


def _before_of(step: Step) -> Before | None:
    """What runs of a step on the way in: None for one that only acts on the way out, a
    ``BeforeOnly``'s own check (one coroutine fewer per request), else its ``before``."""
    if isinstance(step, AfterOnly):
        return None
    if isinstance(step, BeforeOnly):
        return step.check
    return step.before


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    """A route's steps and integration, in the order above, ready to run.

    What the walk needs is taken out of the steps once, when the plan is built: the ``before``
    to call for each step (none for an after-only step) and the ``after`` hooks, so a request
    walks two tuples and allocates nothing for a chain without after hooks. Measured in process
    (issue 15, perf-shell, best of 5): the walk's own cost on the cache-hit route (two steps, one
    with an after hook) 0.59 -> 0.49 us; a ``BeforeOnly`` or ``AfterOnly`` step saves a
    coroutine more.
    """

    steps: tuple[Step, ...]
    integration: Integration
    _befores: tuple[Before | None, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _afters: tuple[AfterHook | None, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _has_after: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        afters = tuple(step.after for step in self.steps)
        object.__setattr__(self, "_befores", tuple(_before_of(step) for step in self.steps))
        object.__setattr__(self, "_afters", afters)
        object.__setattr__(self, "_has_after", any(after is not None for after in afters))

    async def run(self, ctx: context.RequestContext) -> replies.Reply:
        answer: replies.Reply | replies.Refusal | None = None
        ran = 0  # the steps whose before let the request go on: only their after hooks run
        for before in self._befores:
            if before is not None:
                answer = await before(ctx)
                if answer is not None:
                    break
            ran += 1
        if answer is None:
            answer = await self.integration.invoke(ctx)
        reply = answer if isinstance(answer, replies.Reply) else render_refusal(ctx, answer)
        if self._has_after:
            afters = self._afters
            for index in range(ran - 1, -1, -1):
                after = afters[index]
                if after is not None:
                    reply = await after(ctx, reply)
        return reply
