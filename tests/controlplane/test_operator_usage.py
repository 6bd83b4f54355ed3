"""UsagePlan status after real traffic: the operator reads the proxy's /admin/usage and writes it.

The proxy (a local ``propylon proxy`` process, as in test_operator) announces its admin URL in
its Lease; the operator asks it at most every 30 s, so the status may take up to one interval
(plus the first pass) to show the requests.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import operator_env as op
import pytest

pytestmark = pytest.mark.controlplane

KEY = "alice-key-of-at-least-20-characters"
USAGE_WITHIN = 75.0  # one 30 s interval after the proxy's Lease appears, twice, plus slack


def _objects(namespace: str) -> str:
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: {namespace}}}
spec:
  routes:
    - routeKey: GET /items
      apiKeyRequired: true
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: {namespace}}}
spec: {{apiRef: shop, basePath: /prod}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: basic, namespace: {namespace}}}
spec:
  stages: [{{stageRef: prod}}]
  quota: {{limit: 10, period: DAY}}
  apiKeySelector: {{matchLabels: {{propylon.dev/usage-plan: basic}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: alice, namespace: {namespace}, labels: {{propylon.dev/usage-plan: basic}}}}
stringData: {{value: {KEY}}}
"""


def _call(port: int, key: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/prod/items", headers={"x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_usage_plan_status_shows_key_count_and_the_keys_quota_use(gateway: op.Env) -> None:
    env = gateway
    env.start_operator()
    env.plane.apply(_objects(env.app_ns))
    op.eventually(
        lambda: ((env.get("stage", "-n", env.app_ns, "prod") or {}).get("status") or {}).get("configVersion"),
        op.CHANGE_WITHIN * 2,
        "Stage status",
    )
    _, port = env.start_proxy()
    assert _call(port, "not-a-key-of-this-gateway-at-all") == 403
    assert [_call(port, KEY) for _ in range(3)] == [200, 200, 200]

    def usage() -> dict | None:
        status = (env.get("usageplan", "-n", env.app_ns, "basic") or {}).get("status") or {}
        used = ((status.get("usage") or {}).get("keys") or {}).get("alice", {}).get("used")
        return status if used == 3 else None

    status = op.eventually(usage, USAGE_WITHIN, "UsagePlan status with alice's use")
    assert status["keyCount"] == 1
    assert status["usage"]["keys"] == {"alice": {"used": 3, "remaining": 7}}
    assert status["usage"]["store"] == "memory"
    assert status["usage"]["reportedBy"] == "1 of 1 proxies"
    period = status["usage"]["period"]
    assert period["start"].endswith("T00:00:00Z") and period["end"].endswith("T00:00:00Z")
    reported = op.condition({"status": status}, "UsageReported")
    assert (reported["status"], reported["reason"]) == ("True", "Reported")
    assert KEY not in str(status)
