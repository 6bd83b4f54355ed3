"""examples/kubernetes through the operator, as its comments promise a user.

No kubelet runs here, so the echo Deployment never starts; its place is taken by an echo
server in a network namespace, which the test publishes in the EndpointSlice the EndpointSlice
controller would have written for the example's Service.
"""

from __future__ import annotations

import json
import pathlib
import uuid

import operator_env as op

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "kubernetes"


def test_kubernetes_example_is_served_through_the_operator(gateway: op.Env, test_hosts) -> None:
    env = gateway
    host = test_hosts("example-echo")
    applied = env.plane.kubectl("apply", "-f", str(EXAMPLE)).stdout
    assert "api.propylon.dev/echo" in applied
    env.plane.apply(f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-{uuid.uuid4().hex[:6]}
  namespace: demo
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: http, port: {host.port}, protocol: TCP}}]
endpoints: [{{addresses: ["{host.address}"], conditions: {{ready: true}}}}]
""")
    # The example lives in "demo"; this operator watches it for the length of the test.
    env.watched = "demo"
    env.start_operator()

    stage = op.eventually(
        lambda: (s := env.get("stage", "-n", "demo", "prod")) and (s.get("status") or {}).get("configVersion") and s,
        op.CHANGE_WITHIN * 2,
        "the example's Stage is published",
    )
    assert stage["status"]["url"] == f"http://{op.GATEWAY}.{env.gw_ns}.svc/prod"
    api = env.get("api", "-n", "demo", "echo")
    assert op.condition(api, "Ready")["status"] == "True", api.get("status")

    _, port = env.start_proxy()
    status, body = op.get(f"http://127.0.0.1:{port}/prod/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = op.get(f"http://127.0.0.1:{port}/prod/echo/a/b?x=1")
    assert status == 200, body
    assert json.loads(body)["backend"] == "example-echo"
    assert json.loads(body)["path"] == "/echo/a/b"
    status, body = op.get(f"http://127.0.0.1:{port}/prod/users/42")
    assert status == 200, body
    assert json.loads(body)["path"] == "/v1/users/42"
