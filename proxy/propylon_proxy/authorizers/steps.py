"""The authorizer step (chain position 3): a JWT route's token is verified before anything else
runs; what it proves (principal, claims, scopes) goes into the request context, where
``$context.authorizer.*`` mappings, function events and the access log read it.

Prepared once per plan, per route. The key set and the verifier (with its token cache) are
runtime resources claimed by stable ids, so a plan swap that keeps an Authorizer keeps its keys
and its warm tokens; an edit to its settings gets a new verifier (the cache must not outlive the
rules it was filled under) but the same key set when the issuer and jwksUri stay.

REQUEST and TOKEN Authorizers are built by ``authorizers.functions``; one without a function
(the compiler refuses such a manifest) fails closed through ``guards.authorizer_guard``.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable

from propylon_config import model
from propylon_proxy import context, gateway_responses, guards, incoming, replies, steps
from propylon_proxy.authorizers import functions, jwks, jwt, sealing

log = logging.getLogger("propylon.proxy.authorizers")

_UNAUTHORIZED = replies.refuse(gateway_responses.UNAUTHORIZED, ("WWW-Authenticate", "Bearer"))
_FORBIDDEN = replies.refuse(gateway_responses.ACCESS_DENIED)
_FAILURE = replies.refuse(gateway_responses.AUTHORIZER_FAILURE)
_CONFIGURATION = replies.refuse(gateway_responses.AUTHORIZER_CONFIGURATION_ERROR)
_REFUSALS = {
    gateway_responses.UNAUTHORIZED: _UNAUTHORIZED,
    gateway_responses.AUTHORIZER_FAILURE: _FAILURE,
    gateway_responses.AUTHORIZER_CONFIGURATION_ERROR: _CONFIGURATION,
}


def find(config: model.GatewayConfig, authorizer_id: str) -> model.Authorizer | None:
    return next((a for a in config.authorizers if a.id == authorizer_id), None)


def step_for(setup: steps.RouteSetup) -> steps.Step | None:
    route = setup.route
    if route.authorizer is None:
        return None
    authorizer = find(setup.config, route.authorizer)
    if authorizer is not None and authorizer.type is not model.AuthorizerType.JWT and authorizer.function is not None:
        return functions.step_for(authorizer, setup)
    if authorizer is None or authorizer.type is not model.AuthorizerType.JWT or authorizer.jwt is None:
        return guards.authorizer_guard(setup)
    verifier = _verifier(authorizer, authorizer.jwt, setup)
    if verifier is None:
        return guards.authorizer_guard(setup)
    return steps.BeforeOnly(name=f"authorizer {authorizer.id} (JWT)", check=_check(authorizer, verifier, route))


def key_set_id(settings: model.JwtSettings) -> str:
    return f"jwks {settings.issuer} {settings.jwks_uri or '(discovered)'}"


def _verifier(
    authorizer: model.Authorizer, settings: model.JwtSettings, setup: steps.RouteSetup
) -> jwt.Verifier | None:
    run = setup.runtime
    keys: jwks.KeySet | None = None
    secret: bytes | None = None
    if settings.secret_ref is not None:
        try:
            secret = sealing.open_sealed(run.settings.sealing_secret, settings.sealed_secret, authorizer.id)
        except sealing.Unopenable as exc:
            log.warning(
                "JWT authorizer %s cannot verify HS* tokens (%s); its routes refuse every request", authorizer.id, exc
            )
            return None
    else:
        keys = run.resources.claim(
            key_set_id(settings),
            lambda: jwks.KeySet(issuer=settings.issuer, jwks_uri=settings.jwks_uri, clock=lambda: run.clock()),
        )
        keys.prefetch()
    # The settings' fingerprint: a changed rule gets a fresh token cache.
    fingerprint = hashlib.sha256(repr((authorizer.identity_source, settings)).encode()).hexdigest()[:16]
    return run.resources.claim(
        f"jwt {authorizer.id} {fingerprint}",
        lambda: jwt.Verifier(settings, keys=keys, secret=secret, clock=lambda: run.clock()),
    )


def _check(
    authorizer: model.Authorizer, verifier: jwt.Verifier, route: model.Route
) -> Callable[[context.RequestContext], Awaitable[steps.Outcome]]:
    source = authorizer.identity_source[0]
    header = source.removeprefix("$request.header.") if source.startswith("$request.header.") else None
    query = source.removeprefix("$request.querystring.") if source.startswith("$request.querystring.") else None
    wanted = frozenset(route.authorization_scopes)

    async def check(ctx: context.RequestContext) -> replies.Refusal | None:
        if header is not None:
            value = incoming.header(ctx.request, header)  # noted while parsing: no multidict
        elif query is not None:
            value = next((v for k, v in urllib.parse.parse_qsl(ctx.query, keep_blank_values=True) if k == query), None)
        else:
            value = None
        token = jwt.bearer_token(value) if value else ""
        if not token:
            return _UNAUTHORIZED
        # A warm token is answered without a coroutine, and a cold one too unless its keys
        # must be fetched first.
        found = verifier.warm(token)
        outcome = verifier.cold_now(token, found) if isinstance(found, bytes) else found
        if outcome is None:
            assert isinstance(found, bytes)
            outcome = await verifier.cold_fetching(token, found)
        if isinstance(outcome, str):
            return _REFUSALS.get(outcome, _UNAUTHORIZED)
        ctx.principal_id = outcome.principal
        ctx.claims = outcome.claims
        ctx.scopes = outcome.scopes
        ctx.caller_digest = outcome.digest
        if wanted and wanted.isdisjoint(outcome.scopes):
            return _FORBIDDEN
        return None

    return check
