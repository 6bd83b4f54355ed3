"""Checking and defaulting propylon.dev documents against the CRDs in crds/.

The CRD YAMLs are the one description of each resource's shape; nothing here repeats a field.
Each CRD's structural ``openAPIV3Schema`` is turned, once, into a JSON Schema for the
``jsonschema`` package (unknown fields forbidden wherever a schema lists ``properties``), and
its problems come back as diagnostics worded like the API server's. What JSON Schema cannot say
is walked here: ``x-kubernetes-list-type`` uniqueness, and the CEL rules, which run as their
Python twins from ``schema_rules`` (no CEL interpreter). Defaults are applied as the API server
applies them, and validation sees the defaulted body, as it does in the cluster.

Reads only the CRD files that ship with the package; otherwise pure.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import yaml

from propylon_compiler import diagnostics, manifests, schema_rules

GROUP = "propylon.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KINDS = ("Api", "Stage", "UsagePlan", "Authorizer")

FieldPath = tuple[str | int, ...]

# The JSON Schema keywords that mean the same in a structural schema; the rest are translated.
_COPIED = (
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "required",
)
# Errors after which a value is not what the CEL rules above it were written for; those rules
# are skipped (the API server would run them and add noise such as "mock applies only to MOCK
# integrations" for type LAMBDA).
_BLOCKING = frozenset({"type", "enum"})
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NOT_A_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_NOT_A_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)


# --- loading -----------------------------------------------------------------------------------


def crd_directory() -> Traversable:
    """Where the CRD YAMLs are: inside the installed package, or crds/ of a source checkout."""
    packaged = importlib.resources.files("propylon_compiler").joinpath("crds")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "crds"


@functools.cache
def crds() -> dict[str, dict[str, Any]]:
    """Each kind's CustomResourceDefinition, as parsed from its YAML file."""
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(crd_directory().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            crd = yaml.safe_load(entry.read_text(encoding="utf-8"))
            found[crd["spec"]["names"]["kind"]] = crd
    missing = set(KINDS) - set(found)
    if missing:
        raise RuntimeError(f"CRD files for {sorted(missing)} are missing from {crd_directory()}")
    return found


def openapi_schema(kind: str) -> dict[str, Any]:
    """The structural schema of ``kind``'s served version."""
    (version,) = (v for v in crds()[kind]["spec"]["versions"] if v["name"] == VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = to_json_schema(openapi_schema(kind))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@functools.cache
def _fast_validator(kind: str) -> jsonschema_rs.Draft7Validator:
    """The same JSON Schema in jsonschema-rs, asked only "valid or not?". Most documents are
    valid, and for those the pure-Python walk above is all cost: it made ``compile`` of 1,000
    Apis x 10 routes take 2.6 s, 1.5 s of it in ``iter_errors`` (bench/scale.py). Only when this
    says "invalid" does the Python validator run, for the API-server-worded messages, so a
    disagreement between the two can only cost time, never hide a problem: the Python one has
    the last word on every document it sees, and a document skips it only when the (stricter:
    its ``$`` does not match before a final newline) Rust one accepts it."""
    return jsonschema_rs.Draft7Validator(to_json_schema(openapi_schema(kind)))


def _surely_valid(kind: str, body: dict[str, Any]) -> bool:
    """Whether jsonschema-rs accepts ``body``; False also when it cannot read it (YAML allows
    keys that are not strings, JSON does not): then the Python validator decides."""
    try:
        return bool(_fast_validator(kind).is_valid(body))
    except (ValueError, TypeError, OverflowError):
        return False


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """Translate one structural schema node (and everything under it) to JSON Schema draft 7."""
    out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
    nullable = bool(node.get("nullable"))
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if nullable else node["type"]
    if nullable and "enum" in out:
        out["enum"] = [*out["enum"], None]
    # OpenAPI 3.0 writes exclusive bounds as booleans next to minimum/maximum.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) and bound in out:
            out[exclusive] = out.pop(bound)
    if "properties" in node:
        out["properties"] = {name: to_json_schema(sub) for name, sub in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    return out


# --- public entry points -----------------------------------------------------------------------


def is_propylon(document: manifests.Document) -> bool:
    """Whether this module has a say on the document: apiVersion in our group, or one of our kinds."""
    return document.api_version.split("/")[0] == GROUP or (not document.api_version and document.kind in KINDS)


def validate(document: manifests.Document) -> list[diagnostics.Diagnostic]:
    """Schema problems of one propylon.dev document, in document order; [] when it conforms.

    Documents of other groups (Secrets, Services, EndpointSlices) return []: the compiler checks
    what it needs of those itself.
    """
    return checked(document)[0]


def checked(document: manifests.Document) -> tuple[list[diagnostics.Diagnostic], dict[str, Any]]:
    """``validate``'s problems and the defaulted body they were found in (``with_defaults``),
    so the compiler defaults each document once instead of twice (one deep copy and defaults
    walk less per document: 0.3 s of the 1,000 x 10 compile)."""
    body = with_defaults(document)
    if not is_propylon(document):
        return [], body
    report = _Report(document)
    if not _check_identity(document, report):
        return report.diagnostics, body
    kind = document.kind
    blocked: list[FieldPath] = []
    errors = () if _surely_valid(kind, body) else _validator(kind).iter_errors(body)
    for error in errors:
        path = tuple(error.absolute_path)
        if error.validator in _BLOCKING:
            blocked.append(path)
        for where, message in _explain(error):
            report.add((*path, *where), message)
    schema = openapi_schema(kind)
    for node, value, path in _walk(schema, body, ()):
        _check_list_type(node, value, path, report)
        if not any(bad[: len(path)] == path for bad in blocked):
            _check_rules(node, value, path, report)
    return report.diagnostics, body


def with_defaults(document: manifests.Document) -> dict[str, Any]:
    """A deep copy of the body with the CRD's defaults filled in, as the API server would.

    Defaults apply to fields of objects that are present (an absent ``cache`` stays absent, a
    present one gets ``ttlSeconds: 300``), to each item of a list of objects, and to each value
    of a map. A defaulted object is itself defaulted further. Non-propylon documents come back
    unchanged (copied).
    """
    body = copy.deepcopy(document.body)
    if document.kind in KINDS and document.api_version == API_VERSION:
        _apply_defaults(openapi_schema(document.kind), body)
    return body


# --- defaults ----------------------------------------------------------------------------------


def _apply_defaults(node: dict[str, Any], value: Any) -> None:
    """Fill in defaults below ``value`` in place.

    Like the API server, a null where null is not allowed counts as absent: it gets the default,
    or is dropped (so ``cors:`` left empty in YAML means no cors, not a type error).
    """
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value and value[name] is None and not sub.get("nullable"):
                del value[name]
            if "default" in sub and name not in value:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _apply_defaults(sub, value[name])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and "properties" not in node:
            for key in [k for k, v in value.items() if v is None and not extra.get("nullable")]:
                del value[key]
            for item in value.values():
                _apply_defaults(extra, item)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            _apply_defaults(node["items"], item)


# --- walking -----------------------------------------------------------------------------------


def _walk(node: dict[str, Any], value: Any, path: FieldPath) -> Iterator[tuple[dict[str, Any], Any, FieldPath]]:
    """Every (schema node, value, path) of the document that its schema describes."""
    yield node, value, path
    if isinstance(value, dict):
        props = node.get("properties", {})
        for name, sub in props.items():
            if name in value:
                yield from _walk(sub, value[name], (*path, name))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and not props:
            for key, item in value.items():
                yield from _walk(extra, item, (*path, key))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            yield from _walk(node["items"], item, (*path, index))


def _check_list_type(node: dict[str, Any], value: Any, path: FieldPath, report: _Report) -> None:
    """``x-kubernetes-list-type: set`` items and ``map`` keys must be unique, as the API server checks."""
    list_type = node.get("x-kubernetes-list-type")
    if not isinstance(value, list) or list_type not in ("set", "map"):
        return
    keys = node.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for index, item in enumerate(value):
        if list_type == "map":
            if not isinstance(item, dict) or any(k not in item for k in keys):
                continue  # the schema check reports the missing key
            identity: Any = {k: item[k] for k in keys}
        else:
            identity = item
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        if text in seen:
            report.add((*path, index), f"Duplicate value: {text}")
        seen.add(text)


def _check_rules(node: dict[str, Any], value: Any, path: FieldPath, report: _Report) -> None:
    for rule in node.get("x-kubernetes-validations", ()):
        twin = schema_rules.TWINS.get(rule["message"])
        if twin is None:
            raise RuntimeError(f"CEL rule without a Python twin: {rule['message']!r}")
        try:
            ok = twin.check(value)
        except (KeyError, TypeError, AttributeError, IndexError):
            continue  # CEL would fail with "no such key"; the schema check has reported why
        if not ok:
            places = _located(twin, value)
            if not places:
                places = [tuple(p for p in rule.get("fieldPath", "").split(".") if p)]
            for place in places:
                report.add((*path, *place), rule["message"])


def _located(twin: schema_rules.Twin, value: Any) -> list[schema_rules.Place]:
    """The twin's own account of where its rule is broken (none when it cannot tell)."""
    if twin.locate is None:
        return []
    try:
        return twin.locate(value)
    except (KeyError, TypeError, AttributeError, IndexError):
        return []


# --- messages ----------------------------------------------------------------------------------


def _explain(error: jsonschema.ValidationError) -> list[tuple[FieldPath, str]]:
    """(relative path, message) pairs for one jsonschema error, worded like the API server."""
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    shown = _show(instance)
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        return [((name,), f'unknown field "{name}"') for name in instance if name not in known]
    if keyword == "required" and isinstance(instance, dict):
        return [((name,), "Required value") for name in expected if name not in instance]
    if keyword == "type":
        wanted = [t for t in (expected if isinstance(expected, list) else [expected]) if t != "null"]
        return [((), f"Invalid value: {shown}: must be of type {' or '.join(wanted)}")]
    if keyword == "enum":
        allowed = ", ".join(json.dumps(v) for v in expected if v is not None)
        return [((), f"Unsupported value: {shown}: supported values: {allowed}")]
    messages = {
        "minimum": f"should be greater than or equal to {expected}",
        "maximum": f"should be less than or equal to {expected}",
        "exclusiveMinimum": f"should be greater than {expected}",
        "exclusiveMaximum": f"should be less than {expected}",
        "minLength": f"should be at least {expected} chars long",
        "pattern": f"should match '{expected}'",
        "minItems": f"should have at least {expected} items",
        "minProperties": f"should have at least {expected} properties",
        "multipleOf": f"should be a multiple of {expected}",
    }
    if keyword in messages:
        return [((), f"Invalid value: {shown}: {messages[keyword]}")]
    if keyword == "maxLength":
        return [((), f"Too long: may not be more than {expected} characters")]
    if keyword == "maxItems":
        return [((), f"Too many: {len(instance)}: must have at most {expected} items")]
    if keyword == "maxProperties":
        return [((), f"Too many: {len(instance)}: must have at most {expected} properties")]
    return [((), error.message)]


def _show(value: Any) -> str:
    """A value as the API server quotes it: JSON for scalars, the type's name for the rest."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + '..."'


def _check_identity(document: manifests.Document, report: _Report) -> bool:
    """apiVersion, kind and metadata the API server would refuse; False when the schema cannot apply."""
    kind, api_version = document.kind, document.api_version
    if kind not in KINDS:
        supported = ", ".join(json.dumps(k) for k in KINDS)
        report.add(("kind",), f"Unsupported value: {json.dumps(kind)}: supported values: {supported}")
        return False
    if not api_version:
        report.add(("apiVersion",), f"Required value: use {json.dumps(API_VERSION)}")
        return False
    if api_version != API_VERSION:
        supported = json.dumps(API_VERSION)
        report.add(("apiVersion",), f"Unsupported value: {json.dumps(api_version)}: supported values: {supported}")
        return False
    metadata = document.body.get("metadata")
    if metadata is None:
        report.add(("metadata", "name"), "Required value: name is required")
        return False
    if not isinstance(metadata, dict):
        report.add(("metadata",), f"Invalid value: {_show(metadata)}: must be of type object")
        return False
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not name:
        report.add(("metadata", "name"), "Required value: name is required")
    elif not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        report.add(("metadata", "name"), f"Invalid value: {_show(name)}: {_NOT_A_SUBDOMAIN}")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.match(namespace)):
        report.add(("metadata", "namespace"), f"Invalid value: {_show(namespace)}: {_NOT_A_LABEL}")
    return True


class _Report:
    """Diagnostics for one document, kept in document order whatever order they are found in."""

    def __init__(self, document: manifests.Document) -> None:
        self._document = document
        self._found: list[tuple[FieldPath, str]] = []

    def add(self, path: FieldPath, message: str) -> None:
        if (path, message) not in self._found:
            self._found.append((path, message))

    @property
    def diagnostics(self) -> list[diagnostics.Diagnostic]:
        doc = self._document
        known = doc.kind in KINDS
        ordered = sorted(self._found, key=lambda found: _path_order(doc.body, found[0]))
        return [
            diagnostics.Diagnostic(
                origin=doc.origin,
                kind=doc.kind,
                namespace=doc.namespace,
                name=doc.name,
                field=diagnostics.field_path(_with_map_keys(openapi_schema(doc.kind), path) if known else path),
                message=message,
            )
            for path, message in ordered
        ]


def _with_map_keys(schema: dict[str, Any], path: FieldPath) -> FieldPath:
    """Quote map keys that are not plain words, ``routeSettings["GET /users"]``, as the compiler does.

    A key such as a route key holds spaces, dots and slashes; dotted, the path would be ambiguous.
    """
    out: list[str | int] = []
    node: dict[str, Any] | None = schema
    for part in path:
        if node is None:
            out.append(part)
            continue
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and "properties" not in node:
            if isinstance(part, str) and not _PLAIN_KEY.match(part) and out and isinstance(out[-1], str):
                out[-1] = f'{out[-1]}["{part}"]'
            else:
                out.append(part)
            node = extra
        elif isinstance(part, int):
            out.append(part)
            node = node.get("items")
        else:
            out.append(part)
            node = node.get("properties", {}).get(part)
    return tuple(out)


def _path_order(body: Any, path: FieldPath) -> tuple[int, ...]:
    """Sort key that follows the document: keys in the order written, list items by index."""
    out: list[int] = []
    value = body
    for part in path:
        if isinstance(value, dict):
            keys = list(value)
            out.append(keys.index(part) if part in keys else len(keys))
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int):
            out.append(part)
            value = value[part] if part < len(value) else None
        else:
            out.append(0)
            value = None
    return tuple(out)
