"""REQUEST and TOKEN authorizers: the function is invoked with the AWS authorizer event and its
answer (an IAM policy, or a 2.0 simple response) decides whether the route runs.

The ARN a policy is judged against (``methodArn``, 2.0's ``routeArn``) is built from the path in
the one form routing matched and the upstream path is rebuilt from: the decoded segments after
the Stage's basePath, each percent-encoded again as one segment (``hygiene.encode_segment``).
So ``/prod/%61dmin`` is judged as ``.../GET/admin``, the route ``GET /admin`` it runs, and a
Deny cannot be stepped around by encoding a letter; ``%2F`` stays data inside its segment.
The event's own ``path``/``rawPath`` fields keep the forms DESIGN.md section 8 gives them.

Invocations go through the gateway's one ``FunctionClient`` (a runtime resource). Answers are
cached for ``resultTtlSeconds`` by identity-source values (plus the route for REQUEST) in a
bounded TTL cache on the runtime clock, claimed by a stable id that includes the settings'
fingerprint, so a plan swap keeps warm answers and an outage of the function keeps serving them.
One cache serves every Stage and Api that uses the Authorizer, so every key also names the Stage
and Api it was decided for (AWS caches an authorizer's answers per API stage): a 2.0 simple
``isAuthorized: true`` is not judged again per request, so it must never leave the stage (or,
for REQUEST, the route) it was given for. TTL 0 invokes every time.

The section-8 split: an empty, non-JSON or malformed answer is AUTHORIZER_CONFIGURATION_ERROR;
a timeout, refused connection or crash is AUTHORIZER_FAILURE; a raised
``Exception("Unauthorized")`` is 401.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import cachetools

from propylon_config import model
from propylon_proxy import caller_keys, context, gateway_responses, hygiene, replies, routing, steps, utf8
from propylon_proxy.authorizers import policy
from propylon_proxy.functions import client, events
from propylon_proxy.integrations import function as function_integration

log = logging.getLogger("propylon.proxy.authorizers")

_UNAUTHORIZED = replies.refuse(gateway_responses.UNAUTHORIZED)
_FORBIDDEN = replies.refuse(gateway_responses.ACCESS_DENIED)
_FAILURE = replies.refuse(gateway_responses.AUTHORIZER_FAILURE)
_CONFIGURATION = replies.refuse(gateway_responses.AUTHORIZER_CONFIGURATION_ERROR)
#: Distinct identities whose answers one authorizer keeps at most.
CACHE_ENTRIES = 10_000


def arn_path(ctx: context.RequestContext, base: tuple[str, ...]) -> str:
    """DESIGN.md section 8: the request path minus the basePath, with actual values, in the
    canonical form the route matched and the backend receives.

    Built from hygiene's decoded segments (the ones routing walked), never from the raw path: the
    raw ``%61dmin`` would be judged as another resource than the ``admin`` route it runs. The
    basePath is removed by segments, so an encoded basePath (``/pr%6Fd``) is removed too. Each
    segment is encoded again on its own, so an encoded ``/`` stays ``%2F`` inside its segment.
    """
    # The dispatcher split the target before routing; only a context built by hand lacks it.
    target = ctx.target if ctx.target is not None else hygiene.split_target(ctx.request.raw_path)
    segments = target.segments
    if base and segments[: len(base)] == base:
        segments = segments[len(base) :]
    return "/" + "/".join([hygiene.encode_segment(segment) for segment in segments])


def method_arn(ctx: context.RequestContext, prefix: str, base: tuple[str, ...]) -> str:
    """``arn:aws:execute-api:propylon:<ns>:<api>/<stage>/`` (``prefix``) + method + canonical path."""
    return f"{prefix}{ctx.request.method}/{arn_path(ctx, base).removeprefix('/')}"


def identity_value(ctx: context.RequestContext, source: str) -> str | None:
    """One identity source's value; None (missing) when absent or empty."""
    value: str | None = None
    if source.startswith("$request.header."):
        value = ctx.request.headers.get(source.removeprefix("$request.header."))
    elif source.startswith("method.request.header."):
        value = ctx.request.headers.get(source.removeprefix("method.request.header."))
    elif source.startswith("$request.querystring.") or source.startswith("method.request.querystring."):
        name = source.rpartition(".")[2]
        value = next((v for k, v in urllib.parse.parse_qsl(ctx.query, keep_blank_values=True) if k == name), None)
    elif source.startswith("$stageVariables.") or source.startswith("stageVariables."):
        value = (ctx.stage_variables or {}).get(source.rpartition(".")[2])
    return value or None


@dataclasses.dataclass(frozen=True, slots=True)
class _Setup:
    authorizer: model.Authorizer
    fn: model.AuthorizerFunction
    shape: events.EventShape
    arn_prefix: str  # "arn:aws:execute-api:propylon:<ns>:<api>/<stage>/"
    base: tuple[str, ...]  # the Stage's basePath segments
    # Who an answer was decided for, the first part of every cache key: the Stage and the Api
    # served (a canary's Api differs from its Stage's) and, for REQUEST, the route's id
    # ("<ns>/<api>/<stage>/<routeKey>"); each a tuple item of its own, so no two keys collide.
    scope: tuple[str, ...]


class _Granted(NamedTuple):
    """A cached answer, with the digests the response cache keys on (``caller_keys``): computed
    once per answer, not per request it serves."""

    answer: policy.Answer
    identity_digest: bytes
    context_digest: str | None


def step_for(authorizer: model.Authorizer, setup: steps.RouteSetup) -> steps.Step:
    fn = authorizer.function
    assert fn is not None
    shape = dataclasses.replace(
        events.EventShape.for_route(setup.route, setup.stage, setup.api), version=fn.payload_format_version
    )
    run = setup.runtime
    fingerprint = hashlib.sha256(repr((authorizer.identity_source, fn)).encode()).hexdigest()[:16]
    cache: cachetools.TTLCache[tuple[str, ...], _Granted] | None = None
    if fn.result_ttl_seconds > 0:
        cache = run.resources.claim(
            f"authorizer cache {authorizer.id} {fingerprint}",
            lambda: cachetools.TTLCache(CACHE_ENTRIES, fn.result_ttl_seconds, timer=lambda: run.clock()),
        )
    api_id = setup.api.id if setup.api is not None else setup.stage.api
    stage_scope = (setup.stage.id, api_id)
    prepared = _Setup(
        authorizer=authorizer,
        fn=fn,
        shape=shape,
        arn_prefix=f"arn:aws:execute-api:propylon:{setup.stage.namespace}:{shape.api_id}/{setup.stage.name}/",
        base=routing.segments_of(setup.stage.base_path),
        scope=stage_scope if authorizer.type is model.AuthorizerType.TOKEN else (*stage_scope, setup.route.id),
    )
    check = _check(prepared, function_integration.shared_client(run), cache)
    return steps.BeforeOnly(name=f"authorizer {authorizer.id} ({authorizer.type.value})", check=check)


def _event(p: _Setup, ctx: context.RequestContext, arn: str, values: list[str]) -> dict[str, Any]:
    if p.authorizer.type is model.AuthorizerType.TOKEN:
        return {"type": "TOKEN", "authorizationToken": values[0], "methodArn": arn}
    event = p.shape.build(ctx, None)
    event.pop("body", None)
    event.pop("isBase64Encoded", None)
    if p.fn.payload_format_version == "1.0":
        return {"type": "REQUEST", "methodArn": arn, **event}
    return {"version": "2.0", "type": "REQUEST", "routeArn": arn, "identitySource": values, **event}


def _check(
    p: _Setup, functions: client.FunctionClient, cache: cachetools.TTLCache[tuple[str, ...], _Granted] | None
) -> Callable[[context.RequestContext], Awaitable[steps.Outcome]]:
    is_token = p.authorizer.type is model.AuthorizerType.TOKEN
    validation = p.fn.identity_validation_expression
    expression = re.compile(validation) if is_token and validation else None
    sources = p.authorizer.identity_source[:1] if is_token else p.authorizer.identity_source
    target = client.Target(url=p.fn.url, service=p.fn.service)
    timeout = p.fn.timeout_ms / 1000

    async def check(ctx: context.RequestContext) -> replies.Refusal | None:
        values = [identity_value(ctx, s) for s in sources]
        present = [v for v in values if v is not None]
        if len(present) != len(values) or not present:
            return _UNAUTHORIZED  # a missing identity source: never invoked
        if expression is not None and expression.fullmatch(present[0]) is None:
            return _UNAUTHORIZED
        arn = method_arn(ctx, p.arn_prefix, p.base)
        # TOKEN: the token's answer on this Stage, its policy judged below for each route's ARN;
        # REQUEST: the answer for this route (and method, for ANY routes) on this Stage.
        key = (*p.scope, *present) if is_token else (*p.scope, ctx.request.method, *present)
        granted = cache.get(key) if cache is not None else None
        if granted is None:
            found = await _invoke(p, functions, target, timeout, ctx, arn, present)
            if isinstance(found, replies.Refusal):
                return found
            # The key is the identity values, so their digests belong with the answer.
            granted = _Granted(found, caller_keys.identity_digest(present), caller_keys.context_digest(found.context))
            if cache is not None:
                cache[key] = granted
        answer = granted.answer
        if not answer.permits(arn):
            return _FORBIDDEN
        ctx.principal_id = answer.principal_id
        ctx.authorizer_context = answer.context
        ctx.authorizer_context_digest = granted.context_digest
        # What proved this caller, for the response cache when no principal tells callers apart
        # (a 2.0 simple answer); a digest, so no token is kept with a cached response.
        ctx.caller_digest = granted.identity_digest
        if answer.usage_identifier_key is not None:
            ctx.usage_identifier_key = answer.usage_identifier_key
        return None

    return check


async def _invoke(
    p: _Setup,
    functions: client.FunctionClient,
    target: client.Target,
    timeout: float,
    ctx: context.RequestContext,
    arn: str,
    values: list[str],
) -> policy.Answer | replies.Refusal:
    if p.fn.service is not None and ctx.plan is not None:
        target = dataclasses.replace(target, addresses=ctx.plan.endpoints.get(p.fn.service.key, ()))
    event = utf8.json_bytes(_event(p, ctx, arn, values))
    simple = p.fn.payload_format_version == "2.0" and p.fn.enable_simple_responses
    try:
        raw = await functions.invoke(target, event, timeout, request_id=ctx.request_id)
    except client.FunctionError as exc:
        if exc.error_message == "Unauthorized":
            return _UNAUTHORIZED
        log.warning("authorizer %s raised %s: %s", p.authorizer.id, exc.error_type, exc.error_message)
        return _FAILURE
    except client.MalformedAnswer as exc:
        log.warning("authorizer %s answered malformed: %s", p.authorizer.id, exc)
        return _CONFIGURATION
    except client.InvokeError as exc:
        log.warning("authorizer %s failed: %s", p.authorizer.id, exc)
        return _FAILURE
    try:
        return policy.parse(raw, simple=simple)
    except policy.Malformed as exc:
        log.warning("authorizer %s answered malformed: %s", p.authorizer.id, exc)
        return _CONFIGURATION
