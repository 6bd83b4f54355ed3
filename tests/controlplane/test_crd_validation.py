"""What a user sees from ``kubectl apply`` of a broken Api or Stage: the API server refuses it
(OpenAPI schema or CEL rule, no operator involved) and the message names the field."""

from __future__ import annotations

import pytest

NAMESPACE = "crd-validation"

API = """
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: broken, namespace: crd-validation}}
spec:
{spec}
"""

STAGE = """
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: broken, namespace: crd-validation}}
spec:
{spec}
"""

CASES = [
    pytest.param(
        API.format(spec="  protocol: GRPC\n  routes: []"),
        ["spec.protocol", "Unsupported value", "GRPC"],
        id="schema: unknown protocol enum",
    ),
    pytest.param(
        API.format(spec="  routes:\n    - routeKey: GET /x\n      integration: {type: MOCK, timeoutMillis: 10}"),
        ["spec.routes[0].integration.timeoutMillis", "50"],
        id="schema: timeout below the minimum",
    ),
    pytest.param(
        API.format(spec="  routes:\n    - routeKey: GET /x\n      integration: {type: HTTP_PROXY}"),
        ["spec.routes[0].integration", "exactly one of service or url"],
        id="CEL: neither service nor url",
    ),
    pytest.param(
        API.format(spec="  cors: {allowOrigins: ['*'], allowCredentials: true}\n  routes: []"),
        ["spec.cors.allowOrigins", "allowCredentials"],
        id="CEL: wildcard origin with credentials",
    ),
    pytest.param(
        STAGE.format(spec="  apiRef: users\n  basePath: prod"),
        ["spec.basePath", 'must start with "/"'],
        id="CEL: basePath without a slash",
    ),
]


@pytest.fixture(scope="module")
def plane(control_plane):
    control_plane.kubectl("create", "namespace", NAMESPACE, check=False)
    return control_plane


@pytest.mark.parametrize("manifest, expected", CASES)
def test_kubectl_apply_of_a_broken_object_is_refused_naming_the_field(plane, manifest, expected) -> None:
    result = plane.apply(manifest, check=False)
    assert result.returncode != 0, result.stdout
    for text in expected:
        assert text in result.stderr, result.stderr
    assert plane.kubectl("get", "apis,stages", "-n", NAMESPACE, "-o", "name").stdout.strip() == ""


def test_a_valid_object_is_accepted_and_defaulted(plane) -> None:
    import json

    plane.apply(API.format(spec="  routes:\n    - routeKey: GET /ok\n      integration: {type: MOCK, mock: {}}")
                .replace("broken", "fine"))  # fmt: skip
    api = json.loads(plane.kubectl("get", "api", "fine", "-n", NAMESPACE, "-o", "json").stdout)
    assert api["spec"]["protocol"] == "HTTP"
    plane.kubectl("delete", "api", "fine", "-n", NAMESPACE)
