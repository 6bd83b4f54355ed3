"""Propylon on a real cluster: what a user of examples/kubernetes sees, checked end to end.

tools/kind/e2e.sh builds the image, creates a kind cluster, installs the chart, applies
examples/kubernetes/ and waits until Stage demo/prod is Ready, then runs this module. Unlike
tests/controlplane (a bare API server, no kubelet), everything here is the real thing: the
operator and the proxies run as Pods from the chart, the echo backend's addresses come from the
EndpointSlice controller, the garbage collector removes what ``helm uninstall`` orphans, and
cluster DNS and kube-proxy carry in-cluster requests.

Requests reach the gateway through ``kubectl port-forward`` to the Services the operator creates
(fixtures ``public`` and ``internal``), and, for the Stage URLs, from inside an echo pod through
the Services' virtual IPs. The tests run in file order and the last ones are destructive
(scaling the backend to zero, deleting the Api, uninstalling the release); each restores what it
changed where the next one needs it. Without PROPYLON_KIND_KUBECONFIG the module skips.
"""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Callable
from typing import Any

import kind_cluster
import pytest

pytestmark = [
    pytest.mark.kind,
    pytest.mark.skipif(kind_cluster.Settings.from_environment() is None, reason=kind_cluster.SKIP_REASON),
    pytest.mark.timeout(600),
]

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
DEMO = "demo"  # the namespace of examples/kubernetes
STAGES = "stages.propylon.dev"
APIS = "apis.propylon.dev"
ECHO_LABEL = "app.kubernetes.io/name=echo"
VERSION_ANNOTATION = "propylon.dev/config-version"
# Routing changes must reach the proxies within this many seconds of the write (the task's bound).
CHANGE_WITHIN = 10.0
# Pods starting or stopping, Leases renewing (every 10 s), the garbage collector: generous bounds.
SETTLE_WITHIN = 120.0

# Run inside an echo pod (python:3.11-slim): one GET, answered as JSON, 4xx/5xx included.
IN_CLUSTER_GET = """
import json, sys, urllib.error, urllib.request
try:
    answer = urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError as error:
    answer = error
print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
"""


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _answers(forward: kind_cluster.PortForward, path: str, status: int) -> Callable[[], kind_cluster.Response | None]:
    """A probe for ``eventually``: the answer to GET ``path`` once it has ``status``."""

    def probe() -> kind_cluster.Response | None:
        answer = forward.get(path)
        return answer if answer.status == status else None

    return probe


def _stage(kubectl: kind_cluster.Kubectl, name: str = "prod") -> dict[str, Any] | None:
    return kubectl.get("-n", DEMO, STAGES, name)


def _snapshot_versions(kubectl: kind_cluster.Kubectl, settings: kind_cluster.Settings) -> tuple[str, str]:
    """The version the snapshot Secret announces (annotation) and the one its payload holds."""
    secret = kubectl.get("-n", settings.namespace, "secret", f"{settings.release}-snapshot")
    assert secret is not None, "the snapshot Secret does not exist"
    payload = json.loads(base64.b64decode(secret["data"]["snapshot.json"]))
    return secret["metadata"]["annotations"][VERSION_ANNOTATION], payload["version"]


def _in_cluster_get(kubectl: kind_cluster.Kubectl, url: str) -> tuple[int, str]:
    done = kubectl("-n", DEMO, "exec", "deployment/echo", "--", "python", "-c", IN_CLUSTER_GET, url, timeout=60)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["status"], answer["body"]


def _assert_gateway_error(answer: kind_cluster.Response, status: int, error_type: str, message: str) -> None:
    """DESIGN.md section 3: a JSON {"message"} body, the error type header, a request id."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    assert answer.json() == {"message": message}
    assert answer.headers.get("x-propylon-error-type") == error_type, answer.headers
    assert answer.headers.get("x-request-id"), answer.headers


def _ready_endpoint_addresses(kubectl: kind_cluster.Kubectl) -> set[str]:
    slices = kubectl.json("-n", DEMO, "get", "endpointslices", "-l", "kubernetes.io/service-name=echo")
    return {
        address
        for item in slices["items"]
        for endpoint in item.get("endpoints") or ()
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint.get("addresses") or ()
    }


def _running_echo_pod_ips(kubectl: kind_cluster.Kubectl) -> set[str]:
    pods = kubectl.json("-n", DEMO, "get", "pods", "-l", ECHO_LABEL)
    return {
        pod["status"]["podIP"]
        for pod in pods["items"]
        if not pod["metadata"].get("deletionTimestamp") and _condition(pod, "Ready").get("status") == "True"
    }


# --- the example as installed ----------------------------------------------------------------


def test_stage_is_ready_and_names_the_snapshot_its_replicas_serve(
    kubectl: kind_cluster.Kubectl, kind_settings: kind_cluster.Settings
) -> None:
    def settled() -> dict[str, Any] | None:
        stage = _stage(kubectl)
        status = (stage or {}).get("status") or {}
        ready = _condition(stage, "Ready").get("status") == "True"
        return stage if ready and status.get("replicas") and status.get("readyReplicas") == status["replicas"] else None

    stage = kind_cluster.eventually(settled, SETTLE_WITHIN, "Stage demo/prod Ready with all replicas serving")
    status = stage["status"]
    annotated, payload = _snapshot_versions(kubectl, kind_settings)
    assert annotated == payload
    assert status["configVersion"] == annotated
    proxy = kubectl.get("-n", kind_settings.namespace, "deployment", kind_settings.release)
    assert proxy is not None, "the operator created no proxy Deployment"
    assert status["replicas"] == proxy["spec"]["replicas"] == 2  # proxy.replicas in tools/kind/values.yaml
    assert proxy["status"].get("readyReplicas") == 2
    assert status["url"] == f"http://{kind_settings.release}.{kind_settings.namespace}.svc/prod"
    assert status["observedGeneration"] == stage["metadata"]["generation"]


def test_mock_route_answers(public: kind_cluster.PortForward) -> None:
    answer = public.get("/prod/health")
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == "ok"
    assert body["requestId"] == answer.headers["x-request-id"]


def test_service_route_reaches_the_echo_pods_by_their_own_addresses(
    kubectl: kind_cluster.Kubectl, public: kind_cluster.PortForward
) -> None:
    pod_ips = _running_echo_pod_ips(kubectl)
    assert len(pod_ips) == 2, pod_ips  # replicas: 2 in examples/kubernetes/echo-backend.yaml
    # What the EndpointSlice controller published is what the gateway balances over.
    assert _ready_endpoint_addresses(kubectl) == pod_ips
    seen = set()
    for number in range(8):
        answer = public.get(f"/prod/echo/anything?x={number}")
        assert answer.status == 200, answer.body
        echoed = answer.json()
        assert echoed["method"] == "GET"
        assert echoed["path"] == f"/echo/anything?x={number}"
        headers = {name.lower(): value for name, value in echoed["headers"].items()}
        assert headers["x-request-id"] == answer.headers["x-request-id"]
        # The gateway dials a pod, not the Service's virtual IP, and says so in Host.
        address, _, port = headers["host"].rpartition(":")
        assert port == "8080"
        assert address in pod_ips, (address, pod_ips)
        seen.add(address)
    assert seen == pod_ips, "requests are balanced over every ready pod"


def test_path_rewrite_with_a_stage_variable(public: kind_cluster.PortForward) -> None:
    answer = public.get("/prod/users/42")
    assert answer.status == 200, answer.body
    assert answer.json()["path"] == "/v1/users/42"


@pytest.mark.parametrize("path", ["/prod/no/such/route", "/no-such-stage/health"])
def test_unknown_paths_get_the_not_found_gateway_response(public: kind_cluster.PortForward, path: str) -> None:
    _assert_gateway_error(public.get(path), 404, "RESOURCE_NOT_FOUND", "Not Found")


def test_stage_url_answers_inside_the_cluster(kubectl: kind_cluster.Kubectl) -> None:
    """status.url through cluster DNS and the public Service's virtual IP, from a pod."""
    url = (_stage(kubectl) or {})["status"]["url"]
    status, body = _in_cluster_get(kubectl, f"{url}/health")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"


def test_private_stage_is_served_only_on_the_internal_service(
    kubectl: kind_cluster.Kubectl,
    kind_settings: kind_cluster.Settings,
    public: kind_cluster.PortForward,
    internal: kind_cluster.PortForward,
) -> None:
    kubectl.apply(
        f"""
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: backoffice, namespace: {DEMO}}}
spec:
  apiRef: echo
  basePath: /backoffice
  endpoint: PRIVATE
  variables: {{apiVersion: v1}}
"""
    )
    try:
        stage = kind_cluster.eventually(
            lambda: (s := _stage(kubectl, "backoffice")) and _condition(s, "Ready").get("status") == "True" and s,
            SETTLE_WITHIN,
            "the PRIVATE Stage is Ready",
        )
        internal_url = f"http://{kind_settings.release}-internal.{kind_settings.namespace}.svc/backoffice"
        assert stage["status"]["url"] == internal_url
        answer = kind_cluster.eventually(
            _answers(internal, "/backoffice/health", 200),
            CHANGE_WITHIN,
            "the PRIVATE Stage answers on the internal Service",
        )
        assert answer.json()["status"] == "ok"
        # The internal listener serves every stage, the public one PUBLIC stages only.
        assert internal.get("/prod/health").status == 200
        _assert_gateway_error(public.get("/backoffice/health"), 404, "RESOURCE_NOT_FOUND", "Not Found")
        # The same through the Services' virtual IPs, from inside the cluster.
        status, body = _in_cluster_get(kubectl, f"{internal_url}/health")
        assert status == 200, body
        public_url = f"http://{kind_settings.release}.{kind_settings.namespace}.svc/backoffice/health"
        status, body = _in_cluster_get(kubectl, public_url)
        assert status == 404 and json.loads(body) == {"message": "Not Found"}, (status, body)
    finally:
        kubectl("-n", DEMO, "delete", STAGES, "backoffice", "--ignore-not-found")


# --- changes -----------------------------------------------------------------------------------


def test_editing_the_api_changes_routing_within_ten_seconds(
    kubectl: kind_cluster.Kubectl, kind_settings: kind_cluster.Settings, public: kind_cluster.PortForward
) -> None:
    api = kubectl.get("-n", DEMO, APIS, "echo")
    assert api is not None
    index = len(api["spec"]["routes"])
    before = (_stage(kubectl) or {})["status"]["configVersion"]
    _assert_gateway_error(public.get("/prod/version"), 404, "RESOURCE_NOT_FOUND", "Not Found")
    route = {
        "routeKey": "GET /version",
        "integration": {
            "type": "MOCK",
            "mock": {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"version": "2"}'},
        },
    }
    kubectl(
        "-n",
        DEMO,
        "patch",
        APIS,
        "echo",
        "--type=json",
        "-p",
        json.dumps(
            [
                {"op": "add", "path": "/spec/routes/-", "value": route},
            ]
        ),
    )
    try:
        answer = kind_cluster.eventually(
            _answers(public, "/prod/version", 200),
            CHANGE_WITHIN,
            "the added route answers",
            interval=0.2,
        )
        assert answer.json() == {"version": "2"}
        # The Stage reports the new snapshot once the replicas serve it.
        kind_cluster.eventually(
            lambda: (
                (v := (_stage(kubectl) or {}).get("status", {}).get("configVersion")) != before
                and v == _snapshot_versions(kubectl, kind_settings)[0]
            ),
            SETTLE_WITHIN,
            "Stage demo/prod reports the new config version",
        )
    finally:
        kubectl(
            "-n",
            DEMO,
            "patch",
            APIS,
            "echo",
            "--type=json",
            "-p",
            json.dumps(
                [
                    {"op": "test", "path": f"/spec/routes/{index}/routeKey", "value": "GET /version"},
                    {"op": "remove", "path": f"/spec/routes/{index}"},
                ]
            ),
        )
    gone = kind_cluster.eventually(_answers(public, "/prod/version", 404), CHANGE_WITHIN, "the removed route is gone")
    _assert_gateway_error(gone, 404, "RESOURCE_NOT_FOUND", "Not Found")


def test_backend_scaled_to_zero_gets_integration_failure(
    kubectl: kind_cluster.Kubectl, public: kind_cluster.PortForward
) -> None:
    """No ready endpoint is a 502 INTEGRATION_FAILURE (proxying.NoEndpoint), not a 503."""
    replicas = kubectl.json("-n", DEMO, "get", "deployment", "echo")["spec"]["replicas"]
    kubectl("-n", DEMO, "scale", "deployment/echo", "--replicas=0")
    try:
        kind_cluster.eventually(
            lambda: not _ready_endpoint_addresses(kubectl),
            SETTLE_WITHIN,
            "the echo EndpointSlice has no ready endpoint",
        )
        seen: list[int] = []

        def failing() -> kind_cluster.Response | None:
            answer = public.get("/prod/echo/anything")
            seen.append(answer.status)
            return answer if answer.status == 502 else None

        kind_cluster.eventually(failing, CHANGE_WITHIN, "requests to the emptied Service fail with 502")
        # Between the write and the proxy's swap, requests may still reach a pod, or time out
        # dialling one that is gone; nothing else.
        assert set(seen) <= {200, 502, 504}, seen
        for _ in range(3):
            _assert_gateway_error(
                public.get("/prod/echo/anything"), 502, "INTEGRATION_FAILURE", "Internal server error"
            )
        # The rest of the Api keeps serving.
        assert public.get("/prod/health").status == 200
    finally:
        kubectl("-n", DEMO, "scale", "deployment/echo", f"--replicas={replicas}")
        kubectl("-n", DEMO, "rollout", "status", "deployment/echo", "--timeout=180s", timeout=200)
    kind_cluster.eventually(
        lambda: public.get("/prod/echo/anything").status == 200, SETTLE_WITHIN, "the backend is reached again"
    )


def test_deleting_the_api_unpublishes_its_stage(
    kubectl: kind_cluster.Kubectl, public: kind_cluster.PortForward
) -> None:
    kubectl("-n", DEMO, "delete", APIS, "echo")
    try:
        answer = kind_cluster.eventually(
            _answers(public, "/prod/health", 404),
            CHANGE_WITHIN,
            "the deleted Api's routes are gone",
        )
        _assert_gateway_error(answer, 404, "RESOURCE_NOT_FOUND", "Not Found")
        stage = kind_cluster.eventually(
            lambda: (s := _stage(kubectl)) and _condition(s, "Ready").get("status") == "False" and s,
            SETTLE_WITHIN,
            "Stage demo/prod reports that it serves nothing",
        )
        assert _condition(stage, "Ready")["reason"] == "MissingReference", stage["status"]
    finally:
        kubectl("apply", "-f", str(EXAMPLES / "api.yaml"))
    kind_cluster.eventually(
        lambda: public.get("/prod/health").status == 200, SETTLE_WITHIN, "the re-created Api is served again"
    )


# --- uninstall (last: nothing runs after it) ---------------------------------------------------


def test_helm_uninstall_removes_the_data_plane(
    kubectl: kind_cluster.Kubectl,
    kind_settings: kind_cluster.Settings,
    public: kind_cluster.PortForward,
    internal: kind_cluster.PortForward,
) -> None:
    """The operator's objects hang off its Deployment; the garbage collector takes them along."""
    namespace = kind_settings.namespace
    assert kubectl.get("-n", namespace, "deployment", kind_settings.release) is not None
    public.close()
    internal.close()
    kind_cluster.helm(kind_settings, "uninstall", kind_settings.release, "--namespace", namespace, "--wait")

    def leftovers() -> list[str]:
        kinds = "deployments,services,poddisruptionbudgets,horizontalpodautoscalers,pods"
        found = kubectl("-n", namespace, "get", kinds, "-o", "name").stdout.split()
        snapshot = kubectl.get("-n", namespace, "secret", f"{kind_settings.release}-snapshot")
        return [str(name) for name in found] + ([f"secret/{snapshot['metadata']['name']}"] if snapshot else [])

    try:
        kind_cluster.eventually(
            lambda: not leftovers(), SETTLE_WITHIN, f"nothing of the gateway is left in {namespace}"
        )
    except AssertionError as missed:
        raise AssertionError(f"{missed}; left: {leftovers()}") from None


def test_helm_uninstall_leaves_no_proxy_leases_or_cluster_rbac(
    kubectl: kind_cluster.Kubectl, kind_settings: kind_cluster.Settings
) -> None:
    """The proxies' ClusterRole and binding are the chart's (Helm deletes them); their Leases are
    owned by the snapshot Secret (the garbage collector deletes them with it)."""
    assert kubectl.get("-n", kind_settings.namespace, "deployment", f"{kind_settings.release}-operator") is None

    def leftovers() -> list[str]:
        leases = kubectl("-n", kind_settings.namespace, "get", "leases", "-o", "name").stdout.split()
        rbac = [
            name
            for selector in (
                "app.kubernetes.io/name=propylon-proxy",  # what an operator run by hand creates
                f"app.kubernetes.io/instance={kind_settings.release}",  # what the chart rendered
            )
            for name in kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").stdout.split()
        ]
        return [str(name) for name in leases + rbac]

    try:
        kind_cluster.eventually(lambda: not leftovers(), SETTLE_WITHIN, "no Lease nor cluster-wide RBAC is left")
    except AssertionError as missed:
        raise AssertionError(f"{missed}; left: {leftovers()}") from None
