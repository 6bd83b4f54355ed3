"""The CRDs in crds/ are ones a kube-apiserver accepts and ``kubectl explain`` can teach from.

Static checks of the apiextensions.k8s.io/v1 rules that matter here: structural schemas (a type
everywhere, no additionalProperties beside properties, preserve-unknown-fields only where
meant), defaults that validate, list-map keys that are required or defaulted, CEL rules that
stay within the cost budget (bounded lists, maps and strings under them) and that each have a
Python twin with the same text. tests/controlplane/test_crd_rules.py then applies them to a
real API server.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes
import pytest
import yaml

from propylon_compiler import schema_rules, schemas

CRD_DIR = pathlib.Path(__file__).resolve().parents[1] / "crds"
PLURALS = {"Api": "apis", "Stage": "stages", "UsagePlan": "usageplans", "Authorizer": "authorizers"}
FILES = {kind: CRD_DIR / f"propylon.dev_{plural}.yaml" for kind, plural in PLURALS.items()}

Node = dict[str, Any]


def _load(kind: str) -> dict[str, Any]:
    return yaml.safe_load(FILES[kind].read_text())


def _schema(kind: str) -> Node:
    (version,) = _load(kind)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def _nodes(node: Node, path: str = "") -> Iterator[tuple[str, Node]]:
    """Every schema node with a readable path (``.spec.routes[].integration``, ``.spec.variables{}``)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _all_nodes() -> Iterator[tuple[str, str, Node]]:
    for kind in PLURALS:
        for path, node in _nodes(_schema(kind)):
            yield kind, path, node


def test_one_file_per_kind_and_nothing_else() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(p.name for p in FILES.values())
    assert sorted(p.name for p in CRD_DIR.iterdir()) == sorted(p.name for p in FILES.values())


@pytest.mark.parametrize("kind", PLURALS)
def test_crd_identity(kind: str) -> None:
    crd = _load(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{PLURALS[kind]}.propylon.dev"
    assert spec["group"] == "propylon.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (kind, PLURALS[kind], kind.lower())
    assert names["listKind"] == f"{kind}List"
    assert names["categories"] == ["propylon"]
    assert len(names["shortNames"]) == 1 and names["shortNames"][0].startswith("pg")
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_short_names_are_distinct() -> None:
    shorts = [_load(kind)["spec"]["names"]["shortNames"][0] for kind in PLURALS]
    assert sorted(shorts) == ["pgapi", "pgauth", "pgplan", "pgstage"]


@pytest.mark.parametrize("kind", PLURALS)
def test_parses_as_an_apiextensions_v1_object(kind: str) -> None:
    crd = kubernetes.client.ApiClient().deserialize(
        json.dumps(_load(kind)), "V1CustomResourceDefinition", "application/json"
    )
    assert isinstance(crd, kubernetes.client.V1CustomResourceDefinition)
    assert crd.spec.versions[0].schema.open_apiv3_schema.type == "object"


def test_schema_keywords_are_ones_apiextensions_knows() -> None:
    # The client model's attribute map is the list of JSONSchemaProps fields; a typo such as
    # "maxitems" would otherwise be dropped silently by the API server.
    known = set(kubernetes.client.V1JSONSchemaProps.attribute_map.values())
    for kind, path, node in _all_nodes():
        assert set(node) <= known, (kind, path, set(node) - known)


def test_every_node_has_a_type() -> None:
    for kind, path, node in _all_nodes():
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), (kind, path)


def test_no_additional_properties_beside_properties() -> None:
    for kind, path, node in _all_nodes():
        assert not ("properties" in node and "additionalProperties" in node), (kind, path)


def test_every_property_has_a_description() -> None:
    for kind, path, node in _all_nodes():
        if path == ".metadata":
            continue  # the API server allows nothing but {type: object} there
        if path.endswith(("[]", "{}")) and node.get("type") != "object":
            continue  # scalar list items and map values are described by their field
        assert isinstance(node.get("description"), str) and len(node["description"]) >= 8, (kind, path)


def test_root_metadata_is_bare() -> None:
    for kind in PLURALS:
        assert _schema(kind)["properties"]["metadata"] == {"type": "object"}


def test_unknown_fields_are_preserved_only_where_meant() -> None:
    preserved = {(kind, path) for kind, path, node in _all_nodes() if node.get("x-kubernetes-preserve-unknown-fields")}
    assert preserved == {("Api", ".spec.models{}")}


def test_defaults_validate_against_their_own_schema() -> None:
    count = 0
    for _, _, node in _all_nodes():
        if "default" in node:
            jsonschema.validate(node["default"], schemas.to_json_schema(node))
            count += 1
    assert count >= 20


EXPECTED_DEFAULTS = [
    ("Api", ".spec.protocol", "HTTP"),
    ("Api", ".spec.apiKeySource", "HEADER"),
    ("Api", ".spec.cors.allowCredentials", False),
    ("Api", ".spec.websocket.maxMessageBytes", 131072),
    ("Api", ".spec.websocket.idleTimeoutSeconds", 600),
    ("Api", ".spec.websocket.maxConnectionSeconds", 7200),
    ("Api", ".spec.routes[].apiKeyRequired", False),
    ("Api", ".spec.routes[].integration.timeoutMillis", 29000),
    ("Api", ".spec.routes[].integration.passthroughBehavior", "WHEN_NO_MATCH"),
    ("Api", ".spec.routes[].integration.mock.statusCode", 200),
    ("Stage", ".spec.endpoint", "PUBLIC"),
    ("Stage", ".spec.cache.enabled", False),
    ("Stage", ".spec.cache.ttlSeconds", 300),
    ("Stage", ".spec.cache.capacityMiB", 64),
    ("Stage", ".spec.cache.requireAuthorizationForCacheControl", True),
    ("Stage", ".spec.cache.unauthorizedCacheControlHeaderStrategy", "SUCCEED_WITH_RESPONSE_HEADER"),
    ("UsagePlan", ".spec.quota.offset", 0),
    ("UsagePlan", ".spec.allowCacheInvalidation", False),
    ("Authorizer", ".spec.type", "JWT"),
    ("Authorizer", ".spec.identitySource", ["$request.header.Authorization"]),
    ("Authorizer", ".spec.function.resultTtlSeconds", 300),
]


@pytest.mark.parametrize(("kind", "path", "default"), EXPECTED_DEFAULTS)
def test_defaults_follow_the_design(kind: str, path: str, default: object) -> None:
    nodes = dict(_nodes(_schema(kind)))
    assert nodes[path]["default"] == default


def test_ranges_follow_the_design() -> None:
    nodes = dict(_nodes(_schema("Api")))
    timeout = nodes[".spec.routes[].integration.timeoutMillis"]
    assert (timeout["minimum"], timeout["maximum"]) == (50, 300000)
    assert nodes[".spec.routes[].integration.payloadFormatVersion"]["enum"] == ["1.0", "2.0"]
    stage = dict(_nodes(_schema("Stage")))
    assert (stage[".spec.cache.ttlSeconds"]["minimum"], stage[".spec.cache.ttlSeconds"]["maximum"]) == (0, 3600)
    percent = stage[".spec.canary.percentTraffic"]
    assert (percent["type"], percent["minimum"], percent["maximum"]) == ("number", 0, 100)


def test_list_map_keys_are_required_scalars() -> None:
    for kind, path, node in _all_nodes():
        if node.get("x-kubernetes-list-type") != "map":
            continue
        items = node["items"]
        for key in node["x-kubernetes-list-map-keys"]:
            assert key in items.get("required", []) or "default" in items["properties"][key], (kind, path, key)
            assert items["properties"][key]["type"] in ("string", "integer", "boolean"), (kind, path, key)


def test_conditions_are_kubernetes_conditions() -> None:
    for kind in PLURALS:
        status = _schema(kind)["properties"]["status"]["properties"]
        assert status["observedGeneration"]["type"] == "integer"
        conditions = status["conditions"]
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        fields = set(conditions["items"]["properties"])
        assert fields == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


def test_status_fields_the_operator_writes() -> None:
    stage = _schema("Stage")["properties"]["status"]["properties"]
    assert {"url", "configVersion", "replicas", "readyReplicas"} <= set(stage)
    plan = _schema("UsagePlan")["properties"]["status"]["properties"]
    assert plan["keyCount"]["type"] == "integer"
    assert set(plan["usage"]["properties"]) == {"period", "keys", "store", "reportedBy", "readAt"}


PRINTER_COLUMNS = {
    "Api": ["Protocol", "Ready", "Age"],
    "Stage": ["Api", "BasePath", "URL", "Ready", "Age"],
    "UsagePlan": ["Keys", "Ready", "Age"],
    "Authorizer": ["Type", "Ready", "Age"],
}


@pytest.mark.parametrize("kind", PLURALS)
def test_printer_columns(kind: str) -> None:
    (version,) = _load(kind)["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == PRINTER_COLUMNS[kind]
    paths = {path for path, _ in _nodes(_schema(kind))}
    for column in columns:
        json_path = column["jsonPath"]
        if column["name"] == "Ready":
            assert json_path == '.status.conditions[?(@.type=="Ready")].status'
        elif column["name"] == "Age":
            assert json_path == ".metadata.creationTimestamp" and column["type"] == "date"
        else:
            assert json_path in paths, (kind, json_path)


# --- CEL rules -----------------------------------------------------------------------------------


def _rules() -> Iterator[tuple[str, str, Node, dict[str, str]]]:
    for kind, path, node in _all_nodes():
        for rule in node.get("x-kubernetes-validations", ()):
            yield kind, path, node, rule


def test_there_are_rules_where_design_asks() -> None:
    messages = {rule["message"] for *_, rule in _rules()}
    for needle in ("exactly one of service or url", "MOCK integration needs mock", 'allowOrigins "*"',
                   '"none" algorithm', "with secretRef", 'basePath must start with "/"', "routeKey"):  # fmt: skip
        assert any(needle in message for message in messages), needle


def test_every_rule_has_a_python_twin_with_the_same_text() -> None:
    used: set[str] = set()
    for kind, path, _, rule in _rules():
        twin = schema_rules.TWINS.get(rule["message"])
        assert twin is not None, f"{kind}{path}: no Python twin for rule {rule['message']!r}"
        assert twin.rule == rule["rule"], f"{kind}{path}: the twin of {rule['message']!r} mirrors another rule"
        assert rule["message"] not in used, f"two rules share the message {rule['message']!r}"
        used.add(rule["message"])
    assert set(schema_rules.TWINS) == used, f"twins without a rule: {set(schema_rules.TWINS) - used}"


def test_rule_field_paths_exist() -> None:
    for _, _, node, rule in _rules():
        target = node
        for part in rule.get("fieldPath", "").split(".")[1:]:
            target = target["properties"][part]  # KeyError names a fieldPath the API server refuses


def _unbounded(node: Node, path: str) -> Iterator[str]:
    """Paths under ``node`` the CEL cost estimator would have to assume are huge."""
    for sub_path, sub in _nodes(node, path):
        yield from _unbounded_here(sub, sub_path)


def _unbounded_here(node: Node, path: str) -> Iterator[str]:
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return
    kind = node.get("type")
    if (
        (kind == "array" and "maxItems" not in node)
        or (kind == "string" and "maxLength" not in node and "enum" not in node)
        or (kind == "object" and "additionalProperties" in node and "maxProperties" not in node)
    ):
        yield path


def test_what_rules_read_is_bounded() -> None:
    # Rules iterate lists and compare strings; without bounds the API server estimates the cost
    # from the request size limit and refuses the CRD.
    for kind, path, node, _ in _rules():
        unbounded = sorted(set(_unbounded(node, path)))
        assert not unbounded, (kind, path, unbounded)


def test_the_offline_validator_reads_these_files() -> None:
    # No second copy of the schema: propylon_compiler.schemas loads crds/ (or its packaged copy).
    assert {kind: schemas.crds()[kind] for kind in PLURALS} == {kind: _load(kind) for kind in PLURALS}
    assert tuple(PLURALS) == schemas.KINDS
