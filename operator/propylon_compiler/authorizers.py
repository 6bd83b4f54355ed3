"""Authorizers: checking each Authorizer and building ``model.Authorizer``.

Runs before the Apis, because a route that names a broken Authorizer must know it is broken
(it then refuses every request with 500 AUTHORIZER_CONFIGURATION_ERROR). What the CRD schema
and its CEL twins already refuse (``none``, HS* without ``secretRef``, HS* mixed with others)
is checked again here only where a manifest could slip past the schema; the ``Reporter`` keeps
one diagnostic per field. Secrets: an HS* shared secret is read from its Secret and sealed
(``sealing``) under the install's sealing secret; without one (``render``, ``validate``) it is
left out entirely. Its value never appears in a diagnostic. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import urllib.parse
from typing import Any

from propylon_compiler import apis, backends, fields, integrations, objects, sealing
from propylon_config import model

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SHARED_SECRET = ("HS256", "HS384", "HS512")
DEFAULT_IDENTITY_SOURCE = ("$request.header.Authorization",)
SKEW_RANGE = (0, 300)
TTL_RANGE = (0, 3600)
TIMEOUT_RANGE = (50, 300000)
_TOKEN_SOURCE = re.compile(r"^\$request\.(header|querystring)\.[^ ]+$")
# What a REQUEST/TOKEN authorizer's identity source may name: the forms the gateway reads
# (propylon_proxy.authorizers.functions.identity). ``$context`` names only what exists before
# any authorizer ran (what a mapping template's $context has, without authorizer.*); anything
# else (``$request.body.x``, ``$context.authorizer.x``) could never be found, so every request
# would be a 401 without the function being asked: refused here instead.
CONTEXT_SOURCES = (
    "accountId",
    "apiId",
    "domainName",
    "domainPrefix",
    "httpMethod",
    "identity.sourceIp",
    "identity.userAgent",
    "path",
    "protocol",
    "requestId",
    "requestTime",
    "requestTimeEpoch",
    "resourcePath",
    "stage",
)
_FUNCTION_SOURCE = re.compile(
    r"^(?:(?:\$request|method\.request)\.(?:header|querystring|path)\.[^ ]+"
    r"|\$?stageVariables\.[A-Za-z0-9_]+"
    r"|\$context\.(?:" + "|".join(re.escape(name) for name in CONTEXT_SOURCES) + r"))$"
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Compiled:
    authorizers: tuple[model.Authorizer, ...]  # usable ones, sorted by id
    targets: frozenset[model.ServiceTarget]  # function Services, for the endpoints phase


def compile_all(
    index: objects.Index,
    reporter: objects.Reporter,
    known: backends.Backends,
    *,
    sealing_secret: bytes | None,
    allow_cross_namespace: bool,
) -> Compiled:
    out: list[model.Authorizer] = []
    targets: set[model.ServiceTarget] = set()
    for obj in index.of_kind("Authorizer"):
        compiled = _compile(obj, index, reporter, known, sealing_secret, allow_cross_namespace)
        if compiled is None or reporter.is_broken(obj):
            continue
        out.append(compiled)
        if compiled.function is not None and compiled.function.service is not None:
            targets.add(compiled.function.service)
    return Compiled(authorizers=tuple(sorted(out, key=lambda a: a.id)), targets=frozenset(targets))


def _compile(
    obj: objects.Object,
    index: objects.Index,
    reporter: objects.Reporter,
    known: backends.Backends,
    sealing_secret: bytes | None,
    allow_cross_namespace: bool,
) -> model.Authorizer | None:
    f = fields.Fields(obj, reporter)
    spec = obj.spec
    type_name = f.string(spec, "type", "spec") or "JWT"
    try:
        kind = model.AuthorizerType(type_name)
    except ValueError:
        f.error("spec.type", f"unsupported authorizer type {type_name!r} (expected JWT, REQUEST or TOKEN)")
        return None
    identity = f.strings(spec, "identitySource", "spec") or DEFAULT_IDENTITY_SOURCE
    jwt_settings = None
    function = None
    if kind is model.AuthorizerType.JWT:
        if not _TOKEN_SOURCE.match(identity[0]):
            f.error(
                "spec.identitySource[0]",
                f"a JWT authorizer reads its token from a header or query parameter, not {identity[0]!r}",
            )
        if "function" in spec:
            f.error("spec.function", "function applies only to REQUEST and TOKEN authorizers")
        raw = f.mapping(spec, "jwt", "spec")
        if raw is None:
            if "jwt" not in spec:
                f.error("spec.jwt", "a JWT authorizer needs jwt")
            return None
        jwt_settings = _jwt(f, raw, index, sealing_secret)
    else:
        if "jwt" in spec:
            f.error("spec.jwt", "jwt applies only to JWT authorizers")
        for i, source in enumerate(identity):
            if not _FUNCTION_SOURCE.match(source):
                f.error(
                    f"spec.identitySource[{i}]",
                    f"an identity source is $request.header|querystring|path.<name>, $stageVariables.<name> "
                    f"or $context.<{'|'.join(CONTEXT_SOURCES)}>, not {source!r}",
                )
        raw = f.mapping(spec, "function", "spec")
        if raw is None:
            if "function" not in spec:
                f.error("spec.function", "REQUEST and TOKEN authorizers need function")
            return None
        function = _function(f, raw, kind, known, allow_cross_namespace)
    if reporter.is_broken(obj):
        return None
    return model.Authorizer(
        id=obj.id,
        namespace=obj.namespace,
        name=obj.name,
        type=kind,
        identity_source=identity,
        jwt=jwt_settings,
        function=function,
        source=apis.source(obj),
    )


def _jwt(
    f: fields.Fields, raw: dict[str, Any], index: objects.Index, sealing_secret: bytes | None
) -> model.JwtSettings | None:
    where = "spec.jwt"
    issuer = f.string(raw, "issuer", where)
    if issuer is None:
        if "issuer" not in raw:
            f.error(fields.join(where, "issuer"), "missing issuer")
        return None
    jwks_uri = f.string(raw, "jwksUri", where)
    if jwks_uri is not None:
        _check_url(f, fields.join(where, "jwksUri"), jwks_uri)
    algorithms = f.strings(raw, "algorithms", where)
    secret_ref = f.mapping(raw, "secretRef", where)
    for i, name in enumerate(algorithms):
        if name.lower() == "none":
            f.error(f"{where}.algorithms[{i}]", 'the "none" algorithm is never accepted')
        elif name not in ASYMMETRIC + SHARED_SECRET:
            f.error(f"{where}.algorithms[{i}]", f"unsupported algorithm {name!r}")
    shared = [a for a in algorithms if a in SHARED_SECRET]
    if secret_ref is None and shared:
        f.error(fields.join(where, "algorithms"), "HS256, HS384 and HS512 need secretRef")
    if secret_ref is not None and (not algorithms or len(shared) != len(algorithms)):
        f.error(
            fields.join(where, "algorithms"),
            "with secretRef, algorithms must be set and contain only HS256, HS384 or HS512",
        )
    if secret_ref is not None and jwks_uri is not None:
        f.error(fields.join(where, "jwksUri"), "secretRef and jwksUri cannot both be set")
    if secret_ref is None and jwks_uri is None:
        _check_url(f, fields.join(where, "issuer"), issuer, discovering=True)
    skew = f.integer(raw, "clockSkewSeconds", where)
    if skew is not None and not SKEW_RANGE[0] <= skew <= SKEW_RANGE[1]:
        f.error(fields.join(where, "clockSkewSeconds"), "clockSkewSeconds must be between 0 and 300")
    ref = None
    sealed = ""
    if secret_ref is not None:
        ref, value = _secret(f, secret_ref, fields.join(where, "secretRef"), index)
        if value is not None and sealing_secret is not None:
            sealed = sealing.seal(sealing_secret, value, f.obj.id)
    return model.JwtSettings(
        issuer=issuer,
        audience=f.strings(raw, "audience", where),
        jwks_uri=jwks_uri,
        algorithms=algorithms or (ASYMMETRIC if secret_ref is None else ()),
        secret_ref=ref,
        sealed_secret=sealed,
        clock_skew_seconds=60 if skew is None else skew,
    )


def _check_url(f: fields.Fields, path: str, url: str, *, discovering: bool = False) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        if discovering:
            f.error(path, f"the issuer {url!r} is not an http(s) URL, so its keys cannot be discovered: set jwksUri")
        else:
            f.error(path, f"{url!r} is not an http(s) URL")
    elif parsed.username is not None or parsed.password is not None:
        f.error(path, "a URL must not carry user:password@ (credentials belong in Secrets)")
    elif (problem := integrations.address_problem(parsed)) is not None:
        f.error(path, f"{url!r}: {problem}")


def _secret(
    f: fields.Fields, raw: dict[str, Any], where: str, index: objects.Index
) -> tuple[model.SecretRef | None, bytes | None]:
    name = f.string(raw, "name", where)
    key = f.string(raw, "key", where)
    if name is None or key is None:
        if "name" not in raw or "key" not in raw:
            f.error(where, "a secretRef needs name and key")
        return None, None
    ref = model.SecretRef(namespace=f.obj.namespace, name=name, key=key)
    secret = index.get("Secret", f.obj.namespace, name)
    if secret is None:
        f.error(fields.join(where, "name"), f"Secret {f.obj.namespace}/{name} not found", reason="MissingReference")
        return ref, None
    value = secret_value(secret, key)
    if value is None:
        f.error(
            fields.join(where, "key"),
            f"Secret {f.obj.namespace}/{name} has no key {key!r} in data or stringData",
            reason="MissingReference",
        )
        return ref, None
    if not value:
        f.error(fields.join(where, "key"), f"key {key!r} of Secret {f.obj.namespace}/{name} is empty")
        return ref, None
    return ref, value


def secret_value(secret: objects.Object, key: str) -> bytes | None:
    """A Secret's value under ``key``: ``stringData`` wins over ``data`` (base64), as the API
    server merges them. None when absent or not decodable."""
    string_data = secret.body.get("stringData")
    if isinstance(string_data, dict) and isinstance(string_data.get(key), str):
        return str(string_data[key]).encode()
    data = secret.body.get("data")
    if isinstance(data, dict) and isinstance(data.get(key), str):
        try:
            return base64.b64decode(str(data[key]), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _function(
    f: fields.Fields,
    raw: dict[str, Any],
    kind: model.AuthorizerType,
    known: backends.Backends,
    allow_cross_namespace: bool,
) -> model.AuthorizerFunction | None:
    where = "spec.function"
    url = f.string(raw, "url", where)
    service = _service(f, raw, where, known, allow_cross_namespace)
    if (url is None) == ("service" not in raw):
        f.error(where, "exactly one of service or url must be set")
    if url is not None:
        _check_url(f, fields.join(where, "url"), url)
    version = f.string(raw, "payloadFormatVersion", where) or "1.0"
    if version not in ("1.0", "2.0"):
        f.error(fields.join(where, "payloadFormatVersion"), f"unsupported payloadFormatVersion {version!r}")
    simple = f.boolean(raw, "enableSimpleResponses", where) or False
    if simple and version != "2.0":
        f.error(fields.join(where, "enableSimpleResponses"), 'enableSimpleResponses needs payloadFormatVersion "2.0"')
    ttl = f.integer(raw, "resultTtlSeconds", where)
    if ttl is not None and not TTL_RANGE[0] <= ttl <= TTL_RANGE[1]:
        f.error(fields.join(where, "resultTtlSeconds"), "resultTtlSeconds must be between 0 and 3600")
    timeout = f.integer(raw, "timeoutMillis", where)
    if timeout is not None and not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
        f.error(fields.join(where, "timeoutMillis"), "timeoutMillis must be between 50 and 300000")
    expression = f.string(raw, "identityValidationExpression", where)
    if expression is not None:
        if kind is not model.AuthorizerType.TOKEN:
            f.error(
                fields.join(where, "identityValidationExpression"),
                "identityValidationExpression applies only to TOKEN authorizers",
            )
        try:
            re.compile(expression)
        except re.error as exc:
            f.error(fields.join(where, "identityValidationExpression"), f"not a valid regular expression: {exc}")
    return model.AuthorizerFunction(
        service=service,
        url=url,
        payload_format_version=version,
        enable_simple_responses=simple,
        result_ttl_seconds=300 if ttl is None else ttl,
        identity_validation_expression=expression,
        timeout_ms=10000 if timeout is None else timeout,
    )


def _service(
    f: fields.Fields, raw: dict[str, Any], where: str, known: backends.Backends, allow_cross_namespace: bool
) -> model.ServiceTarget | None:
    spec = f.mapping(raw, "service", where)
    if spec is None:
        return None
    where = fields.join(where, "service")
    name = f.string(spec, "name", where)
    port = f.integer(spec, "port", where)
    namespace = f.string(spec, "namespace", where) or f.obj.namespace
    if name is None or port is None:
        if "name" not in spec or "port" not in spec:
            f.error(where, "a service needs name and port")
        return None
    if not _DNS_LABEL.match(name):
        f.error(fields.join(where, "name"), f"{name!r} is not a valid Service name")
        return None
    target = model.ServiceTarget(namespace=namespace, name=name, port=port)
    if not (allow_cross_namespace or known.allows(f.obj.namespace, namespace)):
        f.error(
            fields.join(where, "namespace"),
            f"calling a function in namespace {namespace} is not allowed: it has no Service labelled "
            f"{backends.ALLOW_FROM_LABEL}: {f.obj.namespace}",
            reason="RefNotPermitted",
        )
    elif not known.exists(target):
        f.error(fields.join(where, "name"), f"Service {namespace}/{name} not found", reason="MissingReference")
    elif known.missing_port(target):
        f.error(fields.join(where, "port"), f"Service {namespace}/{name} has no port {port}", reason="MissingReference")
    return target
