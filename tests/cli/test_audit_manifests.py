"""Manifest diagnostics a black-box audit found missing (DESIGN.md §1, §6, §8 "Diagnostics").

Each test runs the real ``propylon`` command on real files, as a user does, and, where the
fix changes what is served, a real ``propylon serve`` with loopback backends:

* a mapping with the same key twice was read as its last value, silently (kubectl refuses it);
* a ``kind: List`` (what ``kubectl get -o yaml`` writes) was skipped whole, so a broken export
  validated as ``ok: 0 Apis``;
* a folder's diagnostics came load errors first, not in the order of the files;
* a mapping value with an expression the proxy does not know was sent upstream as that text;
* ``authorizationScopes`` on a route whose Authorizer is not JWT were ignored: every caller the
  function let in passed, whatever scopes the route asked for.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from tests import backends
from tests.cli.test_validate import propylon
from tests.serve.test_serve import Served

API_HEAD = "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: a, namespace: x}\nspec:\n"
MOCK = "{type: MOCK, mock: {statusCode: 200}}"
STAGE = "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: s, namespace: x}\nspec: {apiRef: a}\n"


def _get(served: Served, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# --- duplicate keys -------------------------------------------------------------------------


def test_a_key_written_twice_in_one_mapping_is_a_yaml_error_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        API_HEAD
        + f'  routes:\n    - {{routeKey: "GET /a", authorizer: gone, integration: {MOCK}}}\n'
        + f'  routes:\n    - {{routeKey: "GET /b", integration: {MOCK}}}\n'
    )
    for command in ("validate", "render"):
        done = propylon(command, "-f", str(path))
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f'{path}: document 1: invalid YAML at line 7, column 3: duplicate key "routes" (first at line 5)'
        ]


def test_a_key_merged_in_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merged.yaml"
    path.write_text(
        API_HEAD + "  routes:\n"
        '    - &base {routeKey: "GET /a", integration: {type: MOCK, mock: {statusCode: 200}}}\n'
        '    - {<<: *base, routeKey: "GET /b"}\n'
    )
    done = propylon("validate", "-f", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 1 Api, 0 Stages, 0 routes")


def test_serve_refuses_to_start_on_a_key_written_twice(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        f'{API_HEAD}  routes:\n    - {{routeKey: "GET /a", integration: {MOCK}}}\n---\n'
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: s, namespace: x}\n"
        "spec:\n  apiRef: a\n  basePath: /one\n  basePath: /two\n"
    )
    done = propylon("serve", "-f", str(path), "--port", "0", "--internal-port", "0", "--admin-port", "0")
    assert done.returncode == 2, done.stderr
    assert (
        f'{path}: document 2: invalid YAML at line 14, column 3: duplicate key "basePath" (first at line 13)'
        in done.stderr.splitlines()
    ), done.stderr


# --- kind: List -----------------------------------------------------------------------------

LIST = """\
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: propylon.dev/v1alpha1
  kind: Api
  metadata: {name: a, namespace: x}
  spec:
    routes:
      - {routeKey: "GET /a", integration: {type: %s, mock: {statusCode: 200}}}
- apiVersion: propylon.dev/v1alpha1
  kind: Stage
  metadata: {name: s, namespace: x}
  spec: {apiRef: a}
"""


def test_the_items_of_a_list_are_validated_as_documents(tmp_path: Path) -> None:
    path = tmp_path / "export.yaml"
    path.write_text(LIST % "MOCKED")
    done = propylon("validate", "-f", str(path))
    assert done.returncode == 1, done.stdout
    assert done.stderr.splitlines() == [
        f'{path}: document 1 (Api x/a): items[0].spec.routes[0].integration.type: Unsupported value: "MOCKED": '
        'supported values: "HTTP_PROXY", "HTTP", "FUNCTION", "MOCK"',
        f"{path}: document 1 (Stage x/s): items[1].spec.apiRef: Api x/a is not valid; the Stage serves nothing",
    ]


def test_a_clean_list_is_served_as_its_items(tmp_path: Path) -> None:
    (tmp_path / "export.yaml").write_text(LIST % "MOCK" + "- 42\n")
    done = propylon("validate", "-f", str(tmp_path / "export.yaml"))
    assert done.stderr.splitlines() == [
        f"{tmp_path / 'export.yaml'}: document 1: items[2]: a manifest must be a mapping (apiVersion, kind, ...)"
    ]
    (tmp_path / "export.yaml").write_text(LIST % "MOCK")
    done = propylon("validate", "-f", str(tmp_path / "export.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 1 Api, 1 Stage, 1 route ")
    served = Served(tmp_path / "export.yaml", tmp_path)
    try:
        status, _, _ = _get(served, "/s/a")
        assert status == 200, served.stderr()
    finally:
        served.stop()


def test_a_conflict_or_duplicate_inside_a_list_names_the_item(tmp_path: Path) -> None:
    path = tmp_path / "export.yaml"
    extra = (
        "- {apiVersion: propylon.dev/v1alpha1, kind: Stage, metadata: {name: t, namespace: x},"
        " spec: {apiRef: a, basePath: /s}}\n"
        "- {apiVersion: propylon.dev/v1alpha1, kind: Stage, metadata: {name: s, namespace: x}, spec: {apiRef: a}}\n"
    )
    path.write_text(LIST % "MOCK" + extra)
    done = propylon("validate", "-f", str(path))
    assert done.stderr.splitlines() == [
        f"{path}: document 1 (Stage x/t): items[2].spec.basePath: basePath /s is already served by Stage x/s "
        f"({path} document 1 items[1])",
        f"{path}: document 1 (Stage x/s): items[3].metadata.name: duplicate Stage x/s: first defined in "
        f"{path} document 1 items[1]",
    ]


# --- order ----------------------------------------------------------------------------------


def test_a_folders_diagnostics_come_in_the_order_of_its_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(STAGE.replace("apiRef: a", "apiRef: gone"))
    (tmp_path / "b.yaml").write_text("- not a manifest\n---\n" + STAGE.replace("name: s", "name: t"))
    done = propylon("validate", "-f", str(tmp_path))
    assert done.stderr.splitlines() == [
        f"{tmp_path}/a.yaml: document 1 (Stage x/s): spec.apiRef: Api x/gone not found; the Stage serves nothing",
        f"{tmp_path}/b.yaml: document 1: a manifest must be a mapping (apiVersion, kind, ...)",
        f"{tmp_path}/b.yaml: document 2 (Stage x/t): spec.apiRef: Api x/a not found; the Stage serves nothing",
    ]


# --- mapping expressions --------------------------------------------------------------------

KNOWS = (
    "use $request.header|querystring|path.NAME, $context.requestId|stage|identity.sourceIp|authorizer.NAME, "
    "$stageVariables.NAME or ${stageVariables.NAME}, or a quoted literal 'text'"
)


def test_a_mapping_expression_the_gateway_does_not_know_is_a_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(
        API_HEAD + "  routes:\n"
        '    - routeKey: "GET /a/{id}"\n'
        "      integration:\n"
        '        type: HTTP_PROXY\n        url: "http://127.0.0.1:1/"\n'
        "        requestParameters:\n"
        '          "overwrite:header.X-User": "$request.headers.X-User"\n'
        '          "overwrite:header.X-Agent": "agent $context.identity.userAgent"\n'
        '          "overwrite:header.X-Late": "$response.header.Server"\n'
        '          "overwrite:header.X-Fine": "$request.header.X-User/$context.authorizer.claims.sub"\n'
        '          "overwrite:header.X-Literal": "\'$context.nope\'"\n'
        '          "overwrite:header.X-Dollars": "costs $5 or $HOME"\n'
        "        responseParameters:\n"
        '          "200": {"overwrite:header.X-Body": "$response.body.id",\n'
        '                  "overwrite:header.X-S": "$response.header.S"}\n'
    )
    done = propylon("validate", "-f", str(path))
    assert done.returncode == 1
    where = f"{path}: document 1 (Api x/a): spec.routes[0].integration"
    assert done.stderr.splitlines() == [
        f"{where}.requestParameters[\"overwrite:header.X-User\"]: '$request.headers.X-User' is not an expression "
        f"a mapping knows (it would be sent as that text): {KNOWS}",
        f"{where}.requestParameters[\"overwrite:header.X-Agent\"]: '$context.identity.userAgent' is not an "
        f"expression a mapping knows (it would be sent as that text): {KNOWS}",
        f"{where}.requestParameters[\"overwrite:header.X-Late\"]: '$response.header.Server' has a value only in "
        "responseParameters: a request has no response yet",
        f"{where}.responseParameters.200[\"overwrite:header.X-Body\"]: '$response.body.id' is not an expression "
        f"a mapping knows (it would be sent as that text): use $response.header.NAME, {KNOWS[4:]}",
    ]


def test_every_expression_validate_accepts_is_substituted_by_the_gateway(tmp_path: Path) -> None:
    """What the compiler accepts is what the proxy knows: nothing of an accepted expression
    reaches the backend as text."""
    with backends.Backend(backends.echo_json) as backend:
        values = {
            "X-H": "$request.header.X-In",
            "X-Q": "$request.querystring.q",
            "X-P": "$request.path.id",
            "X-Ctx": "$context.requestId|$context.stage|$context.identity.sourceIp|$context.authorizer.principalId",
            "X-SV": "$stageVariables.color-${stageVariables.color}",
        }
        mappings = "".join(f'          "overwrite:header.{k}": "{v}"\n' for k, v in values.items())
        (tmp_path / "api.yaml").write_text(
            API_HEAD + "  routes:\n"
            '    - routeKey: "GET /a/{id}"\n'
            "      integration:\n"
            f'        type: HTTP_PROXY\n        url: "{backend.url}/up"\n'
            f"        requestParameters:\n{mappings}"
            f"---\n{STAGE.replace('apiRef: a}', 'apiRef: a, variables: {color: blue}}')}"
        )
        done = propylon("validate", "-f", str(tmp_path / "api.yaml"))
        assert done.returncode == 0, done.stderr
        served = Served(tmp_path / "api.yaml", tmp_path)
        try:
            status, headers, body = _get(served, "/s/a/7?q=search", {"X-In": "given"})
        finally:
            served.stop()
    assert status == 200, body
    seen: dict[str, Any] = json.loads(body)["headers"]
    got = {k: v for k, v in seen.items() if k in values}
    assert got["X-H"] == "given" and got["X-Q"] == "search" and got["X-P"] == "7"
    assert got["X-Ctx"] == f"{headers['x-request-id']}|s|127.0.0.1|"
    assert got["X-SV"] == "blue-blue"
    assert not any("$" in v for v in got.values()), got


# --- authorizationScopes on a function authorizer -------------------------------------------


def _allow_all(request: backends.Received) -> backends.Answer:
    policy = {
        "principalId": "anyone",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}],
        },
    }
    return backends.Answer(body=json.dumps(policy).encode(), headers=(("Content-Type", "application/json"),))


def test_scopes_on_a_route_with_a_function_authorizer_make_it_refuse(tmp_path: Path) -> None:
    with backends.Backend(_allow_all) as function, backends.Backend(backends.ok) as backend:
        (tmp_path / "api.yaml").write_text(
            API_HEAD + "  routes:\n"
            f'    - {{routeKey: "GET /admin", authorizer: tok, authorizationScopes: [admin], '
            f'integration: {{type: HTTP_PROXY, url: "{backend.url}/admin"}}}}\n'
            f'    - {{routeKey: "GET /open", authorizer: tok, '
            f'integration: {{type: HTTP_PROXY, url: "{backend.url}/o"}}}}\n'
            "---\napiVersion: propylon.dev/v1alpha1\nkind: Authorizer\nmetadata: {name: tok, namespace: x}\n"
            f'spec: {{type: TOKEN, function: {{url: "{function.url}", resultTtlSeconds: 0}}}}\n'
            f"---\n{STAGE}"
        )
        done = propylon("validate", "-f", str(tmp_path / "api.yaml"))
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"{tmp_path / 'api.yaml'}: document 1 (Api x/a): spec.routes[0].authorizationScopes: authorizationScopes "
            "apply only to routes with a JWT authorizer, and Authorizer x/tok is TOKEN; route 'GET /admin' "
            "refuses every request (500 AUTHORIZER_CONFIGURATION_ERROR)"
        ]
        served = Served(tmp_path / "api.yaml", tmp_path)
        try:
            refused = _get(served, "/s/admin", {"Authorization": "Bearer anything"})
            opened = _get(served, "/s/open", {"Authorization": "Bearer anything"})
        finally:
            served.stop()
        assert backend.paths() == ["/o"]
    assert refused[0] == 500 and refused[1]["x-propylon-error-type"] == "AUTHORIZER_CONFIGURATION_ERROR"
    assert opened[0] == 200
