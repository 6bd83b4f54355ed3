"""Stage canaries in the compiler: what the audit found (docs/canary.md, DESIGN.md §1, §3, §8).

- The canary side carries its own Api's gateway responses (§3: overridable per Api); the main
  side keeps its Api's.
- A routeSettings key, or a UsagePlan per-route throttle key, may name a route only the canary
  Api has (docs/canary.md: routeSettings apply to both sides).
- A key naming a route of neither Api is a diagnostic on that field that breaks nothing: the
  Stage and the plan keep serving (§1 "the rest of the gateway keeps serving"; an Api edit that
  removes a route cannot take down the unchanged Stage naming it, as no last good version helps).
"""

from __future__ import annotations

from propylon_compiler import compiler, statuses
from propylon_config import model
from tests.compiler.test_compiler import documents

APIS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users, namespace: shop}
spec:
  gatewayResponses:
    INVALID_API_KEY: {statusCode: 403, body: '{"message":"main-key"}'}
  routes:
    - routeKey: "GET /a"
      integration: {type: MOCK, mock: {body: main-a}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users-v2, namespace: shop}
spec:
  gatewayResponses:
    INVALID_API_KEY: {statusCode: 403, body: '{"message":"canary-key"}'}
  routes:
    - routeKey: "GET /a"
      integration: {type: MOCK, mock: {body: canary-a}}
    - routeKey: "GET /c"
      integration: {type: MOCK, mock: {body: canary-c}}
"""
STAGE = """\
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec:
  apiRef: users
  canary: {{apiRef: users-v2, percentTraffic: 100}}
  routeSettings:
    "{key}": {{throttle: {{rateLimit: 1, burstLimit: 1}}}}
"""
PLAN = """\
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: basic, namespace: shop}}
spec:
  stages:
    - stageRef: prod
      throttle:
        "{key}": {{rateLimit: 2, burstLimit: 2}}
        "GET /a": {{rateLimit: 3, burstLimit: 3}}
  apiKeySelector: {{matchLabels: {{plan: basic}}}}
"""


def _compile(text: str) -> compiler.CompileResult:
    return compiler.compile(documents(text))


def _status(result: compiler.CompileResult, kind: str, name: str) -> statuses.ObjectStatus:
    return next(s for s in result.objects if (s.kind, s.name) == (kind, name))


def _stage(result: compiler.CompileResult) -> model.Stage:
    (stage,) = result.snapshot.stages
    return stage


def test_the_canary_side_carries_the_canary_apis_gateway_responses() -> None:
    stage = _stage(_compile(APIS + STAGE.format(key="GET /a")))
    assert dict(stage.gateway_responses)["INVALID_API_KEY"].body == '{"message":"main-key"}'
    assert stage.canary is not None
    assert dict(stage.canary.gateway_responses)["INVALID_API_KEY"].body == '{"message":"canary-key"}'


def test_route_settings_may_name_a_route_only_the_canary_has() -> None:
    result = _compile(APIS + STAGE.format(key="GET /c"))
    assert not result.diagnostics, result.diagnostics
    status = _status(result, "Stage", "prod")
    assert status.accepted and status.ready, status
    stage = _stage(result)
    assert stage.canary is not None
    (c,) = [r for r in stage.canary.routes if r.route_key == "GET /c"]
    assert c.throttle == model.Throttle(rate_limit=1.0, burst_limit=1) and c.throttle_from_route_settings


def test_a_plan_throttle_may_name_a_route_only_the_canary_has() -> None:
    result = _compile(APIS + STAGE.format(key="GET /a") + PLAN.format(key="GET /c"))
    assert not result.diagnostics, result.diagnostics
    (plan,) = result.snapshot.usage_plans
    assert dict(plan.stages[0].route_throttles)["GET /c"] == model.Throttle(rate_limit=2.0, burst_limit=2)


def test_a_route_settings_key_naming_no_route_keeps_the_stage_serving() -> None:
    result = _compile(APIS + STAGE.format(key="GET /gone"))
    (diagnostic,) = result.diagnostics
    assert str(diagnostic).endswith(
        "spec.routeSettings[\"GET /gone\"]: no route 'GET /gone' in Api shop/users or its canary Api shop/users-v2"
    ), str(diagnostic)
    status = _status(result, "Stage", "prod")
    assert status.accepted and not status.ready and status.reason == "MissingReference", status
    assert "GET /gone" in status.message
    stage = _stage(result)  # served, and the unknown key's limit applies to no route
    assert stage.canary is not None
    assert all(not r.throttle_from_route_settings for r in (*stage.routes, *stage.canary.routes))


def test_a_plan_throttle_key_naming_no_route_keeps_the_plan_and_its_other_limits() -> None:
    result = _compile(APIS + STAGE.format(key="GET /a") + PLAN.format(key="GET /gone"))
    (diagnostic,) = result.diagnostics
    assert "spec.stages[0].throttle[\"GET /gone\"]: no route 'GET /gone'" in str(diagnostic), str(diagnostic)
    status = _status(result, "UsagePlan", "basic")
    assert status.accepted and not status.ready and status.reason == "MissingReference", status
    (plan,) = result.snapshot.usage_plans
    assert plan.stages[0].route_throttles == (("GET /a", model.Throttle(rate_limit=3.0, burst_limit=3)),)
