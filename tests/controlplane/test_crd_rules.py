"""The CRDs in a real kube-apiserver agree with ``propylon validate``'s schema checks.

``propylon_compiler.schemas`` checks documents without a cluster, running a Python twin for each
CEL rule. Here the same documents (tests/compiler/test_schemas.py) go to the API server with a
server-side dry run: every valid one is accepted as written, every broken one is refused, and
where the offline check names a CEL rule's message the API server names the same field and
message. That is what keeps the twins honest about CEL.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import time
from types import ModuleType

import cluster
import pytest

from propylon_compiler import schema_rules, schemas

NAMESPACE = "crd-rules"
_CASES_FILE = pathlib.Path(__file__).resolve().parents[1] / "compiler" / "test_schemas.py"


def _cases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schema_cases", _CASES_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _cases()
# Identity problems (apiVersion, kind, metadata) are kubectl's or the API server's own words.
_CLUSTER_BROKEN = [case for case in CASES.BROKEN if not case[2].startswith(("apiVersion", "kind", "metadata"))]


@pytest.fixture(scope="module")
def plane(control_plane: cluster.ControlPlane) -> cluster.ControlPlane:
    control_plane.kubectl("create", "namespace", NAMESPACE, check=False)
    return control_plane


def _dry_run(plane: cluster.ControlPlane, body: dict[str, object], output: str = "name") -> tuple[int, str]:
    """Create ``body`` with a server-side dry run: (exit code, stderr), or stdout in ``output`` form."""
    body = json.loads(json.dumps(body))
    body["metadata"] = {**body.get("metadata", {}), "namespace": NAMESPACE}  # type: ignore[dict-item]
    result = plane.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-o", output, "-f", "-", input=json.dumps(body), check=False
    )
    return result.returncode, result.stderr if result.returncode or output == "name" else result.stdout


@pytest.mark.parametrize("name", list(CASES.VALID))
def test_valid_documents_are_accepted(plane: cluster.ControlPlane, name: str) -> None:
    code, stderr = _dry_run(plane, CASES.yaml.safe_load(CASES.VALID[name]))
    assert code == 0, stderr


@pytest.mark.parametrize(
    ("document", "field", "message"), [c[1:] for c in _CLUSTER_BROKEN], ids=[c[0] for c in _CLUSTER_BROKEN]
)
def test_broken_documents_are_refused_alike(plane: cluster.ControlPlane, document, field: str, message: str) -> None:
    code, stderr = _dry_run(plane, document.body)
    assert code != 0, f"the API server accepted a document the offline check refuses ({field}: {message})"
    if message in schema_rules.TWINS:
        # "<field>: Invalid value: "object": <message>", the API server's form for a CEL rule. A
        # twin that locates the break names it more closely offline (spec.routes[2].routeKey)
        # than the API server can (the rule's fieldPath, spec.routes): a prefix of it is said.
        places = [field]
        if schema_rules.TWINS[message].locate is not None:
            places += [field[:i] for i in range(len(field) - 1, 0, -1) if field[i] in ".["]
        patterns = [re.escape(place) + r': Invalid value: "[a-z]+": ' + re.escape(message) for place in places]
        assert any(re.search(pattern, stderr) for pattern in patterns), stderr
    elif message.startswith("unknown field"):
        # Strict decoding writes map keys dotted (routeSettings.GET /users); we quote them.
        dotted = re.sub(r'\["([^"]*)"\]', r".\1", field)
        assert f'unknown field "{dotted}"' in stderr, stderr
    else:
        assert field in stderr, stderr


MINIMAL = {
    "Api": "spec: {protocol: WEBSOCKET, websocket: {}, routes: [{routeKey: $default, integration: {type: MOCK, mock: {}}}]}",  # noqa: E501
    "Stage": "spec: {apiRef: a, cache: {enabled: true}, accessLog: {}, routeSettings: {GET /a: {cache: {}}}}",
    "UsagePlan": "spec: {quota: {limit: 5, period: WEEK}, stages: [{stageRef: prod}]}",
    "Authorizer": "spec: {type: REQUEST, function: {url: 'http://a.example'}}",
    "Stage with nulls": "spec: {apiRef: a, endpoint: null, hosts: null, variables: {a: x, b: null}, "
    "cache: {ttlSeconds: null}}",
}


@pytest.mark.parametrize("kind", list(MINIMAL))  # "kind" is the kind, then what the case is about
def test_defaults_are_the_api_servers(plane: cluster.ControlPlane, kind: str) -> None:
    text = f"apiVersion: propylon.dev/v1alpha1\nkind: {kind.split()[0]}\nmetadata: {{name: minimal}}\n{MINIMAL[kind]}\n"
    document = CASES._document(text)
    code, stdout = _dry_run(plane, document.body, output="json")
    assert code == 0, stdout
    assert json.loads(stdout)["spec"] == schemas.with_defaults(document)["spec"]


@pytest.mark.parametrize("name", list(CASES.VALID))
def test_defaults_of_the_design_examples_are_the_api_servers(plane: cluster.ControlPlane, name: str) -> None:
    document = CASES._document(CASES.VALID[name])
    code, stdout = _dry_run(plane, document.body, output="json")
    assert code == 0, stdout
    assert json.loads(stdout)["spec"] == schemas.with_defaults(document)["spec"]


def _explain(plane: cluster.ControlPlane, field: str) -> str:
    # The API server publishes a new CRD's OpenAPI a moment after it is Established.
    deadline = time.monotonic() + 60
    while True:
        result = plane.kubectl("explain", field, "--api-version=propylon.dev/v1alpha1", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return " ".join(result.stdout.split())
        time.sleep(1)


def test_kubectl_explain_teaches_the_fields(plane: cluster.ControlPlane) -> None:
    assert "50 to 300000, default 29000" in _explain(plane, "apis.spec.routes.integration.timeoutMillis")
    assert "unauthorizedCacheControlHeaderStrategy" in _explain(plane, "stages.spec.cache")


def test_short_names_and_category(plane: cluster.ControlPlane) -> None:
    out = plane.kubectl("api-resources", "--api-group=propylon.dev", "-o", "wide").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    expected = {"apis": "pgapi", "stages": "pgstage", "usageplans": "pgplan", "authorizers": "pgauth"}
    for plural, short in expected.items():
        assert short in rows[plural].split() and "propylon" in rows[plural], rows
    assert plane.kubectl("get", "propylon", "-n", NAMESPACE, check=False).returncode == 0


@pytest.mark.parametrize(
    ("plural", "columns"),
    [
        ("apis", ["Name", "Protocol", "Ready", "Age"]),
        ("stages", ["Name", "Api", "BasePath", "URL", "Ready", "Age"]),
        ("usageplans", ["Name", "Keys", "Ready", "Age"]),
        ("authorizers", ["Name", "Type", "Ready", "Age"]),
    ],
)
def test_printer_columns_are_served(plane: cluster.ControlPlane, plural: str, columns: list[str]) -> None:
    client = plane.api_client()
    try:
        response = client.rest_client.request(
            "GET",
            f"{client.configuration.host}/apis/propylon.dev/v1alpha1/namespaces/{NAMESPACE}/{plural}",
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )
        table = json.loads(getattr(response, "data", None) or response.read())
    finally:
        client.close()
    assert [c["name"] for c in table["columnDefinitions"]] == columns
