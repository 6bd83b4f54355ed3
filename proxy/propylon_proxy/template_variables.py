"""The variables a mapping template sees (DESIGN.md §2.5): ``$input``, ``$util``, ``$context``,
``$stageVariables``, built from one request's RequestContext.

Request templates (HTTP, custom FUNCTION) and response templates (integration responses) read
the same variables; only ``$input``'s body differs (the client's body, or the integration's
answer), and a response template also gets ``$context.responseOverride`` to write into. Kept
apart from ``vtl`` so the renderer stays free of the request type.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from propylon_proxy import context, vtl
from propylon_proxy.functions import events


def namespace(
    ctx: context.RequestContext,
    body: bytes,
    resource: str,
    *,
    override: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The template variables for ``ctx``; ``body`` is what ``$input`` reads; ``override`` (a
    response template's) becomes ``$context.responseOverride`` for the template to set."""
    match = ctx.match
    path_params = dict(match.params) if match is not None else {}
    query = urllib.parse.parse_qsl(ctx.query, keep_blank_values=True)
    params = vtl.params_of(path_params, query, ctx.headers)
    # Copied all the way down: templates can change what they read (Java's list.add, map.put),
    # and the claims and authorizer context come from caches that later requests read too.
    authorizer: dict[str, Any] = _detached(ctx.authorizer_context or {})
    authorizer["principalId"] = ctx.principal_id or ""
    authorizer["claims"] = _detached(ctx.claims or {})
    request = ctx.request
    user_agent = request.headers.get("User-Agent", "")
    host = request.headers.get("Host", "")
    domain = host.rpartition(":")[0] if host.count(":") == 1 else host
    stage = ctx.stage
    # accountId/apiId as in the proxy events and methodArn (DESIGN.md section 8): the namespace
    # and name of the Api that serves the request (the canary's on the canary side, as events say).
    account_id, _, api_id = ctx.served_api.partition("/")
    variables: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.partition(".")[0],
        "requestId": ctx.request_id,
        "stage": stage.name if stage is not None else "",
        "httpMethod": request.method,
        "resourcePath": resource,
        "path": request.path,
        "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
        "requestTime": events.request_time(ctx.started_wall),
        "requestTimeEpoch": int(ctx.started_wall * 1000),
        "identity": {"sourceIp": ctx.source_ip, "userAgent": user_agent},
        "authorizer": authorizer,
    }
    if override is not None:
        variables["responseOverride"] = override
    return {
        "input": vtl.Input(body, params),
        "util": vtl.UTIL,
        "stageVariables": dict(ctx.stage_variables),
        "context": variables,
    }


def _detached(value: Any) -> Any:
    """A copy of a JSON value that shares no map or list with ``value``."""
    if isinstance(value, Mapping):  # a dict, or the read-only view verified claims are kept in
        return {key: _detached(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_detached(item) for item in value]
    return value
