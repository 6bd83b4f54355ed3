"""`propylon validate` as a user runs it: the real console script, real files, exact messages.

Each manifest under ``broken/`` holds one mistake; validate must exit non-zero and print the
diagnostic line ``FILE: document N (Kind ns/name): field.path: message`` that names it. Every
folder of ``examples/`` must validate cleanly.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKEN = "tests/cli/broken"
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*/") if p.is_dir())


def propylon(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("propylon")
    command = [script] if script else [sys.executable, "-m", "propylon"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


# file -> the diagnostic line that must appear (the Stage of a broken Api says so too).
CASES = {
    "percent-escape-in-route.yaml": "document 1 (Api shop/users): spec.routes[0].routeKey: a route key must not "
    "contain percent-escapes: write the character itself (requests are matched after decoding)",
    "percent-escape-in-base-path.yaml": "document 2 (Stage shop/prod): spec.basePath: basePath must not contain "
    "percent-escapes: write the character itself (requests are matched after decoding)",
    "unknown-field.yaml": 'document 1 (Api shop/users): spec.routes[0].integration.retries: unknown field "retries"',
    "wrong-enum.yaml": 'document 1 (Api shop/users): spec.protocol: Unsupported value: "GRPC": supported values: '
    '"HTTP", "WEBSOCKET"',
    "missing-authorizer.yaml": "document 1 (Api shop/users): spec.routes[0].authorizer: Authorizer shop/cognito "
    "not found; route 'GET /users' refuses every request (500 AUTHORIZER_CONFIGURATION_ERROR)",
    "stage-conflict.yaml": "document 3 (Stage shop/live): spec.basePath: basePath /prod is already served by "
    f"Stage shop/prod ({BROKEN}/stage-conflict.yaml document 2)",
    "bad-path-template.yaml": "document 1 (Api shop/users): spec.routes[0].routeKey: path segment '{id' of "
    "'/users/{id': a parameter must be a whole segment, {name} or {name+}, with balanced braces",
    "greedy-not-last.yaml": "document 1 (Api shop/users): spec.routes[0].routeKey: greedy parameter {path+} must "
    "be the last segment of '/files/{path+}/meta'",
    "duplicate-route-key.yaml": "document 1 (Api shop/users): spec.routes[1]: Duplicate value: "
    '{"routeKey":"GET /users"}',
    "service-and-url.yaml": "document 1 (Api shop/users): spec.routes[0].integration: exactly one of service or url "
    "must be set for HTTP_PROXY, HTTP and FUNCTION integrations",
    "mock-without-mock.yaml": "document 1 (Api shop/users): spec.routes[0].integration.mock: a MOCK integration "
    "needs mock",
    "unknown-stage-variable.yaml": "document 2 (Stage shop/prod): spec.variables: stage variable 'usersHost' is not "
    "in spec.variables (used by Api shop/users at spec.routes[0].integration.url); "
    "route 'GET /users' refuses every request (500 API_CONFIGURATION_ERROR)",
    "invalid-model.yaml": "document 1 (Api shop/users): spec.models.User.properties.name.type: invalid JSON Schema: "
    "'text' is not valid under any of the given schemas",
    "route-settings-unknown-route.yaml": 'document 2 (Stage shop/prod): spec.routeSettings["GET /user"]: no route '
    "'GET /user' in Api shop/users",
    "invalid-yaml.yaml": "document 1: invalid YAML at line 4, column 5: expected ',' or '}', but got ':'",
    "request-templates-on-http-proxy.yaml": "document 1 (Api shop/users): spec.routes[0].integration.requestTemplates: "
    "requestTemplates apply only to HTTP and FUNCTION (proxy: false) integrations",
    "missing-service.yaml": "document 1 (Api shop/users): spec.routes[0].integration.service.name: Service "
    "shop/users not found (no Service and no EndpointSlice labelled kubernetes.io/service-name: users); "
    "route 'GET /users' refuses every request (500 API_CONFIGURATION_ERROR)",
    "cross-namespace.yaml": "document 1 (Api shop/users): spec.routes[0].integration.service.namespace: routing to "
    "namespace accounts is not allowed: it has no Service labelled propylon.dev/allow-from: shop; "
    "route 'GET /users' refuses every request (500 API_CONFIGURATION_ERROR)",
    "mappings-on-function.yaml": "document 1 (Api shop/users): spec.routes[0].integration.requestParameters: "
    "requestParameters and "
    "responseParameters apply only to HTTP_PROXY and HTTP integrations",
}


def test_every_broken_manifest_has_a_case() -> None:
    assert sorted(p.name for p in (ROOT / BROKEN).glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_manifest_is_reported(name: str) -> None:
    path = f"{BROKEN}/{name}"
    done = propylon("validate", "-f", path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{path}: {CASES[name]}" in done.stderr.splitlines(), done.stderr
    assert done.stdout == ""


def test_a_broken_api_also_reports_its_stage() -> None:
    done = propylon("validate", "-f", f"{BROKEN}/greedy-not-last.yaml")
    assert (
        f"{BROKEN}/greedy-not-last.yaml: document 2 (Stage shop/prod): spec.apiRef: Api shop/users is not valid; "
        "the Stage serves nothing"
    ) in done.stderr.splitlines()


def test_cross_namespace_is_allowed_by_the_target_namespace_or_the_flag(tmp_path: Path) -> None:
    allowed = tmp_path / "allow.yaml"
    allowed.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: gate, namespace: accounts, "
        "labels: {propylon.dev/allow-from: shop}}\nspec: {ports: [{port: 1}]}\n"
    )
    assert propylon("validate", "-f", f"{BROKEN}/cross-namespace.yaml", "-f", str(allowed)).returncode == 0
    assert propylon("validate", "-f", f"{BROKEN}/cross-namespace.yaml", "--allow-cross-namespace").returncode == 0


def test_several_paths_and_a_summary(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text(
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: a, namespace: x}\nspec:\n  routes:\n"
        '    - {routeKey: "GET /a", integration: {type: MOCK, mock: {body: a}}}\n'
        '    - {routeKey: "GET /b", integration: {type: MOCK, mock: {body: b}}}\n'
    )
    (tmp_path / "stages").mkdir()
    for name in ("one", "two"):
        (tmp_path / "stages" / f"{name}.yaml").write_text(
            f"apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}, namespace: x}}\n"
            "spec: {apiRef: a}\n"
        )
    done = propylon("validate", "-f", str(tmp_path / "api.yaml"), "-f", str(tmp_path / "stages"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("ok: 1 Api, 2 Stages, 4 routes (config version ")


def test_from_files_the_stage_loaded_first_keeps_its_base_path(tmp_path: Path) -> None:
    # DESIGN.md §8: in serve (and so validate and render) the one loaded first, even when the
    # later one carries a creationTimestamp, as a `kubectl get -o yaml` export does.
    api = "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: a, namespace: x}\nspec:\n  routes:\n"
    api += '    - {routeKey: "GET /a", integration: {type: MOCK, mock: {body: a}}}\n'
    stages = [
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: first, namespace: x}\n"
        "spec: {apiRef: a, basePath: /y}\n",
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\n"
        'metadata: {name: second, namespace: x, creationTimestamp: "2020-01-01T00:00:00Z"}\n'
        "spec: {apiRef: a, basePath: /y}\n",
    ]
    (tmp_path / "all.yaml").write_text("---\n".join([api, *stages]))
    for command in ("validate", "render"):
        done = propylon(command, "-f", str(tmp_path / "all.yaml"))
        assert done.returncode == 1
        assert "document 3 (Stage x/second): spec.basePath: basePath /y is already served by Stage x/first" in (
            done.stderr
        ), done.stderr


def test_a_missing_file_is_a_diagnostic() -> None:
    done = propylon("validate", "-f", "tests/cli/broken/no-such-file.yaml")
    assert done.returncode == 1
    assert done.stderr.startswith("tests/cli/broken/no-such-file.yaml: cannot read file:")


@pytest.mark.skipif(not EXAMPLES, reason="no examples yet")
@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(folder: Path) -> None:
    done = propylon("validate", "-f", str(folder.relative_to(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")
