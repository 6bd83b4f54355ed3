"""``propylon proxy --config-secret`` as a real process against the real API server.

The snapshot is compiled in the test from Kubernetes-style manifests and stored in a Secret by
hand, as the operator would; the backends are echo servers in network namespaces, reached
through a Service and an EndpointSlice that the test writes. The proxy dials them for real.
"""

from __future__ import annotations

import base64
import json
import pathlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import cluster
import pytest
import yaml

from propylon_compiler import compiler, manifests
from propylon_config import model
from tests import processes

CHANGE_WITHIN = 5.0  # seconds a Secret or EndpointSlice change may take to reach the proxy
START_WITHIN = 30.0
REPLICA = "proxy-test-0"


def _manifests(namespace: str, base_path: str) -> str:
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: echo, namespace: {namespace}}}
spec:
  routes:
    - routeKey: ANY /echo/{{proxy+}}
      integration: {{type: HTTP_PROXY, service: {{name: echo, port: 80}}}}
    - routeKey: GET /health
      integration:
        type: MOCK
        mock: {{statusCode: 200, headers: {{Content-Type: application/json}}, body: '{{"ok": true}}'}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: {namespace}}}
spec: {{apiRef: echo, basePath: {base_path}}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
"""


def _compile(namespace: str, base_path: str) -> model.GatewayConfig:
    documents, problems = manifests.parse_text(_manifests(namespace, base_path), "test.yaml")
    assert not problems
    result = compiler.compile(documents)
    assert result.ok, result.diagnostics
    return result.snapshot


def _store(plane: cluster.ControlPlane, namespace: str, payload: bytes) -> None:
    plane.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "gw-snapshot", "namespace": namespace},
                "data": {"snapshot.json": base64.b64encode(payload).decode()},
            }
        )
    )


def _store_config(plane: cluster.ControlPlane, namespace: str, config: model.GatewayConfig) -> None:
    from propylon_config import codec

    _store(plane, namespace, codec.dumps(config).encode())


def _backend_objects(namespace: str, address: str) -> str:
    service = yaml.safe_load(_manifests(namespace, "/x").split("---")[2])
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "echo-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [service, slice_]})


def _get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as error:
        return 0, str(error)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def _eventually(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


class Proxy(processes.PropylonProcess):
    """One ``propylon proxy`` reading ``NAMESPACE/gw-snapshot``; its output goes to a log file the test can read."""

    def __init__(
        self, plane: cluster.ControlPlane, namespace: str, workdir: pathlib.Path, kubeconfig: pathlib.Path | None = None
    ) -> None:
        self.port, self.internal_port, self.admin_port = cluster.free_port(), cluster.free_port(), cluster.free_port()
        super().__init__(
            ["proxy", "--config-secret", f"{namespace}/gw-snapshot",
             "--kubeconfig", str(kubeconfig or plane.kubeconfig), "--host", "127.0.0.1", "--port", str(self.port),
             "--internal-port", str(self.internal_port), "--admin-port", str(self.admin_port)],
            workdir / "proxy.log",
            env={"POD_NAME": REPLICA},
        )  # fmt: skip

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            return self.alive() and _get(f"http://127.0.0.1:{self.admin_port}/readyz")[0] == 200

        _eventually(ready, START_WITHIN, "the proxy is ready")


@pytest.fixture
def namespace(kube_apiserver: cluster.ControlPlane) -> str:
    name = f"proxy-{uuid.uuid4().hex[:8]}"
    kube_apiserver.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def start_proxy(kube_apiserver, namespace, tmp_path) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def start(secret_namespace: str = namespace, kubeconfig: pathlib.Path | None = None) -> Proxy:
        proxy = Proxy(kube_apiserver, secret_namespace, tmp_path, kubeconfig)
        started.append(proxy)
        proxy.wait_ready()
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


def _lease_version(plane: cluster.ControlPlane, namespace: str) -> str | None:
    result = plane.kubectl("get", "lease", "-n", namespace, f"gw-snapshot-{REPLICA}", "-o", "json", check=False)
    if result.returncode:
        return None
    lease = json.loads(result.stdout)
    assert lease["metadata"]["labels"] == {"propylon.dev/snapshot-secret": "gw-snapshot"}
    assert lease["spec"]["holderIdentity"] == REPLICA
    return lease["metadata"]["annotations"].get("propylon.dev/config-version")


def test_proxy_serves_the_secret_and_follows_secret_and_endpoint_changes(
    kube_apiserver, namespace, test_hosts, start_proxy
) -> None:
    blue, green = test_hosts("blue"), test_hosts("green")
    kube_apiserver.apply(_backend_objects(namespace, blue.address))
    first = _compile(namespace, "/prod")
    _store_config(kube_apiserver, namespace, first)
    proxy = start_proxy()

    status, answer = _get(proxy.url("/prod/echo/hello?x=1"))
    assert status == 200, answer
    assert answer["backend"] == "blue"
    assert (answer["method"], answer["path"], answer["query"]) == ("GET", "/echo/hello", "x=1")
    _eventually(lambda: _lease_version(kube_apiserver, namespace) == first.version, CHANGE_WITHIN, "lease version")

    # A new snapshot in the Secret changes routing.
    second = _compile(namespace, "/live")
    assert second.version != first.version
    _store_config(kube_apiserver, namespace, second)
    _eventually(lambda: _get(proxy.url("/live/echo/a"))[0] == 200, CHANGE_WITHIN, "the new base path serves")
    assert _get(proxy.url("/prod/echo/a"))[0] == 404
    _eventually(lambda: _lease_version(kube_apiserver, namespace) == second.version, CHANGE_WITHIN, "lease version")

    # A new EndpointSlice moves the traffic.
    kube_apiserver.apply(_backend_objects(namespace, green.address))
    _eventually(lambda: _get(proxy.url("/live/echo/b"))[1].get("backend") == "green", CHANGE_WITHIN, "traffic on green")

    # A broken snapshot is reported and the last good one keeps serving.
    _store(kube_apiserver, namespace, b'{"schema_version": 1, "stages": "not a list"')
    _eventually(lambda: "unparsable snapshot" in proxy.log(), CHANGE_WITHIN, "the broken snapshot is logged")
    status, answer = _get(proxy.url("/live/echo/c"))
    assert (status, answer["backend"]) == (200, "green")
    assert _lease_version(kube_apiserver, namespace) == second.version

    # A replica that shuts down gives its Lease back rather than letting it count for 30 s more.
    proxy.stop()
    assert proxy.process.returncode == 0, proxy.log()
    assert _lease_version(kube_apiserver, namespace) is None


def test_proxy_works_with_exactly_the_rbac_the_operator_grants_it(
    kube_apiserver, namespace, test_hosts, start_proxy
) -> None:
    from propylon_operator import settings, workloads

    # The gateway (Secret, Lease, proxy identity) in one namespace, the Api and backend in another.
    gateway_namespace = f"gw-{uuid.uuid4().hex[:8]}"
    kube_apiserver.kubectl("create", "namespace", gateway_namespace)
    gateway = settings.Settings(gateway_name="gw", gateway_namespace=gateway_namespace)
    assert gateway.snapshot_secret == "gw-snapshot"
    user = f"proxy-{gateway_namespace}"
    grants = [workloads.role(gateway, None), workloads.role_binding(gateway, None), workloads.cluster_role(gateway)]
    grants.append(workloads.cluster_role_binding(gateway))
    for binding in grants[1], grants[3]:  # the same grants, bound to a user the test has a certificate for
        binding["subjects"] = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
    kube_apiserver.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": grants}))
    kubeconfig = kube_apiserver.user_kubeconfig(user)
    denied = kube_apiserver.kubectl("--kubeconfig", str(kubeconfig), "get", "secrets", "-n", namespace, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr  # the identity really is restricted

    backend = test_hosts("restricted")
    kube_apiserver.apply(_backend_objects(namespace, backend.address))
    config = _compile(namespace, "/prod")
    _store_config(kube_apiserver, gateway_namespace, config)
    proxy = start_proxy(gateway_namespace, kubeconfig)

    status, answer = _get(proxy.url("/prod/echo/rbac"))
    assert (status, answer["backend"]) == (200, "restricted"), proxy.log()
    _eventually(lambda: _lease_version(kube_apiserver, gateway_namespace) == config.version, CHANGE_WITHIN, "the Lease")


def test_proxy_keeps_serving_while_the_api_server_is_down_and_catches_up_after(
    kube_apiserver, namespace, test_hosts, start_proxy
) -> None:
    backend = test_hosts("steady")
    kube_apiserver.apply(_backend_objects(namespace, backend.address))
    _store_config(kube_apiserver, namespace, _compile(namespace, "/prod"))
    proxy = start_proxy()
    assert _get(proxy.url("/prod/echo/x"))[1]["backend"] == "steady"

    kube_apiserver.stop_apiserver()
    try:
        _eventually(lambda: "API server unreachable" in proxy.log(), 90, "the outage is noticed and logged")
        for _ in range(20):
            status, answer = _get(proxy.url("/prod/echo/x"))
            assert (status, answer["backend"]) == (200, "steady")
        assert _get(proxy.url("/prod/health"))[0] == 200
    finally:
        kube_apiserver.start_apiserver()

    # Once the API server is back, the watches reconnect and a new snapshot is picked up.
    later = _compile(namespace, "/after")
    _store_config(kube_apiserver, namespace, later)
    _eventually(lambda: _get(proxy.url("/after/echo/y"))[0] == 200, 30, "the snapshot written after the outage")
    assert proxy.process.poll() is None


def test_a_function_route_to_a_service_is_invoked_through_its_endpointslices(
    kube_apiserver, namespace, test_hosts, start_proxy
) -> None:
    handlers = pathlib.Path(__file__).parents[1] / "functions" / "handlers"
    function = test_hosts("fn", function="plain.echo", path=str(handlers))
    kube_apiserver.apply(_backend_objects(namespace, function.address))
    text = f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: fn, namespace: {namespace}}}
spec:
  routes:
    - routeKey: GET /fn/{{id}}
      integration: {{type: FUNCTION, service: {{name: echo, port: 80}}, payloadFormatVersion: "1.0"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: {namespace}}}
spec: {{apiRef: fn, basePath: /prod}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
"""
    documents, problems = manifests.parse_text(text, "fn.yaml")
    assert not problems
    result = compiler.compile(documents)
    assert result.ok, result.diagnostics
    _store_config(kube_apiserver, namespace, result.snapshot)
    proxy = start_proxy()
    status, answer = _get(proxy.url("/prod/fn/42?q=1"))
    assert status == 200, answer
    assert answer["event"]["pathParameters"] == {"id": "42"}
    assert answer["event"]["requestContext"]["accountId"] == namespace
