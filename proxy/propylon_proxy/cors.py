"""CORS: step 2 of THE ORDER (DESIGN.md sections 1 and 8).

``before`` answers a preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) itself with 204, so it never reaches the backend; a
preflight from an origin, for a method or asking for a header the Api does not allow gets
403 ACCESS_DENIED *without* CORS headers (this step never post-processes its own answer).

``after`` decorates every other reply of a CORS-enabled Api: the backend's, and the rendered
refusals of the later steps (authorizer 401, API key 403, throttle 429, 5xx), so an allowed
origin can read them. It adds ``Vary: Origin`` and, for an allowed origin, the allow-origin,
credentials and expose headers. Because ``after`` hooks run in reverse order, the cache
step's after-hook (step 8, the store) runs *inside* this one: what is stored never carries
our headers, and any ``Access-Control-*`` header already on a reply (a cache hit, a backend)
is dropped and recomputed per request, so CORS headers never come from a cache.

``*`` is echoed as ``*`` only without credentials (the compiler refuses the combination);
with credentials the request's origin is echoed only when listed exactly.
"""

from __future__ import annotations

import dataclasses

from propylon_config import model
from propylon_proxy import context, gateway_responses, replies, steps

_OURS = frozenset(
    {
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class CorsPolicy:
    """An Api's ``cors`` prepared once per plan: lower-cased sets for per-request checks."""

    origins: frozenset[str]
    any_origin: bool
    methods: frozenset[str]
    any_method: bool
    headers: frozenset[str]
    any_header: bool
    credentials: bool
    allow_methods: str
    allow_headers: str
    expose_headers: str
    max_age: str | None

    @classmethod
    def of(cls, cors: model.Cors) -> CorsPolicy:
        return cls(
            origins=frozenset(cors.allow_origins),
            any_origin="*" in cors.allow_origins,
            methods=frozenset(m.upper() for m in cors.allow_methods),
            any_method="*" in cors.allow_methods,
            headers=frozenset(h.lower() for h in cors.allow_headers),
            any_header="*" in cors.allow_headers,
            credentials=cors.allow_credentials,
            allow_methods=", ".join(cors.allow_methods),
            allow_headers=", ".join(cors.allow_headers),
            expose_headers=", ".join(cors.expose_headers),
            max_age=None if cors.max_age is None else str(cors.max_age),
        )

    def allowed_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None when not allowed."""
        if origin in self.origins:
            return origin
        if self.any_origin and not self.credentials:
            return "*"
        return None

    def method_allowed(self, method: str) -> bool:
        return self.any_method or method.upper() in self.methods

    def headers_allowed(self, requested: str) -> bool:
        names = (name.strip().lower() for name in requested.split(","))
        return self.any_header or all(not name or name in self.headers for name in names)

    def origin_headers(self, allow: str) -> list[tuple[str, str]]:
        headers = [("Access-Control-Allow-Origin", allow)]
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers


def _with_vary(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            headers[index] = (name, gateway_responses.join_vary(value, "Origin"))
            return headers
    headers.append(("Vary", "Origin"))
    return headers


@dataclasses.dataclass(frozen=True, slots=True)
class CorsStep:
    policy: CorsPolicy
    name: str = "cors"

    async def before(self, ctx: context.RequestContext) -> steps.Outcome:
        request = ctx.request
        origin = request.headers.get("Origin")
        wanted = request.headers.get("Access-Control-Request-Method")
        if request.method != "OPTIONS" or origin is None or wanted is None:
            return None
        policy = self.policy
        allow = policy.allowed_origin(origin)
        requested = request.headers.get("Access-Control-Request-Headers", "")
        if allow is None or not policy.method_allowed(wanted) or not policy.headers_allowed(requested):
            return replies.refuse(gateway_responses.ACCESS_DENIED, ("Vary", "Origin"))
        headers = policy.origin_headers(allow)
        if policy.allow_methods:
            headers.append(("Access-Control-Allow-Methods", policy.allow_methods))
        if policy.allow_headers:
            headers.append(("Access-Control-Allow-Headers", policy.allow_headers))
        if policy.max_age is not None:
            headers.append(("Access-Control-Max-Age", policy.max_age))
        headers.append(("Vary", "Origin"))
        return replies.Reply(status=204, headers=headers)

    @property
    def after(self) -> steps.AfterHook:
        return self._decorate

    async def _decorate(self, ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply:
        headers = [pair for pair in reply.headers if pair[0].lower() not in _OURS]
        origin = ctx.request.headers.get("Origin")
        allow = None if origin is None else self.policy.allowed_origin(origin)
        if allow is not None:
            headers.extend(self.policy.origin_headers(allow))
            if self.policy.expose_headers:
                headers.append(("Access-Control-Expose-Headers", self.policy.expose_headers))
        reply.headers = _with_vary(headers)
        return reply


def step_for(setup: steps.RouteSetup) -> steps.Step | None:
    api = setup.api
    if api is None or api.cors is None or api.protocol is not model.Protocol.HTTP:
        return None
    return CorsStep(CorsPolicy.of(api.cors))


async def answer_refusal(step: CorsStep, ctx: context.RequestContext, refusal: replies.Refusal) -> replies.Reply:
    """``refusal`` as a CORS-enabled Api answers it where no CORS step ran before it: a
    preflight is answered as for any route (204, or 403 ACCESS_DENIED for an origin, method or
    header not allowed), as Amazon API Gateway answers every preflight of such an Api; anything
    else is the refusal with the CORS headers and ``Vary: Origin``, so a browser can read it
    (DESIGN.md §8, CORS). Used for a path no route has (the 404), a route that fails closed (its
    500 comes before the CORS step of THE ORDER), and a declared body over the limit (413)."""
    outcome = await step.before(ctx)
    if isinstance(outcome, replies.Reply):
        return outcome
    if outcome is not None:
        return steps.render_refusal(ctx, outcome)
    return await step.after(ctx, steps.render_refusal(ctx, refusal))


_NOT_FOUND = replies.refuse(gateway_responses.RESOURCE_NOT_FOUND)


async def without_route(step: CorsStep, ctx: context.RequestContext) -> replies.Reply:
    """A request of a CORS-enabled Api that no route matches: ``answer_refusal`` of the 404."""
    return await answer_refusal(step, ctx, _NOT_FOUND)
