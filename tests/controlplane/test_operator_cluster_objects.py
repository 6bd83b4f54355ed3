"""The operator with the cluster objects the compiler needs: Services, EndpointSlices, API keys.

Backends live in network namespaces (``test_hosts``) because the API server refuses loopback
addresses in EndpointSlices. The HTTP_PROXY route names a Service; the operator feeds the
Service and its EndpointSlice to the compiler, and the proxy dials the endpoint for real.
"""

from __future__ import annotations

import json
import time

import operator_env as op
import pytest

pytestmark = pytest.mark.controlplane


def _objects(namespace: str, address: str) -> str:
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: echo, namespace: {namespace}}}
spec:
  routes:
    - routeKey: ANY /echo/{{proxy+}}
      integration: {{type: HTTP_PROXY, service: {{name: echo, port: 80}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: {namespace}}}
spec: {{apiRef: echo, basePath: /prod}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints: [{{addresses: ["{address}"], conditions: {{ready: true}}}}]
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: basic, namespace: {namespace}}}
spec:
  stages: [{{stageRef: prod}}]
  apiKeySelector: {{matchLabels: {{propylon.dev/usage-plan: basic}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: alice, namespace: {namespace}, labels: {{propylon.dev/usage-plan: basic}}}}
stringData: {{value: a-key-of-at-least-20-characters}}
"""


def test_service_routes_usage_plans_autoscaler_and_a_deleted_secret(gateway: op.Env, test_hosts) -> None:
    env = gateway
    host = test_hosts("operator-echo")
    env.start_operator("--hpa-max", "3")
    env.plane.apply(_objects(env.app_ns, host.address))

    op.eventually(
        lambda: (
            (s := env.get("stage", "-n", env.app_ns, "prod")) and (s.get("status") or {}).get("configVersion") and s
        ),
        op.CHANGE_WITHIN * 2,
        "Stage status",
    )
    _, port = env.start_proxy()
    status, body = op.get(f"http://127.0.0.1:{port}/prod/echo/hi?x=1")
    assert status == 200, body
    assert json.loads(body)["backend"] == "operator-echo"

    plan = op.eventually(
        lambda: (p := env.get("usageplan", "-n", env.app_ns, "basic")) and "keyCount" in (p.get("status") or {}) and p,
        op.CHANGE_WITHIN,
        "UsagePlan status",
    )
    assert plan["status"]["keyCount"] == 1
    assert op.condition(plan, "Ready")["status"] == "True"
    env.plane.apply(f"""
apiVersion: v1
kind: Secret
metadata: {{name: bob, namespace: {env.app_ns}, labels: {{propylon.dev/usage-plan: basic}}}}
stringData: {{value: another-key-of-at-least-20-characters}}
""")
    op.eventually(
        lambda: (env.get("usageplan", "-n", env.app_ns, "basic")["status"] or {}).get("keyCount") == 2,
        op.CHANGE_WITHIN,
        "a new key is counted",
    )

    hpa = op.eventually(
        lambda: env.get("horizontalpodautoscaler", "-n", env.gw_ns, op.GATEWAY), op.CHANGE_WITHIN, "the HPA"
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    deployment = env.get("deployment", "-n", env.gw_ns, op.GATEWAY, "--show-managed-fields")
    managed = [m for m in deployment["metadata"]["managedFields"] if m["manager"] == "propylon-operator"]
    assert managed and "f:replicas" not in json.dumps(managed[0]["fieldsV1"].get("f:spec", {}))

    # Someone deletes the snapshot Secret: the operator puts it back, same version (the key
    # added above is in the snapshot now, so the version is read just before the delete).
    before = env.secret()
    version = before["metadata"]["annotations"]["propylon.dev/config-version"]
    old_uid = before["metadata"]["uid"]
    env.plane.kubectl("delete", "secret", "-n", env.gw_ns, f"{op.GATEWAY}-snapshot")
    secret = op.eventually(
        lambda: (s := env.secret()) and s["metadata"]["uid"] != old_uid and s, op.CHANGE_WITHIN * 2, "Secret recreated"
    )
    assert secret["metadata"]["annotations"]["propylon.dev/config-version"] == version
    status, _ = op.get(f"http://127.0.0.1:{port}/prod/echo/again")
    assert status == 200


def test_operator_rides_out_an_api_server_outage(gateway: op.Env) -> None:
    env = gateway
    operator = env.start_operator()
    env.plane.apply(op.api(env.app_ns, "http://127.0.0.1:9") + "---" + op.stage(env.app_ns))

    def served_version() -> str | None:
        stage = env.get("stage", "-n", env.app_ns, "dev")
        return ((stage or {}).get("status") or {}).get("configVersion")

    before = op.eventually(served_version, op.CHANGE_WITHIN * 2, "first version")
    env.plane.stop_apiserver()
    try:
        time.sleep(3)  # the operator's watches and writes fail meanwhile
    finally:
        env.plane.start_apiserver()
    operator.alive()

    env.plane.apply(op.api(env.app_ns, "http://127.0.0.1:9", greeting="after the outage"))
    after = op.eventually(
        lambda: (v := served_version()) != before and v, 60, "the edit made after the outage is published"
    )
    secret = env.secret()
    assert secret["metadata"]["annotations"]["propylon.dev/config-version"] == after
    operator.alive()


async def test_reconcile_fetches_secrets_that_authorizers_name(gateway: op.Env) -> None:
    """Unlabelled Secrets are inputs only while an Authorizer names them (jwt.secretRef)."""
    from propylon_operator import inventory, kube, reconciling, settings

    env = gateway
    env.plane.apply(f"""
apiVersion: v1
kind: Secret
metadata: {{name: jwt-secret, namespace: {env.app_ns}}}
stringData: {{secret: a-shared-secret-of-some-length}}
---
apiVersion: v1
kind: Secret
metadata: {{name: unrelated, namespace: {env.app_ns}}}
stringData: {{note: "not a key"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: hs, namespace: {env.app_ns}}}
spec:
  type: JWT
  identitySource: ["$request.header.Authorization"]
  jwt:
    issuer: https://issuer.example
    algorithms: [HS256]
    secretRef: {{name: jwt-secret, key: secret}}
""")
    configured = settings.Settings(gateway_name=op.GATEWAY, gateway_namespace=env.gw_ns, namespaces=(env.app_ns,))
    client = kube.Client(kube.load_configuration(str(env.plane.kubeconfig)))
    store = inventory.Inventory()
    reconciler = reconciling.Reconciler(configured, client, store)
    try:
        await reconciler.prime()
        await reconciler.reconcile()
        named = inventory.Key("Secret", env.app_ns, "jwt-secret")
        assert store.get(named) is not None
        assert store.get(inventory.Key("Secret", env.app_ns, "unrelated")) is None
        assert reconciler.wants_secret(store.get(named))

        env.plane.kubectl("delete", "authorizer", "-n", env.app_ns, "hs")
        store.discard(inventory.Key("Authorizer", env.app_ns, "hs"))  # what the watch would do
        await reconciler.reconcile()
        assert store.get(named) is None
    finally:
        await client.close()


def test_the_older_stage_keeps_a_contested_base_path(gateway: op.Env) -> None:
    env = gateway
    env.start_operator()
    env.plane.apply(op.api(env.app_ns, "http://127.0.0.1:9") + "---" + op.stage(env.app_ns))
    op.eventually(
        lambda: _status(env, "stage", "dev").get("configVersion"), op.CHANGE_WITHIN * 2, "first Stage published"
    )
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    env.plane.apply(f"""
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: dev-too, namespace: {env.app_ns}}}
spec: {{apiRef: pets, basePath: /dev}}
""")
    ready = op.eventually(
        lambda: (
            (c := op.condition(env.get("stage", "-n", env.app_ns, "dev-too"), "Ready")).get("status") == "False" and c
        ),
        op.CHANGE_WITHIN,
        "the newer Stage is refused",
    )
    assert ready["reason"] == "Conflict"
    assert "configVersion" not in _status(env, "stage", "dev-too")
    assert op.condition(env.get("stage", "-n", env.app_ns, "dev"), "Accepted")["status"] == "True"


def _status(env: op.Env, kind: str, name: str) -> dict:
    return (env.get(kind, "-n", env.app_ns, name) or {}).get("status") or {}
