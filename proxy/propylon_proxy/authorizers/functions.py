"""REQUEST and TOKEN authorizers: the function is invoked with the AWS authorizer event and its
answer (an IAM policy, or a 2.0 simple response) decides whether the route runs.

The ARN a policy is judged against (``methodArn``, 2.0's ``routeArn``) is built from the path in
the one form routing matched and the upstream path is rebuilt from: the decoded segments after
the Stage's basePath, each percent-encoded again as one segment (``hygiene.encode_segment``).
So ``/prod/%61dmin`` is judged as ``.../GET/admin``, the route ``GET /admin`` it runs, and a
Deny cannot be stepped around by encoding a letter; ``%2F`` stays data inside its segment.
The event's own ``path``/``rawPath`` fields keep the forms DESIGN.md section 8 gives them.

Invocations go through the gateway's one ``FunctionClient`` (a runtime resource). Answers are
cached for ``resultTtlSeconds`` by identity-source values (every value of each, as events show them, so an
answer is never reused for values the function was not shown; plus the route for REQUEST) in a
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
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import cachetools

from propylon_config import model
from propylon_proxy import (
    caller_keys,
    context,
    gateway_responses,
    hygiene,
    replies,
    routing,
    steps,
    template_variables,
    utf8,
)
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


class Identity(NamedTuple):
    """One identity source as the function is shown it and as its answer is cached.

    ``shown`` is the value the event carries (TOKEN's ``authorizationToken``, 2.0's
    ``identitySource``): for a repeated header or query parameter the last one in 1.0 (as the
    event's ``headers``/``queryStringParameters``), all of them comma-joined in 2.0; None when
    absent or empty. ``every`` is every value the request has, in order: the cache key, so a
    request can reuse only an answer given for exactly the values it brings (an answer judged
    on ``X-Tenant: B, A`` is never reused for ``X-Tenant: B``).
    """

    shown: str | None
    every: tuple[str, ...]


def identity(ctx: context.RequestContext, source: str, *, version: str = "1.0", resource: str = "") -> Identity:
    """The identity source ``source`` of this request; ``resource`` is ``$context.resourcePath``."""
    every: tuple[str, ...] = ()
    if source.startswith("$request.header.") or source.startswith("method.request.header."):
        name = source.partition(".header.")[2].lower()
        every = tuple(events.header_text(v) for n, v in ctx.headers if n.lower() == name)
    elif source.startswith("$request.querystring.") or source.startswith("method.request.querystring."):
        name = source.partition(".querystring.")[2]
        every = tuple(v for k, v in events.query_pairs(ctx.query) if k == name)
    elif source.startswith("$request.path.") or source.startswith("method.request.path."):
        found = (events.path_parameters(ctx) or {}).get(source.partition(".path.")[2])
        every = (found,) if found is not None else ()
    elif source.startswith("$stageVariables.") or source.startswith("stageVariables."):
        found = (ctx.stage_variables or {}).get(source.rpartition(".")[2])
        every = (found,) if found is not None else ()
    elif source.startswith("$context.") and not source.startswith("$context.authorizer."):
        # What a mapping template's $context says (the one place those values are made); not
        # authorizer.*, which this authorizer is about to decide. The compiler refuses names
        # that are not there (propylon_compiler.authorizers.CONTEXT_SOURCES).
        value: Any = template_variables.namespace(ctx, b"", resource)["context"]
        for part in source.removeprefix("$context.").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str | int) and not isinstance(value, bool):
            every = (str(value),)
    if not every:
        return Identity(None, ())
    shown = every[-1] if version == "1.0" or len(every) == 1 else ",".join(every)
    return Identity(shown or None, every)


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
    # A WebSocket Api's $connect: AWS's WebSocket authorizer event and its "<stage>/$connect" ARN.
    connect: bool = False


class _Granted(NamedTuple):
    """A cached answer, with the digests the response cache keys on (``caller_keys``): computed
    once per answer, not per request it serves."""

    answer: policy.Answer
    identity_digest: bytes
    context_digest: str | None


def step_for(authorizer: model.Authorizer, setup: steps.RouteSetup) -> steps.Step:
    fn = authorizer.function
    assert fn is not None
    connect = (
        setup.api is not None and setup.api.protocol is model.Protocol.WEBSOCKET and setup.route.route_key == "$connect"
    )
    # A WebSocket authorizer has one event whatever the version: REST's headers and query.
    version = "1.0" if connect else fn.payload_format_version
    shape = dataclasses.replace(events.EventShape.for_route(setup.route, setup.stage, setup.api), version=version)
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
        connect=connect,
    )
    check = _check(prepared, function_integration.shared_client(run), cache)
    return steps.BeforeOnly(name=f"authorizer {authorizer.id} ({authorizer.type.value})", check=check)


def _connect_event(p: _Setup, ctx: context.RequestContext, arn: str) -> dict[str, Any]:
    """AWS's REQUEST authorizer event for a WebSocket $connect: the upgrade's headers, query and
    stage variables as a 1.0 event has them, no path (it is fixed), and the WebSocket
    requestContext (routeKey, eventType, messageDirection, connectedAt) the $connect
    integration's event has too, with the ``connectionId`` the connection keeps once let in
    (``websocket.entry`` draws it before the checks run)."""
    rest = p.shape.build(ctx, None)
    told = rest["requestContext"]
    request_context = {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "extendedRequestId": told["extendedRequestId"],
        "requestTime": told["requestTime"],
        "messageDirection": "IN",
        "stage": p.shape.stage,
        "connectedAt": told["requestTimeEpoch"],
        "requestTimeEpoch": told["requestTimeEpoch"],
        "identity": {"userAgent": told["identity"]["userAgent"], "sourceIp": told["identity"]["sourceIp"]},
        "requestId": told["requestId"],
        "domainName": told["domainName"],
        "apiId": told["apiId"],
    }
    if ctx.connection_id is not None:
        request_context["connectionId"] = ctx.connection_id
    fields = ("headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters")
    event = {"type": "REQUEST", "methodArn": arn, **{name: rest[name] for name in fields}}
    event["stageVariables"] = rest["stageVariables"]
    event["requestContext"] = request_context
    return event


def _event(p: _Setup, ctx: context.RequestContext, arn: str, values: list[str]) -> dict[str, Any]:
    if p.authorizer.type is model.AuthorizerType.TOKEN:
        return {"type": "TOKEN", "authorizationToken": values[0], "methodArn": arn}
    if p.connect:
        return _connect_event(p, ctx, arn)
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

    version = p.shape.version
    resource = p.shape.resource
    connect_arn = f"{p.arn_prefix}$connect" if p.connect else None

    async def check(ctx: context.RequestContext) -> replies.Refusal | None:
        found_all = [identity(ctx, s, version=version, resource=resource) for s in sources]
        present = [f.shown for f in found_all if f.shown is not None]
        if len(present) != len(found_all) or not present:
            return _UNAUTHORIZED  # a missing identity source: never invoked
        if expression is not None and expression.fullmatch(present[0]) is None:
            return _UNAUTHORIZED
        arn = connect_arn if connect_arn is not None else method_arn(ctx, p.arn_prefix, p.base)
        # Every value of each source, not just the one shown: whatever the function read (a
        # 1.0 event's multiValueHeaders too), a cached answer serves only the same values.
        values = [json.dumps(f.every) for f in found_all]  # unambiguous: one value never reads as two
        # TOKEN: the token's answer on this Stage, its policy judged below for each route's ARN;
        # REQUEST: the answer for this route (and method, for ANY routes) on this Stage.
        key = (*p.scope, *values) if is_token else (*p.scope, ctx.request.method, *values)
        granted = cache.get(key) if cache is not None else None
        if granted is None:
            found = await _invoke(p, functions, target, timeout, ctx, arn, present)
            if isinstance(found, replies.Refusal):
                return found
            # The key is the identity values, so their digests belong with the answer.
            granted = _Granted(found, caller_keys.identity_digest(values), caller_keys.context_digest(found.context))
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
        return policy.parse(raw, simple=simple, version=p.fn.payload_format_version)
    except policy.Malformed as exc:
        log.warning("authorizer %s answered malformed: %s", p.authorizer.id, exc)
        return _CONFIGURATION
