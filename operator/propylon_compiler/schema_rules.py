"""Python twins of the CEL rules (``x-kubernetes-validations``) in the CRDs.

The API server evaluates those rules in the cluster; ``propylon validate`` and ``serve`` have no
API server, so each rule has a small Python predicate here that says the same thing. A twin is
found by the rule's ``message`` and carries the rule's CEL text, so a test can check that every
rule in crds/ has a twin and that no rule changed without its twin (tests/test_crds.py).

Each predicate receives the value at the rule's location, after schema defaults are applied
(as the API server does). Where CEL would fail with "no such key", the predicate may raise
KeyError/TypeError; the caller treats that as "not evaluated", because the schema check has
already reported the missing or mistyped field. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Place = tuple[str | int, ...]  # a field path below the rule's location: ("routes", 2, "routeKey")


@dataclasses.dataclass(frozen=True, slots=True)
class Twin:
    rule: str  # the CEL text this twin mirrors, character for character
    check: Callable[[Any], bool]
    # Where exactly the rule is broken, when the API server can only say the rule's fieldPath
    # (a rule over a list says ``spec.routes``; offline we can name ``spec.routes[2].routeKey``).
    locate: Callable[[Any], list[Place]] | None = None


def _routes_where(spec: Any, broken: Callable[[Any], bool], field: str) -> list[Place]:
    return [("routes", i, field) for i, route in enumerate(spec["routes"]) if broken(route)]


def _has(obj: Any, key: str) -> bool:
    """CEL's ``has(obj.key)`` for objects decoded from YAML/JSON."""
    return isinstance(obj, dict) and key in obj


def _custom(integration: Any) -> bool:
    """HTTP, or FUNCTION with ``proxy: false``: the integrations with templates and responses."""
    return integration["type"] == "HTTP" or (
        integration["type"] == "FUNCTION" and _has(integration, "proxy") and integration["proxy"] is False
    )


def _lower_ascii(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _http_route_keys(spec: Any) -> bool:
    return (
        spec["protocol"] != "HTTP"
        or not _has(spec, "routes")
        or all(r["routeKey"] == "$default" or " " in r["routeKey"] for r in spec["routes"])
    )


def _websocket_route_keys(spec: Any) -> bool:
    return (
        spec["protocol"] != "WEBSOCKET"
        or not _has(spec, "routes")
        or all(" " not in r["routeKey"] for r in spec["routes"])
    )


def _cors_credentials(cors: Any) -> bool:
    return (
        not _has(cors, "allowCredentials")
        or not cors["allowCredentials"]
        or not _has(cors, "allowOrigins")
        or not any(o == "*" for o in cors["allowOrigins"])
    )


def _token_identity_source(spec: Any) -> bool:
    if spec["type"] != "TOKEN" or not _has(spec, "identitySource"):
        return True
    sources = spec["identitySource"]
    return len(sources) == 1 and sources[0].startswith("$request.header.")


def _jwt_secret_algorithms(jwt: Any) -> bool:
    if not _has(jwt, "secretRef"):
        return True
    return _has(jwt, "algorithms") and len(jwt["algorithms"]) > 0 and all(a.startswith("HS") for a in jwt["algorithms"])


TWINS: dict[str, Twin] = {
    # Api: spec
    'routes of an HTTP Api need a routeKey of the form "METHOD /path", "ANY /path" or "$default"': Twin(
        "self.protocol != 'HTTP' || !has(self.routes) || "
        "self.routes.all(r, r.routeKey == '$default' || r.routeKey.contains(' '))",
        _http_route_keys,
        lambda s: _routes_where(s, lambda r: r["routeKey"] != "$default" and " " not in r["routeKey"], "routeKey"),
    ),
    'routes of a WEBSOCKET Api need a routeKey "$connect", "$disconnect", "$default" or an action name': Twin(
        "self.protocol != 'WEBSOCKET' || !has(self.routes) || self.routes.all(r, !r.routeKey.contains(' '))",
        _websocket_route_keys,
        lambda s: _routes_where(s, lambda r: " " in r["routeKey"], "routeKey"),
    ),
    "routeSelectionExpression applies only to WEBSOCKET Apis": Twin(
        "self.protocol == 'WEBSOCKET' || !has(self.routeSelectionExpression)",
        lambda s: s["protocol"] == "WEBSOCKET" or not _has(s, "routeSelectionExpression"),
    ),
    "websocket applies only to WEBSOCKET Apis": Twin(
        "self.protocol == 'WEBSOCKET' || !has(self.websocket)",
        lambda s: s["protocol"] == "WEBSOCKET" or not _has(s, "websocket"),
    ),
    "routeResponseSelectionExpression applies only to routes of WEBSOCKET Apis": Twin(
        "self.protocol == 'WEBSOCKET' || !has(self.routes) || "
        "self.routes.all(r, !has(r.routeResponseSelectionExpression))",
        lambda s: (
            s["protocol"] == "WEBSOCKET"
            or not _has(s, "routes")
            or all(not _has(r, "routeResponseSelectionExpression") for r in s["routes"])
        ),
        lambda s: _routes_where(
            s, lambda r: _has(r, "routeResponseSelectionExpression"), "routeResponseSelectionExpression"
        ),
    ),
    # Api: spec.cors
    'allowOrigins "*" cannot be combined with allowCredentials: list the origins explicitly': Twin(
        "!has(self.allowCredentials) || !self.allowCredentials || !has(self.allowOrigins) || "
        "!self.allowOrigins.exists(o, o == '*')",
        _cors_credentials,
    ),
    # Api: spec.routes[]
    "a route key must not contain percent-escapes: write the character itself (requests are matched after decoding)": (
        Twin("!self.contains('%')", lambda key: "%" not in key)
    ),
    "authorizationScopes need an authorizer": Twin(
        "!has(self.authorizationScopes) || has(self.authorizer)",
        lambda r: not _has(r, "authorizationScopes") or _has(r, "authorizer"),
    ),
    # Api: spec.routes[].integration
    "exactly one of service or url must be set for HTTP_PROXY, HTTP and FUNCTION integrations": Twin(
        "self.type == 'MOCK' || has(self.service) != has(self.url)",
        lambda i: i["type"] == "MOCK" or _has(i, "service") != _has(i, "url"),
    ),
    "a MOCK integration needs mock": Twin(
        "self.type != 'MOCK' || has(self.mock)",
        lambda i: i["type"] != "MOCK" or _has(i, "mock"),
    ),
    "a MOCK integration takes neither service nor url": Twin(
        "self.type != 'MOCK' || (!has(self.service) && !has(self.url))",
        lambda i: i["type"] != "MOCK" or (not _has(i, "service") and not _has(i, "url")),
    ),
    "mock applies only to MOCK integrations": Twin(
        "self.type == 'MOCK' || !has(self.mock)",
        lambda i: i["type"] == "MOCK" or not _has(i, "mock"),
    ),
    "path applies only with service; put the path in url instead": Twin(
        "!has(self.path) || has(self.service)",
        lambda i: not _has(i, "path") or _has(i, "service"),
    ),
    "requestParameters and responseParameters apply only to HTTP_PROXY and HTTP integrations": Twin(
        "self.type == 'HTTP_PROXY' || self.type == 'HTTP' || "
        "(!has(self.requestParameters) && !has(self.responseParameters))",
        lambda i: (
            i["type"] in ("HTTP_PROXY", "HTTP")
            or (not _has(i, "requestParameters") and not _has(i, "responseParameters"))
        ),
        lambda i: [(name,) for name in ("requestParameters", "responseParameters") if _has(i, name)],
    ),
    "proxy: false applies only to FUNCTION integrations": Twin(
        "self.type == 'FUNCTION' || !has(self.proxy) || self.proxy",
        lambda i: i["type"] == "FUNCTION" or not _has(i, "proxy") or i["proxy"] is True,
    ),
    "payloadFormatVersion applies only to FUNCTION integrations": Twin(
        "self.type == 'FUNCTION' || !has(self.payloadFormatVersion)",
        lambda i: i["type"] == "FUNCTION" or not _has(i, "payloadFormatVersion"),
    ),
    "requestTemplates apply only to HTTP and FUNCTION (proxy: false) integrations": Twin(
        "self.type == 'HTTP' || (self.type == 'FUNCTION' && has(self.proxy) && !self.proxy) || "
        "!has(self.requestTemplates)",
        lambda i: _custom(i) or not _has(i, "requestTemplates"),
    ),
    "responses apply only to HTTP and FUNCTION (proxy: false) integrations": Twin(
        "self.type == 'HTTP' || (self.type == 'FUNCTION' && has(self.proxy) && !self.proxy) || !has(self.responses)",
        lambda i: _custom(i) or not _has(i, "responses"),
    ),
    # Stage: spec.basePath
    "basePath must not contain percent-escapes: write the character itself (requests are matched after decoding)": (
        Twin("!self.contains('%')", lambda path: "%" not in path)
    ),
    'basePath must start with "/"': Twin(
        "self.startsWith('/')",
        lambda p: p.startswith("/"),
    ),
    'basePath must not end with "/" (except "/" itself)': Twin(
        "self == '/' || !self.endsWith('/')",
        lambda p: p == "/" or not p.endswith("/"),
    ),
    # UsagePlan: spec.quota
    "offset must be 0 for a DAY quota": Twin(
        "self.period != 'DAY' || !has(self.offset) || self.offset == 0",
        lambda q: q["period"] != "DAY" or not _has(q, "offset") or q["offset"] == 0,
    ),
    "offset of a WEEK quota is the day the week starts, 0 (Sunday) to 6 (Saturday)": Twin(
        "self.period != 'WEEK' || !has(self.offset) || self.offset <= 6",
        lambda q: q["period"] != "WEEK" or not _has(q, "offset") or q["offset"] <= 6,
    ),
    # Authorizer: spec
    "a JWT authorizer needs jwt": Twin(
        "self.type != 'JWT' || has(self.jwt)",
        lambda s: s["type"] != "JWT" or _has(s, "jwt"),
    ),
    "REQUEST and TOKEN authorizers need function": Twin(
        "self.type == 'JWT' || has(self.function)",
        lambda s: s["type"] == "JWT" or _has(s, "function"),
    ),
    "jwt applies only to JWT authorizers": Twin(
        "self.type == 'JWT' || !has(self.jwt)",
        lambda s: s["type"] == "JWT" or not _has(s, "jwt"),
    ),
    "function applies only to REQUEST and TOKEN authorizers": Twin(
        "self.type != 'JWT' || !has(self.function)",
        lambda s: s["type"] != "JWT" or not _has(s, "function"),
    ),
    "identityValidationExpression applies only to TOKEN authorizers": Twin(
        "self.type == 'TOKEN' || !has(self.function) || !has(self.function.identityValidationExpression)",
        lambda s: (
            s["type"] == "TOKEN" or not _has(s, "function") or not _has(s["function"], "identityValidationExpression")
        ),
    ),
    "a TOKEN authorizer takes exactly one identitySource, a header ($request.header.<name>)": Twin(
        "self.type != 'TOKEN' || !has(self.identitySource) || "
        "(size(self.identitySource) == 1 && self.identitySource[0].startsWith('$request.header.'))",
        _token_identity_source,
    ),
    # Authorizer: spec.jwt
    'the "none" algorithm is never accepted': Twin(
        "!has(self.algorithms) || !self.algorithms.exists(a, a.lowerAscii() == 'none')",
        lambda j: not _has(j, "algorithms") or not any(_lower_ascii(a) == "none" for a in j["algorithms"]),
    ),
    "with secretRef, algorithms must be set and contain only HS256, HS384 or HS512": Twin(
        "!has(self.secretRef) || (has(self.algorithms) && size(self.algorithms) > 0 && "
        "self.algorithms.all(a, a.startsWith('HS')))",
        _jwt_secret_algorithms,
    ),
    "HS256, HS384 and HS512 need secretRef": Twin(
        "has(self.secretRef) || !has(self.algorithms) || !self.algorithms.exists(a, a.startsWith('HS'))",
        lambda j: (
            _has(j, "secretRef") or not _has(j, "algorithms") or not any(a.startswith("HS") for a in j["algorithms"])
        ),
    ),
    "secretRef and jwksUri cannot both be set": Twin(
        "!has(self.secretRef) || !has(self.jwksUri)",
        lambda j: not _has(j, "secretRef") or not _has(j, "jwksUri"),
    ),
    # Authorizer: spec.function
    "exactly one of service or url must be set": Twin(
        "has(self.service) != has(self.url)",
        lambda f: _has(f, "service") != _has(f, "url"),
    ),
    'enableSimpleResponses needs payloadFormatVersion "2.0"': Twin(
        "!has(self.enableSimpleResponses) || !self.enableSimpleResponses || self.payloadFormatVersion == '2.0'",
        lambda f: (
            not _has(f, "enableSimpleResponses") or not f["enableSimpleResponses"] or f["payloadFormatVersion"] == "2.0"
        ),
    ),
}
