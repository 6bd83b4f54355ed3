"""Checks on a WEBSOCKET message route are refused, never accepted and ignored (DESIGN.md sections 1, 8).

A WebSocket connection is authorized once, by $connect (as AWS allows authorization and API keys
only there); messages are relayed as sent. An ``authorizer``, ``authorizationScopes``,
``apiKeyRequired: true``, ``requestValidation`` or ``cacheKeyParameters`` on any other route
would be accepted and never run: a client without a token, a key or a valid body would get the
route's answer. So each is a diagnostic naming the field, from `propylon validate`, from
`propylon serve` (which then serves nothing of the Api) and in the operator's conditions.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from propylon_operator import compiling, documents, inventory
from tests.cli.test_validate import propylon
from tests.serve.test_serve import Served, _wait_for

HEAD = """\
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {name: hs, namespace: default}
spec:
  type: JWT
  identitySource: ["$request.header.Authorization"]
  jwt: {issuer: i, audience: [a], algorithms: [HS256], secretRef: {name: s, key: k}}
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: default}
stringData: {k: "0123456789abcdef0123456789abcdef"}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: wauth, namespace: default}
spec: {apiRef: wauth}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: wauth, namespace: default}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  models:
    M: {type: object}
  routes:
"""

MOCK = "integration: {type: MOCK, mock: {statusCode: 200, body: SECRET-DATA}}"

FIELDS = {
    "authorizer": "authorizer: hs",
    # Without an authorizer the schema already refuses scopes ("authorizationScopes need an authorizer").
    "authorizationScopes": 'authorizer: hs, authorizationScopes: ["a/b"]',
    "apiKeyRequired": "apiKeyRequired: true",
    "requestValidation": "requestValidation: {body: M}",
    "cacheKeyParameters": 'cacheKeyParameters: ["header.X"]',
}


def _manifest(tmp: Path, *routes: str) -> Path:
    path = tmp / "api.yaml"
    path.write_text(HEAD + "".join(f"    - {{{route}}}\n" for route in routes))
    return path


@pytest.mark.parametrize("route_key", ["secret", "$default", "$disconnect"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_validate_refuses_a_check_on_a_route_other_than_connect(tmp_path: Path, field: str, route_key: str) -> None:
    path = _manifest(tmp_path, f'routeKey: "$connect", {MOCK}', f'routeKey: "{route_key}", {FIELDS[field]}, {MOCK}')
    result = propylon("validate", "-f", str(path))
    assert result.returncode != 0
    expected = (
        f"document 4 (Api default/wauth): spec.routes[1].{field}: {field} does not apply to "
        f"WEBSOCKET route {route_key!r} (only $connect checks it)"
    )
    assert expected in result.stdout + result.stderr


def test_the_same_checks_on_connect_and_unset_ones_elsewhere_validate(tmp_path: Path) -> None:
    connect_checks = 'authorizer: hs, authorizationScopes: ["a/b"], apiKeyRequired: true'
    path = _manifest(
        tmp_path,
        f'routeKey: "$connect", {connect_checks}, {MOCK}',
        f'routeKey: "secret", apiKeyRequired: false, authorizer: null, {MOCK}',
    )
    result = propylon("validate", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


async def test_serve_never_answers_a_message_route_whose_checks_it_would_skip(tmp_path: Path) -> None:
    fields = ", ".join(v for k, v in FIELDS.items() if k != "authorizer")
    folder = tmp_path / "manifests"
    folder.mkdir()
    _manifest(folder, f'routeKey: "secret", {fields}, routeResponseSelectionExpression: "$default", {MOCK}')
    served = Served(folder, tmp_path)
    try:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{served.port}/wauth") as client:
                await client.send('{"action": "secret"}')
                pytest.fail(f"the unchecked route answered {await client.recv()!r}")
        assert refused.value.response.status_code == 404
        said = "spec.routes[0].authorizer: authorizer does not apply to WEBSOCKET route 'secret'"
        assert _wait_for(lambda: said in served.stderr() + served.stdout_path.read_text(errors="replace"), 10)
    finally:
        served.stop()


def test_the_operator_marks_such_an_api_not_accepted_and_names_the_field() -> None:
    api = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Api",
        "metadata": {"name": "wauth", "namespace": "demo", "generation": 1},
        "spec": {
            "protocol": "WEBSOCKET",
            "routeSelectionExpression": "$request.body.action",
            "routes": [
                {
                    "routeKey": "secret",
                    "apiKeyRequired": True,
                    "integration": {"type": "MOCK", "mock": {"statusCode": 200, "body": "s"}},
                }
            ],
        },
    }
    stage = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "live", "namespace": "demo"},
        "spec": {"apiRef": "wauth", "basePath": "/live"},
    }
    inputs = {inventory.Key.of(b): documents.to_document(copy.deepcopy(b)) for b in (api, stage)}
    outcome = compiling.LastGood().compile(inputs)
    verdict = outcome.verdict(inventory.Key("Api", "demo", "wauth"))
    assert not verdict.ready and not verdict.accepted
    assert "spec.routes[0].apiKeyRequired" in verdict.message
    assert "apiKeyRequired does not apply to WEBSOCKET route 'secret'" in verdict.message
    assert not outcome.snapshot.stages or all(not s.routes for s in outcome.snapshot.stages)
