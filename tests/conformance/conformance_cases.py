"""Case files: their format, the placeholders, and the comparison of what happened with what a row promises.

A case file (``cases/*.yaml``) holds a ``description``, the ``manifests`` (written without a
namespace: the runner puts each case in its own) and ``requests``, a table of rows::

    - name: a literal segment beats {param}
      method: GET                  # default GET
      path: /prod/pets/mine        # sent byte for byte (latin-1: "\\xff" is the byte 0xff)
      host: api.example.com        # the Host header; default "gateway.test"; null sends none
      listener: public             # public (default) | internal
      headers: {X-Trace: abc}      # or a list of [name, value] pairs, to repeat a name
      body: "text"                 # or json: {...}
      expect:
        status: 200
        headers: {content-type: application/json, x-propylon-error-type: null}   # null: absent
        body: {"message": "Not Found"}   # JSON (exact) or a string (exact text)
        bodySubset: {stage: prod}        # JSON: these keys with these values, others allowed
        closes: true                     # the server closes the connection after this response
      upstream:                    # what the backend received; "none": it was never reached
        method: GET
        target: /pets/mine?x=1     # the raw request target, query included
        headers: {X-Forwarded-For: 127.0.0.1}
      xfail: "why"                 # or {serve: "why", operator: "why"}: expected to fail (strict)

Placeholders, written ``$(NAME)`` as in a Pod's ``args``: ``BACKEND_URL`` (``http://host:port``
of the echo backend), ``BACKEND_HOST`` (``host:port``), ``NAMESPACE`` (the case's namespace),
and in expectations only ``REQUEST_ID`` (the response's ``x-request-id``) and ``ANY`` (any
value, present). Every case also gets a Service ``echo`` (port 8080) whose endpoint is the echo
backend, so ``service: {name: echo, port: 8080}`` works in any case.

Every row also checks, without saying so, that the response carries exactly one non-empty
``x-request-id`` and, when the backend was reached, that it received that same id.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import yaml

CASES_DIR = pathlib.Path(__file__).with_name("cases")
DEFAULT_HOST = "gateway.test"
ANY = "$(ANY)"
_PLACEHOLDER = re.compile(r"\$\(([A-Z_]+)\)")
_ROW_KEYS = {"name", "method", "path", "host", "listener", "headers", "body", "json", "expect", "upstream", "xfail"}
_EXPECT_KEYS = {"status", "headers", "body", "bodySubset", "closes"}
_UPSTREAM_KEYS = {"method", "target", "headers", "body"}
_TARGETS = ("serve", "operator")


@dataclasses.dataclass(frozen=True, slots=True)
class Regex:
    """``!regex PATTERN``: a value that fully matches the pattern."""

    pattern: str

    def accepts(self, actual: object) -> bool:
        return isinstance(actual, str) and re.fullmatch(self.pattern, actual) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class Not:
    """``!not VALUE``: a value that is present and differs from this one."""

    value: str

    def accepts(self, actual: object) -> bool:
        return actual is not None and actual != self.value


class _Loader(yaml.SafeLoader):
    pass


def _regex(loader: yaml.SafeLoader, node: yaml.Node) -> Regex:
    assert isinstance(node, yaml.ScalarNode)
    return Regex(str(loader.construct_scalar(node)))


def _not(loader: yaml.SafeLoader, node: yaml.Node) -> Not:
    assert isinstance(node, yaml.ScalarNode)
    return Not(str(loader.construct_scalar(node)))


def _times(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    """``!times [prefix, unit, count]``: a long value written short (prefix + unit * count)."""
    assert isinstance(node, yaml.SequenceNode)
    prefix, unit, count = loader.construct_sequence(node)
    return f"{prefix}{unit * int(count)}"


_Loader.add_constructor("!times", _times)
_Loader.add_constructor("!regex", _regex)
_Loader.add_constructor("!not", _not)


class CaseError(Exception):
    """A case file that does not follow the format: a typo must never pass as a promise kept."""


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    name: str
    method: str
    path: str
    host: str | None
    listener: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    expect: Mapping[str, Any]
    upstream: Mapping[str, Any] | str | None  # None: not checked; "none": never reached
    xfail: Mapping[str, str]  # target -> reason

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str
    manifests: tuple[Mapping[str, Any], ...]
    rows: tuple[Row, ...]


def load_all(directory: pathlib.Path = CASES_DIR) -> list[Case]:
    return [load(path) for path in sorted(directory.glob("*.yaml"))]


def load(path: pathlib.Path) -> Case:
    where = path.name
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader plus two tags
    except yaml.YAMLError as error:
        raise CaseError(f"{where}: {error}") from None
    if not isinstance(data, dict) or set(data) - {"description", "manifests", "requests"}:
        raise CaseError(f"{where}: a case has description, manifests and requests, nothing else")
    manifests = data.get("manifests")
    requests = data.get("requests")
    if not isinstance(manifests, list) or not isinstance(requests, list) or not requests:
        raise CaseError(f"{where}: manifests and requests must be non-empty lists")
    rows = tuple(_row(f"{where}: requests[{index}]", raw) for index, raw in enumerate(requests))
    slugs = [row.slug for row in rows]
    if len(set(slugs)) != len(slugs):
        raise CaseError(f"{where}: two rows have the same name")
    return Case(name=path.stem, description=str(data.get("description") or ""), manifests=tuple(manifests), rows=rows)


def _row(where: str, raw: Any) -> Row:
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: a row is a mapping")
    unknown = set(raw) - _ROW_KEYS
    if unknown or "name" not in raw or "path" not in raw or "expect" not in raw:
        raise CaseError(f"{where}: needs name, path and expect; unknown keys: {sorted(unknown)}")
    expect = raw["expect"]
    if not isinstance(expect, dict) or "status" not in expect or set(expect) - _EXPECT_KEYS:
        raise CaseError(f"{where}: expect needs status and may have {sorted(_EXPECT_KEYS)}")
    upstream = raw.get("upstream")
    if isinstance(upstream, dict) and set(upstream) - _UPSTREAM_KEYS:
        raise CaseError(f"{where}: upstream may have {sorted(_UPSTREAM_KEYS)}")
    if upstream is not None and not isinstance(upstream, dict) and upstream != "none":
        raise CaseError(f"{where}: upstream is a mapping or 'none'")
    listener = raw.get("listener", "public")
    if listener not in ("public", "internal"):
        raise CaseError(f"{where}: listener is public or internal")
    headers = raw.get("headers") or {}
    pairs = tuple((str(n), str(v)) for n, v in (headers.items() if isinstance(headers, dict) else headers))
    body: bytes | None = None
    if "json" in raw:
        body = json.dumps(raw["json"]).encode()
    elif "body" in raw:
        body = str(raw["body"]).encode()
    xfail = raw.get("xfail")
    if isinstance(xfail, str):
        xfail = dict.fromkeys(_TARGETS, xfail)
    if xfail is not None and (not isinstance(xfail, dict) or set(xfail) - set(_TARGETS)):
        raise CaseError(f"{where}: xfail is a reason, or a mapping of target ({', '.join(_TARGETS)}) to reason")
    return Row(
        name=str(raw["name"]),
        method=str(raw.get("method", "GET")),
        path=str(raw["path"]),
        host=raw.get("host", DEFAULT_HOST),
        listener=listener,
        headers=pairs,
        body=body,
        expect=expect,
        upstream=upstream,
        xfail=xfail or {},
    )


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with every known ``$(NAME)`` replaced, recursively; unknown names stay as written."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {substitute(k, values): substitute(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, values) for v in value]
    return value


def manifests_for(
    case: Case, namespace: str, values: Mapping[str, str], backend: tuple[str, int]
) -> list[dict[str, Any]]:
    """The case's objects in ``namespace``, placeholders filled, plus the ``echo`` Service and its slice."""
    address, port = backend
    extra: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "echo-conformance", "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        },
    ]
    out = []
    for manifest in [*substitute(list(case.manifests), values), *extra]:
        manifest = dict(manifest)
        manifest["metadata"] = {**manifest.get("metadata", {}), "namespace": namespace}
        out.append(manifest)
    return out


# ---------------------------------------------------------------- comparing


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Regex | Not):
        return expected.accepts(actual)
    if expected == ANY:
        return actual is not None
    return bool(expected == actual)


def _json_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _json_subset(v, actual[k]) for k, v in expected.items())
    return _matches(expected, actual)


def _json_equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(expected) == set(actual)
            and all(_json_equal(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_json_equal(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return _matches(expected, actual)


def _header_problems(what: str, expected: Mapping[str, Any], values_of: Any) -> list[str]:
    problems = []
    for name, want in expected.items():
        got = values_of(name)
        if want is None:
            if got:
                problems.append(f"{what} header {name}: expected absent, got {got!r}")
        elif isinstance(want, list):
            if len(want) != len(got) or not all(_matches(w, g) for w, g in zip(want, got, strict=False)):
                problems.append(f"{what} header {name}: expected {want!r}, got {got!r}")
        elif len(got) != 1 or not _matches(want if isinstance(want, Regex | Not) else str(want), got[0]):
            problems.append(f"{what} header {name}: expected one value {want!r}, got {got!r}")
    return problems


def _body_problems(what: str, expect: Mapping[str, Any], body: bytes) -> list[str]:
    problems = []
    if "body" in expect:
        want = expect["body"]
        if isinstance(want, dict | list):
            try:
                got = json.loads(body)
            except ValueError:
                problems.append(f"{what} body: expected JSON {want!r}, got {body[:300]!r}")
            else:
                if not _json_equal(want, got):
                    problems.append(f"{what} body: expected {want!r}, got {got!r}")
        elif body.decode("utf-8", "replace") != str(want):
            problems.append(f"{what} body: expected {str(want)!r}, got {body[:300]!r}")
    if "bodySubset" in expect:
        want = expect["bodySubset"]
        try:
            got = json.loads(body)
        except ValueError:
            got = None
        if not _json_subset(want, got):
            problems.append(f"{what} body: expected to contain {want!r}, got {body[:300]!r}")
    return problems


def check(row: Row, response: Any, received: Any, reached_backend: bool, values: Mapping[str, str]) -> list[str]:
    """Everything about one exchange that differs from the row's promise (empty: kept)."""
    problems: list[str] = []
    ids = response.values("x-request-id")
    if len(ids) != 1 or not ids[0]:
        problems.append(f"response: expected one non-empty x-request-id, got {ids!r}")
    values = {**values, "REQUEST_ID": ids[0] if ids else "<none>"}
    expect = substitute(dict(row.expect), values)
    if response.status != expect["status"]:
        problems.append(f"response status: expected {expect['status']}, got {response.status}")
    problems += _header_problems("response", expect.get("headers") or {}, response.values)
    if "closes" in expect and response.closed_after is not expect["closes"]:
        state = "closed" if response.closed_after else "kept open"
        problems.append(f"connection: expected {'closed' if expect['closes'] else 'kept open'}, was {state}")
    problems += _body_problems("response", expect, response.body)

    if row.upstream == "none":
        if reached_backend:
            problems.append(f"upstream: expected never reached, but the backend got {received!r}")
        return problems
    if not isinstance(row.upstream, Mapping):
        return problems
    if received is None:
        problems.append("upstream: the backend received nothing with this request's id")
        return problems
    upstream = substitute(dict(row.upstream), values)
    for field in ("method", "target"):
        if field in upstream and upstream[field] != getattr(received, field):
            problems.append(f"upstream {field}: expected {upstream[field]!r}, got {getattr(received, field)!r}")
    problems += _header_problems("upstream", upstream.get("headers") or {}, received.values)
    if "body" in upstream:
        problems += _body_problems("upstream", {"body": upstream["body"]}, received.body)
    return problems
