"""Apis: checking an Api and turning it into a stage-independent plan of routes.

What can be decided without a Stage is decided here, once per Api: route keys and their
precedence, integrations (with stage-variable templates left in), models, CORS, gateway
responses, and references to Authorizers and models. A structural mistake anywhere breaks the
whole Api (it is dropped, so a half-valid edit is never served); a missing reference keeps the
route that makes it but makes it refuse every request (``Route.refusal``: it fails closed, its
traffic never reaches a less specific route), and the Api reports ``Ready=False`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import jsonschema

from propylon_compiler import fields, gateway_responses, integration_responses, integrations, objects, routes
from propylon_config import gateway_responses as table
from propylon_config import model, model_schemas

_PARAMETER = re.compile(r"^(querystring|header|path)\.(.+)$")
API_KEY_SOURCES = ("HEADER", "AUTHORIZER")
# How diagnostics say that a route fails closed (the words users grep for).
REFUSES_AUTHORIZER = "refuses every request (500 AUTHORIZER_CONFIGURATION_ERROR)"
REFUSES_API = "refuses every request (500 API_CONFIGURATION_ERROR)"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RouteTemplate:
    """A route before a Stage gives it an id, limits, cache settings and variable values."""

    index: int  # position in spec.routes, for field paths
    route: model.Route


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiPlan:
    obj: objects.Object
    api: model.Api
    routes: tuple[RouteTemplate, ...]  # every well-formed route (refusing ones included), precedence order
    route_keys: frozenset[str]  # every declared route key, malformed ones included
    gateway_responses: tuple[tuple[str, model.GatewayResponse], ...]


def source(obj: objects.Object) -> model.Source:
    return model.Source(
        file=obj.document.origin.file,
        document=obj.document.origin.document,
        kind=obj.kind,
        namespace=obj.namespace,
        name=obj.name,
    )


def compile_all(index: objects.Index, reporter: objects.Reporter) -> dict[tuple[str, str], ApiPlan]:
    """Plans of the usable Apis, keyed by (namespace, name)."""
    plans: dict[tuple[str, str], ApiPlan] = {}
    for obj in index.of_kind("Api"):
        # A broken Api is still read (its plan dropped) so one run reports all its problems.
        plan = _compile(obj, index, reporter)
        if plan is not None and not reporter.is_broken(obj):
            plans[(obj.namespace, obj.name)] = plan
    return plans


def _compile(obj: objects.Object, index: objects.Index, reporter: objects.Reporter) -> ApiPlan | None:
    f = fields.Fields(obj, reporter)
    spec = obj.spec
    protocol_name = f.string(spec, "protocol", "spec") or "HTTP"
    try:
        protocol = model.Protocol(protocol_name)
    except ValueError:
        f.error("spec.protocol", f"unsupported protocol {protocol_name!r} (expected HTTP or WEBSOCKET)")
        return None
    api_key_source = f.string(spec, "apiKeySource", "spec") or "HEADER"
    if api_key_source not in API_KEY_SOURCES:
        f.error("spec.apiKeySource", f"unsupported apiKeySource {api_key_source!r} (expected HEADER or AUTHORIZER)")
    models = _models(f, spec)
    api = model.Api(
        id=obj.id,
        namespace=obj.namespace,
        name=obj.name,
        protocol=protocol,
        description=f.string(spec, "description", "spec") or "",
        api_key_source=api_key_source,
        cors=_cors(f, spec),
        models=tuple(sorted(models.items())),
        binary_media_types=f.strings(spec, "binaryMediaTypes", "spec"),
        route_selection_expression=_websocket_only(f, spec, protocol, "routeSelectionExpression"),
        websocket=_websocket(f, spec, protocol),
        source=source(obj),
    )
    overrides = gateway_responses.parse_overrides(f, spec, "spec")
    templates, keys = _routes(f, spec, protocol, models, index)
    if reporter.is_broken(obj):
        return None
    return ApiPlan(
        obj=obj,
        api=api,
        routes=tuple(sorted(templates, key=lambda t: routes.precedence(t.route))),
        route_keys=frozenset(keys),
        gateway_responses=gateway_responses.compile_overrides(overrides),
    )


def _routes(
    f: fields.Fields, spec: dict[str, Any], protocol: model.Protocol, models: dict[str, str], index: objects.Index
) -> tuple[list[RouteTemplate], list[str]]:
    raw_routes = spec.get("routes")
    if raw_routes is None:
        return [], []
    if not isinstance(raw_routes, list):
        f.error("spec.routes", "expected a list of routes")
        return [], []
    templates: list[RouteTemplate] = []
    keys: list[str] = []
    seen_keys: dict[str, int] = {}
    seen_shapes: dict[object, int] = {}
    for i, raw in enumerate(raw_routes):
        path = f"spec.routes[{i}]"
        if not isinstance(raw, dict):
            f.error(path, "expected a mapping with routeKey and integration")
            continue
        key = f.string(raw, "routeKey", path)
        if key is None:
            if "routeKey" not in raw:
                f.error(fields.join(path, "routeKey"), "missing routeKey")
            continue
        keys.append(key)
        try:
            parsed = routes.parse_key(key, protocol)
        except routes.RouteKeyError as exc:
            f.error(fields.join(path, "routeKey"), str(exc))
            continue
        if key in seen_keys:
            f.error(fields.join(path, "routeKey"), f"duplicate route key {key!r} (also spec.routes[{seen_keys[key]}])")
            continue
        shape = routes.shape(parsed)
        if shape in seen_shapes:
            other = seen_shapes[shape]
            f.error(
                fields.join(path, "routeKey"),
                f"route key {key!r} matches the same requests as spec.routes[{other}] (only parameter names differ)",
            )
            continue
        seen_keys[key] = i
        seen_shapes[shape] = i
        if protocol is model.Protocol.WEBSOCKET:
            integration_responses.websocket_problems(f, raw, path, key)
        template = _route(f, raw, path, parsed, key, models, index)
        if template is not None:
            templates.append(RouteTemplate(index=i, route=template))
    return templates, keys


def _route(
    f: fields.Fields,
    raw: dict[str, Any],
    path: str,
    parsed: routes.ParsedKey,
    key: str,
    models: dict[str, str],
    index: objects.Index,
) -> model.Route | None:
    """One route; None when it cannot be served (a diagnostic says why)."""
    raw_integration = f.mapping(raw, "integration", path)
    integration = None
    if raw_integration is None:
        if "integration" not in raw:
            f.error(fields.join(path, "integration"), "missing integration")
    else:
        integration = integrations.parse(f, raw_integration, fields.join(path, "integration"), f.obj.namespace)
        if integration is not None:
            _check_template_params(f, integration, parsed, fields.join(path, "integration"))
    validation = _validation(f, raw, path, parsed)
    cache_keys = f.strings(raw, "cacheKeyParameters", path)
    for j, name in enumerate(cache_keys):
        if not _PARAMETER.match(name):
            f.error(f"{fields.join(path, 'cacheKeyParameters')}[{j}]", _parameter_problem(name))
    scopes = f.strings(raw, "authorizationScopes", path)
    api_key_required = f.boolean(raw, "apiKeyRequired", path) or False
    selection = f.string(raw, "routeResponseSelectionExpression", path)
    authorizer = f.string(raw, "authorizer", path)
    if integration is None:
        return None
    # A missing reference never drops the route: it stays in the table and refuses every
    # request, so its traffic cannot fall through to a less specific route (DESIGN.md section 1).
    # The Api stays accepted but not Ready, naming the reference.
    refusal: str | None = None
    if authorizer is not None:
        target = index.get("Authorizer", f.obj.namespace, authorizer)
        if target is None or f.reporter.is_broken(target):
            state = "not found" if target is None else "not valid"
            f.error(
                fields.join(path, "authorizer"),
                f"Authorizer {f.obj.namespace}/{authorizer} {state}; route {key!r} {REFUSES_AUTHORIZER}",
                reason="MissingReference",
                breaks=False,
            )
            refusal = table.AUTHORIZER_CONFIGURATION_ERROR
        elif scopes and (kind := target.spec.get("type")) != "JWT":
            # Only a JWT carries scopes: a function authorizer would let every caller through
            # the scopes the route asks for, so the route fails closed instead.
            f.error(
                fields.join(path, "authorizationScopes"),
                f"authorizationScopes apply only to routes with a JWT authorizer, and Authorizer "
                f"{f.obj.namespace}/{authorizer} is {kind}; route {key!r} {REFUSES_AUTHORIZER}",
                breaks=False,
            )
            refusal = table.AUTHORIZER_CONFIGURATION_ERROR
    # An invalid model is reported at the model itself; only an undeclared one is missing here.
    declared = models.keys() | set((f.mapping(f.obj.spec, "models", "spec") or {}).keys())
    if validation is not None and validation.body_model is not None and validation.body_model not in declared:
        f.error(
            fields.join(fields.join(path, "requestValidation"), "body"),
            f"model {validation.body_model!r} is not defined in spec.models; route {key!r} {REFUSES_API}",
            reason="MissingReference",
            breaks=False,
        )
        refusal = refusal or table.API_CONFIGURATION_ERROR
    return model.Route(
        id="",
        route_key=key,
        method=parsed.method,
        path=parsed.path,
        segments=parsed.segments,
        integration=integration,
        authorizer=f"{f.obj.namespace}/{authorizer}" if authorizer else None,
        authorization_scopes=scopes,
        api_key_required=api_key_required,
        request_validation=validation,
        cache_key_parameters=cache_keys,
        route_response_selection_expression=selection,
        refusal=refusal,
        source=source(f.obj),
    )


def _check_template_params(
    f: fields.Fields, integration: model.Integration, parsed: routes.ParsedKey, path: str
) -> None:
    """``{name}`` in an upstream url/path must be a parameter of the route's path."""
    names = {s.value for s in parsed.segments if s.kind is not model.SegmentKind.LITERAL}
    for field_name, text in (("url", integration.url), ("path", integration.path)):
        for name in re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\+\}", text or ""):
            f.error(
                fields.join(path, field_name),
                f"write {{{name}}} for the greedy parameter {{{name}+}} in an upstream url or path",
            )
        for name in integrations.TEMPLATE_PARAM.findall(text or ""):
            if name not in names:
                f.error(
                    fields.join(path, field_name),
                    f"{{{name}}} is not a parameter of the route path {parsed.path or '(none)'!r}",
                )


def _validation(
    f: fields.Fields, raw: dict[str, Any], path: str, parsed: routes.ParsedKey
) -> model.RequestValidation | None:
    spec = f.mapping(raw, "requestValidation", path)
    if spec is None:
        return None
    where = fields.join(path, "requestValidation")
    body = f.string(spec, "body", where)
    required = f.strings(spec, "requiredParameters", where)
    # A required path.NAME the route path does not bind is never there: every request would be
    # refused 400 with nothing to tell the author why.
    bound = {s.value for s in parsed.segments if s.kind is not model.SegmentKind.LITERAL}
    for j, name in enumerate(required):
        if not _PARAMETER.match(name):
            f.error(f"{fields.join(where, 'requiredParameters')}[{j}]", _parameter_problem(name))
        elif name.startswith("path.") and name[len("path.") :] not in bound:
            f.error(
                f"{fields.join(where, 'requiredParameters')}[{j}]",
                f"{name!r} is not a parameter of the route path {parsed.path or '(none)'!r}, so every"
                " request would be refused",
            )
    return model.RequestValidation(body_model=body, required_parameters=required)


def _parameter_problem(name: str) -> str:
    return f"invalid parameter {name!r}: expected querystring.NAME, header.NAME or path.NAME"


def _models(f: fields.Fields, spec: dict[str, Any]) -> dict[str, str]:
    """Model name -> JSON Schema as canonical JSON text; invalid schemas are diagnostics."""
    raw = f.mapping(spec, "models", "spec") or {}
    out: dict[str, str] = {}
    for name, schema in raw.items():
        where = fields.join("spec.models", str(name))
        if not isinstance(schema, dict):
            f.error(where, "a model must be a JSON Schema object")
            continue
        try:
            jsonschema.Draft4Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
            f.error(where + inner, f"invalid JSON Schema: {exc.message}")
            continue
        if (problem := model_schemas.problem(schema)) is not None:
            f.error(where, f"invalid JSON Schema: {problem}")
            continue
        out[str(name)] = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return out


def _cors(f: fields.Fields, spec: dict[str, Any]) -> model.Cors | None:
    raw = f.mapping(spec, "cors", "spec")
    if raw is None:
        return None
    origins = f.strings(raw, "allowOrigins", "spec.cors")
    credentials = f.boolean(raw, "allowCredentials", "spec.cors") or False
    if credentials and "*" in origins:
        f.error("spec.cors.allowOrigins", '"*" cannot be combined with allowCredentials: true')
    max_age = f.integer(raw, "maxAge", "spec.cors")
    return model.Cors(
        allow_origins=origins,
        allow_methods=f.strings(raw, "allowMethods", "spec.cors"),
        allow_headers=f.strings(raw, "allowHeaders", "spec.cors"),
        expose_headers=f.strings(raw, "exposeHeaders", "spec.cors"),
        max_age=max_age,
        allow_credentials=credentials,
    )


def _websocket_only(f: fields.Fields, spec: dict[str, Any], protocol: model.Protocol, key: str) -> str | None:
    value = f.string(spec, key, "spec")
    if value is not None and protocol is not model.Protocol.WEBSOCKET:
        f.error(fields.join("spec", key), f"{key} applies only to WEBSOCKET Apis")
    return value


def _websocket(f: fields.Fields, spec: dict[str, Any], protocol: model.Protocol) -> model.WebSocketLimits | None:
    raw = f.mapping(spec, "websocket", "spec")
    if protocol is not model.Protocol.WEBSOCKET:
        if raw is not None:
            f.error("spec.websocket", "websocket applies only to WEBSOCKET Apis")
        return None
    raw = raw or {}
    limits = model.WebSocketLimits()
    values = {}
    for key, attr in (
        ("maxMessageBytes", "max_message_bytes"),
        ("idleTimeoutSeconds", "idle_timeout_seconds"),
        ("maxConnectionSeconds", "max_connection_seconds"),
    ):
        value = f.integer(raw, key, "spec.websocket")
        if value is not None and value <= 0:
            f.error(fields.join("spec.websocket", key), f"{key} must be positive")
        elif value is not None:
            values[attr] = value
    return dataclasses.replace(limits, **values)
