"""Integrations: checking a route's ``integration`` block and building ``model.Integration``.

Two steps, because stage variables make some values depend on the Stage:
``parse`` checks the structure once per Api (wrong combinations of fields break the Api) and
keeps ``${stageVariables.x}`` templates as written; ``resolve`` substitutes one Stage's
variables and checks what only then becomes known (the final URL, the Service name).
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from propylon_compiler import fields, integration_responses, mapping_expressions, routes, stage_variables
from propylon_config import headers as header_names
from propylon_config import model
from propylon_config.templates import template_error

DEFAULT_TIMEOUT_MS = 29000
TIMEOUT_RANGE = (50, 300000)
TARGETED = (model.IntegrationType.HTTP_PROXY, model.IntegrationType.HTTP, model.IntegrationType.FUNCTION)
MAPPED = (model.IntegrationType.HTTP_PROXY, model.IntegrationType.HTTP)

_MAPPING_KEY = re.compile(r"^(append|overwrite|remove):(?:(header|querystring)\.(.+)|(path))$")
_HEADER_NAME = fields.HEADER_NAME
_QUERY_NAME = re.compile(r"^[^\s&=#]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# What may stand in an upstream request target as written: visible ASCII, no fragment. Anything
# else (a space from a stage variable, a control character) could not be sent as a request
# line, so it is refused here rather than failing every request at run time.
_TARGET_TEXT = re.compile(r"^[\x21-\x22\x24-\x7e]*$")
_STATUS = re.compile(r"^[1-5][0-9][0-9]$")
TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse(f: fields.Fields, raw: dict[str, Any], path: str, api_namespace: str) -> model.Integration | None:
    """Check one ``integration`` block; None (with diagnostics) when it is unusable."""
    before = len(f.reporter.diagnostics)
    type_name = f.string(raw, "type", path)
    if type_name is None and "type" in raw:
        return None  # reported as the wrong type; the rest would only be guesses
    type_name = type_name or model.IntegrationType.HTTP_PROXY.value
    try:
        kind = model.IntegrationType(type_name)
    except ValueError:
        allowed = ", ".join(t.value for t in model.IntegrationType)
        f.error(fields.join(path, "type"), f"unsupported integration type {type_name!r} (expected one of: {allowed})")
        return None

    url = f.string(raw, "url", path)
    service = _service(f, raw, path, api_namespace)
    has_service = "service" in raw
    if kind in TARGETED:
        if url is not None and has_service:
            f.error(path, f"a {kind.value} integration takes one of service or url, not both")
        elif url is None and not has_service:
            f.error(path, f"a {kind.value} integration needs a service or a url")
    else:
        for name in ("service", "url", "path", "method"):
            if name in raw:
                f.error(fields.join(path, name), f"{name} does not apply to a MOCK integration")
    if url is not None and not stage_variables.references(url) and (problem := url_problem(url)):
        f.error(fields.join(path, "url"), problem)

    upstream_path = f.string(raw, "path", path)
    if upstream_path is not None and kind in TARGETED:
        if not has_service:
            f.error(fields.join(path, "path"), "path applies only with service (put the path in the url)")
        elif not upstream_path.startswith("/") and not upstream_path.startswith("${"):
            f.error(fields.join(path, "path"), f"path {upstream_path!r} must start with '/'")
        elif not stage_variables.references(upstream_path) and (problem := path_problem(upstream_path)):
            f.error(fields.join(path, "path"), problem)

    method = f.string(raw, "method", path)
    if method is not None and method not in routes.HTTP_METHODS:
        f.error(
            fields.join(path, "method"),
            f"unsupported method {method!r} (expected one of: {', '.join(routes.HTTP_METHODS)})",
        )

    timeout = f.integer(raw, "timeoutMillis", path)
    if timeout is not None and not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
        f.error(
            fields.join(path, "timeoutMillis"),
            f"timeoutMillis must be between {TIMEOUT_RANGE[0]} and {TIMEOUT_RANGE[1]}",
        )

    payload = f.string(raw, "payloadFormatVersion", path)
    if payload is not None and payload not in ("1.0", "2.0"):
        f.error(
            fields.join(path, "payloadFormatVersion"), f'payloadFormatVersion must be "1.0" or "2.0", not {payload!r}'
        )

    proxy = f.boolean(raw, "proxy", path)
    if proxy is False and kind is not model.IntegrationType.FUNCTION:
        f.error(fields.join(path, "proxy"), f"proxy: false applies only to FUNCTION integrations, not {kind.value}")
    if payload is not None and kind is not model.IntegrationType.FUNCTION:
        f.error(
            fields.join(path, "payloadFormatVersion"),
            f"payloadFormatVersion applies only to FUNCTION integrations, not {kind.value}",
        )

    for name, allowed_types, applies in (
        ("requestParameters", MAPPED, "HTTP_PROXY and HTTP"),
        ("responseParameters", MAPPED, "HTTP_PROXY and HTTP"),
    ):
        if name in raw and kind not in allowed_types:
            f.error(fields.join(path, name), f"{name} applies only to {applies} integrations, not {kind.value}")
    custom = integration_responses.applies(kind, proxy)
    if "requestTemplates" in raw and not custom:
        f.error(
            fields.join(path, "requestTemplates"),
            f"requestTemplates apply only to HTTP and FUNCTION (proxy: false) integrations, not {kind.value}",
        )
    request_parameters = _mappings(f, raw, "requestParameters", path, response=False)
    response_parameters = _response_mappings(f, raw, path)
    templates = f.string_map(raw, "requestTemplates", path)
    for content_type, text in templates:
        if (problem := template_error(text)) is not None:
            where = fields.join(fields.join(path, "requestTemplates"), content_type)
            f.error(where, f"template {problem}")
    # passthroughBehavior is not checked against the type: the CRD defaults it on every integration.
    passthrough = _passthrough(f, raw, path)
    responses = integration_responses.parse(f, raw, path, kind, proxy)

    mock = _mock(f, raw, path)
    if kind is model.IntegrationType.MOCK and mock is None and "mock" not in raw:
        f.error(path, "a MOCK integration needs mock (statusCode, headers, body)")
    elif kind is not model.IntegrationType.MOCK and "mock" in raw:
        f.error(fields.join(path, "mock"), f"mock applies only to MOCK integrations, not {kind.value}")

    if len(f.reporter.diagnostics) != before:
        return None
    return model.Integration(
        type=kind,
        url=url if kind in TARGETED else None,
        service=service if kind in TARGETED else None,
        path=upstream_path if kind in TARGETED else None,
        method=method if kind in TARGETED else None,
        timeout_ms=timeout if timeout is not None else DEFAULT_TIMEOUT_MS,
        payload_format_version=payload or "2.0",
        proxy=proxy if proxy is not None and kind is model.IntegrationType.FUNCTION else True,
        request_parameters=request_parameters if kind in MAPPED else (),
        response_parameters=response_parameters if kind in MAPPED else (),
        request_templates=templates if custom else (),
        responses=responses,
        passthrough_behavior=passthrough,
        mock=mock if kind is model.IntegrationType.MOCK else None,
    )


def resolve(
    integration: model.Integration, variables: Mapping[str, str]
) -> tuple[model.Integration, list[tuple[str, str]]]:
    """Substitute one Stage's variables; returns the result and (field suffix, problem) pairs.

    A field suffix is relative to the integration ("url", "service.name", ...). Missing
    variables are reported as ``variable:<name>`` so the caller can word them for the Stage.
    """
    problems: list[tuple[str, str]] = []

    def sub(text: str, where: str) -> str:
        result, missing = stage_variables.substitute(text, variables)
        problems.extend((where, f"variable:{name}") for name in missing)
        return result

    changes: dict[str, Any] = {}
    if integration.url is not None and stage_variables.references(integration.url):
        url = sub(integration.url, "url")
        if not any(w == "url" for w, _ in problems) and (problem := url_problem(url)):
            problems.append(("url", problem))
        changes["url"] = url
    if integration.path is not None and stage_variables.references(integration.path):
        changes["path"] = sub(integration.path, "path")
        if not changes["path"].startswith("/") and not problems:
            problems.append(("path", f"path {changes['path']!r} must start with '/'"))
        elif not problems and (problem := path_problem(changes["path"])):
            problems.append(("path", problem))
    if integration.service is not None and stage_variables.references(integration.service.name):
        name = sub(integration.service.name, "service.name")
        if not any(w == "service.name" for w, _ in problems) and not _DNS_LABEL.match(name):
            problems.append(("service.name", f"{name!r} is not a valid Service name"))
        changes["service"] = dataclasses.replace(integration.service, name=name)
    if any(stage_variables.references(m.value) for m in integration.request_parameters):
        changes["request_parameters"] = tuple(
            dataclasses.replace(m, value=sub(m.value, f'requestParameters["{mapping_key(m)}"]'))
            for m in integration.request_parameters
        )
    return (dataclasses.replace(integration, **changes) if changes else integration), problems


def mapping_key(mapping: model.ParameterMapping) -> str:
    target = (
        mapping.target.value if mapping.target is model.MappingTarget.PATH else f"{mapping.target.value}.{mapping.name}"
    )
    return f"{mapping.action.value}:{target}"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an upstream base URL, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"invalid url {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"invalid url {url!r}: expected an absolute http:// or https:// URL"
    if "@" in parts.netloc:
        # It would go out as the Host header; credentials belong in requestParameters.
        return "invalid url: it must not carry user information (user:password@); set an Authorization header instead"
    if not _TARGET_TEXT.match(url):
        return f"invalid url {url!r}: only visible ASCII without '#' can be sent; percent-encode the rest"
    if (problem := address_problem(parts)) is not None:
        return f"invalid url {url!r}: {problem}"
    return None


def address_problem(parts: urllib.parse.SplitResult) -> str | None:
    """Why a URL's host or port cannot be connected to, or None: what the proxy would otherwise
    find out on every request (``Port out of range``, an empty or over-long host label)."""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be a number 1..65535"
    try:
        (parts.hostname or "").encode("idna")
    except UnicodeError:
        return "the host has an empty label or one over 63 characters"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be an upstream path template, or None."""
    if not _TARGET_TEXT.match(path):
        return f"path {path!r} can hold only visible ASCII without '#'; percent-encode the rest"
    return None


def _service(f: fields.Fields, raw: dict[str, Any], path: str, api_namespace: str) -> model.ServiceTarget | None:
    spec = f.mapping(raw, "service", path)
    if spec is None:
        return None
    where = fields.join(path, "service")
    name = f.string(spec, "name", where)
    port = f.integer(spec, "port", where)
    namespace = f.string(spec, "namespace", where) or api_namespace
    if name is None:
        if "name" not in spec:
            f.error(fields.join(where, "name"), "missing Service name")
    elif not stage_variables.references(name) and not _DNS_LABEL.match(name):
        f.error(fields.join(where, "name"), f"{name!r} is not a valid Service name")
    if port is None and "port" not in spec:
        f.error(fields.join(where, "port"), "missing Service port")
    elif port is not None and not 1 <= port <= 65535:
        f.error(fields.join(where, "port"), f"port {port} is out of range 1..65535")
    if name is None or port is None:
        return None
    return model.ServiceTarget(namespace=namespace, name=name, port=port)


def _mappings(
    f: fields.Fields, raw: dict[str, Any], key: str, path: str, *, response: bool
) -> tuple[model.ParameterMapping, ...]:
    return _entries(f, f.mapping(raw, key, path) or {}, fields.join(path, key), response=response)


def _entries(
    f: fields.Fields, spec: dict[Any, Any], where: str, *, response: bool
) -> tuple[model.ParameterMapping, ...]:
    out: list[model.ParameterMapping] = []
    for name, value in spec.items():
        here = fields.join(where, str(name))
        mapping = _mapping(str(name), value, response=response)
        if isinstance(mapping, str):
            f.error(here, mapping)
        else:
            out.append(mapping)
    return tuple(out)


def _mapping(key: str, value: Any, *, response: bool) -> model.ParameterMapping | str:
    """One mapping entry, or the problem with it."""
    match = _MAPPING_KEY.match(key)
    if match is None:
        return (
            f"invalid mapping key {key!r}: expected append:, overwrite: or remove: "
            "followed by header.NAME, querystring.NAME or path"
        )
    action = model.MappingAction(match.group(1))
    target = model.MappingTarget(match.group(2) or match.group(4))
    name = match.group(3) or ""
    if response and target is not model.MappingTarget.HEADER:
        return f"invalid mapping key {key!r}: a response mapping can only change headers"
    if target is model.MappingTarget.PATH and action is not model.MappingAction.OVERWRITE:
        return f"invalid mapping key {key!r}: the path can only be overwritten"
    if target is model.MappingTarget.HEADER and not _HEADER_NAME.match(name):
        return f"invalid mapping key {key!r}: {name!r} is not a valid header name"
    if target is model.MappingTarget.HEADER and header_names.is_gateway_owned(name):
        return (
            f"invalid mapping key {key!r}: {name} is set only by the gateway (Host, X-Request-Id, traceparent, "
            "Forwarded, X-Real-IP, every X-Forwarded-*, x-propylon-error-type, x-propylon-cache and framing headers, "
            "under any spelling with '_' for '-')"
        )
    if target is model.MappingTarget.QUERYSTRING and not _QUERY_NAME.match(name):
        return f"invalid mapping key {key!r}: {name!r} is not a valid query parameter name"
    if not isinstance(value, str):
        return f"the value of {key!r} must be a string"
    if action is model.MappingAction.REMOVE and value != "":
        return f'a remove: mapping takes "" as its value, not {value!r}'
    if action is not model.MappingAction.REMOVE and value == "":
        return f"the value of {key!r} is empty (use a quoted literal such as \"'text'\" or an expression)"
    wrong = mapping_expressions.problem(value, response=response)
    if wrong is not None:
        return wrong
    return model.ParameterMapping(action=action, target=target, name=name, value=value)


def _response_mappings(f: fields.Fields, raw: dict[str, Any], path: str) -> tuple[model.ResponseMappings, ...]:
    spec = f.mapping(raw, "responseParameters", path)
    out: list[model.ResponseMappings] = []
    where = fields.join(path, "responseParameters")
    for status, block in (spec or {}).items():
        status_text = str(status)
        if not _STATUS.match(status_text):
            f.error(fields.join(where, status_text), f"{status_text!r} is not an HTTP status code (100..599)")
            continue
        if not isinstance(block, dict):
            f.error(fields.join(where, status_text), "expected a mapping of header mappings")
            continue
        mappings = _entries(f, block, fields.join(where, status_text), response=True)
        out.append(model.ResponseMappings(status_code=status_text, mappings=mappings))
    return tuple(sorted(out, key=lambda m: m.status_code))


def _passthrough(f: fields.Fields, raw: dict[str, Any], path: str) -> model.PassthroughBehavior:
    value = f.string(raw, "passthroughBehavior", path)
    if value is None:
        return model.PassthroughBehavior.WHEN_NO_MATCH
    try:
        return model.PassthroughBehavior(value)
    except ValueError:
        allowed = ", ".join(p.value for p in model.PassthroughBehavior)
        f.error(
            fields.join(path, "passthroughBehavior"),
            f"unsupported passthroughBehavior {value!r} (expected one of: {allowed})",
        )
        return model.PassthroughBehavior.WHEN_NO_MATCH


def _mock(f: fields.Fields, raw: dict[str, Any], path: str) -> model.Mock | None:
    spec = f.mapping(raw, "mock", path)
    if spec is None:
        return None
    where = fields.join(path, "mock")
    status = f.integer(spec, "statusCode", where)
    if status is not None and not 200 <= status <= 599:
        # A 1xx is an interim answer: no client takes it as the response.
        f.error(fields.join(where, "statusCode"), f"statusCode {status} is not a final HTTP status code (200..599)")
    body = f.string(spec, "body", where)
    headers = f.header_map(spec, "headers", where)
    return model.Mock(status_code=status if status is not None else 200, headers=headers, body=body or "")
