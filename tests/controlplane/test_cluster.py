"""The tier's own fixtures work: the API server is real, CRDs are served, test hosts answer."""

from __future__ import annotations

import json
import urllib.request


def test_api_server_serves_the_stamped_version(kube_apiserver) -> None:
    version = json.loads(kube_apiserver.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "34", "v1.34.2")


def test_crds_are_established(control_plane) -> None:
    for kind in ("apis", "stages", "usageplans", "authorizers"):
        crd = json.loads(control_plane.kubectl("get", "crd", f"{kind}.propylon.dev", "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (kind, conditions)


def test_python_client_talks_to_the_cluster(api_client) -> None:
    from kubernetes import client

    names = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_endpoint_slice_with_a_test_host_address_is_accepted_and_reachable(kube_apiserver, test_hosts) -> None:
    host = test_hosts("slice-check")
    kube_apiserver.apply(f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: slice-check-1
  namespace: default
  labels: {{kubernetes.io/service-name: slice-check}}
addressType: IPv4
ports: [{{name: http, port: {host.port}, protocol: TCP}}]
endpoints: [{{addresses: ["{host.address}"], conditions: {{ready: true}}}}]
""")
    with urllib.request.urlopen(f"http://{host.address}:{host.port}/hello?x=1", timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["backend"] == "slice-check"
    assert answer["path"] == "/hello"


def test_loopback_endpoints_are_refused_by_the_api_server(kube_apiserver) -> None:
    result = kube_apiserver.apply(
        """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: loopback, namespace: default, labels: {kubernetes.io/service-name: loopback}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"]}]
""",
        check=False,
    )
    assert result.returncode != 0
    assert "loopback" in result.stderr
