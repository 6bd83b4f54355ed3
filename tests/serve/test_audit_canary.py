"""Stage canaries through `propylon serve`: what the audit found (docs/canary.md, DESIGN.md §1, §3, §8).

A canary request gets the canary Api's route table, so every error the gateway makes for it is
the canary Api's (§3: gateway responses are overridable per Api), including the 404 and the
preflight answer for a path no canary route has (with the canary Api's CORS), and the access log
and metrics name the canary Api. A routeSettings or UsagePlan per-route key may name a route only
the canary has; a key naming no route at all is reported and breaks nothing (the Stage and plan
keep serving, also when an Api edit under ``--watch`` removes the route a key names).
All MOCK integrations: what is checked is what the gateway itself answers.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from tests.serve.test_serve import Served, _get, _wait_for, _write

APIS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users, namespace: shop}
spec:
  cors: {allowOrigins: ["https://main.example"], allowMethods: [GET]}
  gatewayResponses:
    INVALID_API_KEY: {statusCode: 403, body: '{"message":"main-key"}'}
    UNAUTHORIZED: {statusCode: 401, body: '{"message":"main-unauthorized"}'}
    BAD_REQUEST_BODY: {statusCode: 400, body: '{"message":"main-bad-body"}'}
    DEFAULT_4XX: {headers: {X-Side: main}}
  models:
    M: {type: object, required: [b]}
  routes:
    - routeKey: "GET /a"
      integration: {type: MOCK, mock: {body: main-a}}
    - routeKey: "GET /onlymain"
      integration: {type: MOCK, mock: {body: onlymain}}
    - routeKey: "GET /k"
      apiKeyRequired: true
      integration: {type: MOCK, mock: {body: main-k}}
    - routeKey: "POST /v"
      requestValidation: {body: M}
      integration: {type: MOCK, mock: {body: main-v}}
    - routeKey: "GET /jwt"
      authorizer: shared
      integration: {type: MOCK, mock: {body: main-jwt}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users-v2, namespace: shop}
spec:
  cors: {allowOrigins: ["https://canary.example"], allowMethods: [GET]}
  gatewayResponses:
    INVALID_API_KEY: {statusCode: 403, body: '{"message":"canary-key"}'}
    UNAUTHORIZED: {statusCode: 401, body: '{"message":"canary-unauthorized"}'}
    BAD_REQUEST_BODY: {statusCode: 422, body: '{"message":"canary-bad-body"}'}
    DEFAULT_4XX: {headers: {X-Side: canary}}
  models:
    M: {type: object, required: [b]}
  routes:
    - routeKey: "GET /a"
      integration: {type: MOCK, mock: {body: canary-a}}
    - routeKey: "GET /onlycanary"
      integration: {type: MOCK, mock: {body: onlycanary}}
    - routeKey: "GET /keyed"
      apiKeyRequired: true
      integration: {type: MOCK, mock: {body: keyed}}
    - routeKey: "GET /k"
      apiKeyRequired: true
      integration: {type: MOCK, mock: {body: canary-k}}
    - routeKey: "POST /v"
      requestValidation: {body: M}
      integration: {type: MOCK, mock: {body: canary-v}}
    - routeKey: "GET /jwt"
      authorizer: shared
      integration: {type: MOCK, mock: {body: canary-jwt}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {name: shared, namespace: shop}
spec:
  jwt:
    issuer: internal
    algorithms: [HS256]
    secretRef: {name: jwt-secret, key: secret}
---
apiVersion: v1
kind: Secret
metadata: {name: jwt-secret, namespace: shop}
stringData: {secret: "a-shared-secret-of-at-least-32-bytes!"}
---
apiVersion: v1
kind: Secret
metadata: {name: alice, namespace: shop, labels: {plan: onlycanary}}
stringData: {value: "alice-key-at-least-20-chars"}
---
apiVersion: v1
kind: Secret
metadata: {name: bob, namespace: shop, labels: {plan: stale}}
stringData: {value: "bob-key-at-least-20-chars"}
"""
STAGE = """\
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: {name}, namespace: shop}}
spec:
  apiRef: users
  accessLog: {{enabled: true}}
  canary: {{apiRef: users-v2, percentTraffic: {percent}}}
{extra}"""
PLANS = """\
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {name: onlycanary, namespace: shop}
spec:
  stages:
    - stageRef: plan
      throttle: {"GET /keyed": {rateLimit: 1, burstLimit: 1}}
  apiKeySelector: {matchLabels: {plan: onlycanary}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {name: stale, namespace: shop}
spec:
  stages:
    - stageRef: stale
      throttle:
        "GET /gone": {rateLimit: 100, burstLimit: 100}
        "GET /k": {rateLimit: 1, burstLimit: 1}
  apiKeySelector: {matchLabels: {plan: stale}}
"""
ROUTE_SETTINGS = '  routeSettings:\n    "{key}": {{throttle: {{rateLimit: 1, burstLimit: 1}}}}\n'
CANARY_ORIGIN, MAIN_ORIGIN = "https://canary.example", "https://main.example"
ALICE, BOB = "alice-key-at-least-20-chars", "bob-key-at-least-20-chars"


def _manifests() -> str:
    stages = [
        STAGE.format(name="prod", percent=100, extra=""),  # every request is a canary request
        STAGE.format(name="main0", percent=0, extra=""),  # none is: the main side, unchanged
        STAGE.format(name="rs", percent=100, extra=ROUTE_SETTINGS.format(key="GET /onlycanary")),
        STAGE.format(name="plan", percent=100, extra=""),
        STAGE.format(name="stale", percent=100, extra=ROUTE_SETTINGS.format(key="GET /gone")),
    ]
    return APIS + "".join(stages) + PLANS


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("audit-canary")
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(_manifests())
    served = Served(folder, tmp)
    try:
        yield served
    finally:
        served.stop()


def _ask(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, Message, str]:
    """(status, headers, body text) of one request, errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def _log_lines(served: Served, path: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in served.stdout_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("path") == path]


def test_canary_refusals_use_the_canary_apis_gateway_responses(gateway: Served) -> None:
    status, _, body = _ask(gateway.url("/prod/k"))
    assert (status, json.loads(body)) == (403, {"message": "canary-key"})
    status, _, body = _ask(
        gateway.url("/prod/v"), "POST", {"Content-Type": "application/json"}, json.dumps({"a": 1}).encode()
    )
    assert (status, json.loads(body)) == (422, {"message": "canary-bad-body"})
    status, _, body = _ask(gateway.url("/prod/jwt"))
    assert (status, json.loads(body)) == (401, {"message": "canary-unauthorized"})
    status, headers, _ = _ask(gateway.url("/prod/onlymain"))
    assert (status, headers["X-Side"]) == (404, "canary")  # the canary Api's DEFAULT_4XX


def test_main_side_refusals_keep_the_main_apis_gateway_responses(gateway: Served) -> None:
    status, _, body = _ask(gateway.url("/main0/k"))
    assert (status, json.loads(body)) == (403, {"message": "main-key"})
    status, _, body = _ask(gateway.url("/main0/jwt"))
    assert (status, json.loads(body)) == (401, {"message": "main-unauthorized"})
    status, headers, _ = _ask(gateway.url("/main0/onlycanary"), headers={"Origin": MAIN_ORIGIN})
    assert (status, headers["X-Side"], headers["Access-Control-Allow-Origin"]) == (404, "main", MAIN_ORIGIN)


def test_a_canary_request_no_canary_route_matches_is_the_canary_apis_404(gateway: Served) -> None:
    status, headers, body = _ask(gateway.url("/prod/onlymain"), headers={"Origin": CANARY_ORIGIN})
    assert (status, json.loads(body)["message"]) == (404, "Not Found")
    assert headers["X-Side"] == "canary"
    assert headers["Access-Control-Allow-Origin"] == CANARY_ORIGIN
    status, headers, _ = _ask(gateway.url("/prod/onlymain"), headers={"Origin": MAIN_ORIGIN})
    assert status == 404 and "Access-Control-Allow-Origin" not in headers


def test_a_canary_preflight_for_a_path_no_canary_route_has_follows_the_canary_cors(gateway: Served) -> None:
    asked = {"Access-Control-Request-Method": "GET"}
    status, headers, _ = _ask(gateway.url("/prod/nothere"), "OPTIONS", {"Origin": CANARY_ORIGIN, **asked})
    assert (status, headers["Access-Control-Allow-Origin"]) == (204, CANARY_ORIGIN)
    status, headers, _ = _ask(gateway.url("/prod/nothere"), "OPTIONS", {"Origin": MAIN_ORIGIN, **asked})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_access_log_and_metrics_name_the_canary_api(gateway: Served) -> None:
    paths = ("/prod/onlycanary", "/prod/unmatched", "/main0/onlymain")  # asked here only
    assert [_ask(gateway.url(path))[0] for path in paths] == [200, 404, 200]

    def logged() -> list[dict[str, object]]:
        return [line for path in paths for line in _log_lines(gateway, path)]

    assert _wait_for(lambda: len(logged()) == 3, 5.0), gateway.stdout_path.read_text()
    sides = [(line["path"], line["apiId"], line["canary"]) for line in logged()]
    assert sides == [
        ("/prod/onlycanary", "shop/users-v2", True),
        ("/prod/unmatched", "shop/users-v2", True),
        ("/main0/onlymain", "shop/users", False),
    ]
    page = urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin}/metrics", timeout=5).read().decode()
    unmatched = re.findall(r'^propylon_requests_total\{([^}]*route="",stage="shop/prod"[^}]*)\}', page, re.M)
    assert unmatched and all('api="shop/users-v2"' in labels for labels in unmatched), unmatched


def test_route_settings_may_name_a_route_only_the_canary_has(gateway: Served) -> None:
    assert _get(gateway.url("/rs/onlycanary")) == (200, b"onlycanary")
    assert _get(gateway.url("/rs/onlycanary"))[0] == 429  # its routeSettings limit: burst 1
    assert "Stage shop/rs" not in gateway.stderr()  # no diagnostic: the key is the canary's route


def test_a_plan_limit_may_name_a_route_only_the_canary_has(gateway: Served) -> None:
    key = {"x-api-key": ALICE}
    assert _ask(gateway.url("/plan/keyed"), headers=key)[::2] == (200, "keyed")
    assert _ask(gateway.url("/plan/keyed"), headers=key)[0] == 429  # the plan's per-route limit


def test_keys_naming_no_route_keep_the_stage_and_the_plan_serving(gateway: Served) -> None:
    assert "spec.routeSettings[\"GET /gone\"]: no route 'GET /gone'" in gateway.stderr()
    assert "spec.stages[0].throttle[\"GET /gone\"]: no route 'GET /gone'" in gateway.stderr()
    assert _get(gateway.url("/stale/a")) == (200, b"canary-a")  # the Stage is served
    key = {"x-api-key": BOB}
    assert _ask(gateway.url("/stale/k"), headers=key)[::2] == (200, "canary-k")  # the plan still admits bob
    assert _ask(gateway.url("/stale/k"), headers=key)[0] == 429  # and its valid limit still applies


WATCHED_API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /a"
      integration: {{type: MOCK, mock: {{body: a-{version}}}}}
{extra}"""
WATCHED_STAGE = """\
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  apiRef: users
  routeSettings:
    "GET /b": {throttle: {rateLimit: 100, burstLimit: 100}}
"""
ROUTE_B = '    - routeKey: "GET /b"\n      integration: {type: MOCK, mock: {body: b}}\n'


def test_an_api_edit_removing_a_route_named_in_route_settings_keeps_the_stage(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(WATCHED_API.format(version="v1", extra=ROUTE_B))
    (folder / "stage.yaml").write_text(WATCHED_STAGE)
    served = Served(folder, tmp_path, "--watch", "--poll-interval", "0.2")
    try:
        assert _get(served.url("/prod/a")) == (200, b"a-v1")
        _write(folder / "api.yaml", WATCHED_API.format(version="v2", extra=""))
        assert _wait_for(lambda: _get(served.url("/prod/a")) == (200, b"a-v2"), 5.0), served.stderr()
        assert "no route 'GET /b' in Api shop/users" in served.stderr()
        assert _get(served.url("/prod/b"))[0] == 404
    finally:
        assert served.stop() == 0
