"""The operator as the Helm chart runs it: its flags, under its ServiceAccount's RBAC, and what it
leaves behind.

The chart is rendered with ``helm template`` and applied to the real API server (no kubelet, so
its Deployment never starts a pod); the operator then runs as a local process with the chart's
arguments and a client certificate for the chart's ServiceAccount, so RBAC treats it exactly as
the pod. The proxy runs likewise as the ServiceAccount the operator creates for it. No garbage
collector runs in this tier (no controller-manager): ownership is asserted as ownerReferences,
and ``helm uninstall`` is played as deleting what the chart rendered.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import cluster
import operator_env as op
import pytest
import yaml

from propylon_operator import settings as operator_settings
from propylon_operator import workloads

pytestmark = pytest.mark.controlplane

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "propylon"
LEASE_SECRET_LABEL = "propylon.dev/snapshot-secret"
HELM_HOMES = {"HELM_CACHE_HOME": "/tmp/propylon-helm/cache", "HELM_CONFIG_HOME": "/tmp/propylon-helm/config"}


def _helm() -> str:
    found = shutil.which("helm")
    if found:
        return found
    for candidate in sorted((pathlib.Path.home() / ".cache" / "propylon").glob("k8s-*/bin/helm"), reverse=True):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.skip("no helm binary (PATH or ~/.cache/propylon/k8s-*/bin/helm; tools/controlplane/build.sh installs it)")


def _account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _kubeconfig_as(env: op.Env, namespace: str, account: str) -> pathlib.Path:
    """A kubeconfig authenticating as a ServiceAccount (its user name and groups, by client cert).

    Copied to a path without colons: the kubernetes client splits a kubeconfig path on them.
    """
    made = env.plane.user_kubeconfig(
        _account(namespace, account), groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    )
    path = env.workdir / f"kubeconfig-{account}"
    path.write_text(made.read_text())
    return path


class Release:
    """The chart rendered into the gateway namespace of an ``op.Env`` and applied as is."""

    def __init__(self, env: op.Env, *, webhook_port: int | None = None) -> None:
        self.env = env
        self.name = "r" + env.gw_ns.removeprefix("gw-")  # unique: cluster-scoped names include it
        values: dict[str, Any] = {
            "gateway": {"name": op.GATEWAY, "watchNamespaces": [env.app_ns]},
            "proxy": {"replicas": 1},
        }
        if webhook_port is not None:
            # The API server dials the operator process on loopback instead of the chart's Service.
            values["webhook"] = {"enabled": True, "port": webhook_port}
            values["operator"] = {"extraArgs": ["--webhook-host=127.0.0.1", "--webhook-addr=127.0.0.1"]}
        values_file = env.workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        done = subprocess.run(
            [_helm(), "template", self.name, str(CHART), "--namespace", env.gw_ns, "-f", str(values_file)],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "HELM_CACHE_HOME": "/tmp/propylon-helm/cache",
                "HELM_CONFIG_HOME": "/tmp/propylon-helm/config",
            },
        )
        assert done.returncode == 0, done.stderr
        self.manifest = done.stdout
        self.docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(self.manifest) if d]
        deployment = next(d for d in self.docs if d["kind"] == "Deployment")
        self.pod = deployment["spec"]["template"]["spec"]
        self.args: list[str] = self.pod["containers"][0]["args"]

    def install(self) -> None:
        self.env.plane.apply(self.manifest)

    def uninstall(self) -> None:
        self.env.plane.kubectl("delete", "-f", "-", "--wait=false", input=self.manifest)

    def flag(self, name: str) -> str:
        return next(a.split("=", 1)[1] for a in self.args if a.startswith(f"--{name}="))

    def settings(self) -> operator_settings.Settings:
        return operator_settings.Settings(
            gateway_name=self.flag("gateway-name"),
            gateway_namespace=self.flag("gateway-namespace"),
            proxy_cluster_role=self.flag("proxy-cluster-role"),
        )

    def start_operator(self) -> op.Process:
        """``propylon operator`` with the chart's arguments, as the chart's ServiceAccount."""
        kubeconfig = _kubeconfig_as(self.env, self.env.gw_ns, self.pod["serviceAccountName"])
        process = op.Process(
            [*self.args, "--kubeconfig", str(kubeconfig)],
            self.env.workdir / "operator.log",
            env={"POD_NAMESPACE": self.env.gw_ns},
        )
        self.env.processes.append(process)
        op.eventually(
            lambda: process.alive() and "first pass done" in process.log(), op.START_WITHIN, "operator's first pass"
        )
        return process

    def start_proxy(self) -> tuple[op.Process, int]:
        """``propylon proxy`` as a pod of the proxy Deployment would run, as its ServiceAccount."""
        settings = self.settings()
        kubeconfig = _kubeconfig_as(self.env, self.env.gw_ns, workloads.proxy_name(settings))
        return self.env.start_proxy(secret=settings.snapshot_secret, kubeconfig=kubeconfig)


@pytest.fixture
def env(gateway: op.Env) -> op.Env:
    """This file's tests call the gateway ``env``, as the helpers they share with it do."""
    return gateway


def _objects(namespace: str) -> str:
    """An Api with a MOCK route and a route to a Service (so the proxy watches EndpointSlices)."""
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: pets, namespace: {namespace}}}
spec:
  routes:
    - routeKey: GET /hello
      integration: {{type: MOCK, mock: {{statusCode: 200, headers: {{Content-Type: text/plain}}, body: hello}}}}
    - routeKey: ANY /svc/{{proxy+}}
      integration: {{type: HTTP_PROXY, service: {{name: backend, port: 80}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: {namespace}}}
spec: {{apiRef: pets, basePath: /dev}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
"""


def _lease(namespace: str, name: str, secret: str, renewed: datetime.datetime) -> str:
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"""
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{{LEASE_SECRET_LABEL}: {secret}}}
spec: {{holderIdentity: {name}, leaseDurationSeconds: 30, renewTime: "{stamp}"}}
"""


def _cluster_rbac_naming(plane: cluster.ControlPlane, namespace: str) -> list[str]:
    """ClusterRoles and ClusterRoleBindings whose name or subjects mention ``namespace``."""
    found = json.loads(plane.kubectl("get", "clusterroles,clusterrolebindings", "-o", "json").stdout)["items"]
    return sorted(
        f"{item['kind']}/{item['metadata']['name']}"
        for item in found
        if namespace in item["metadata"]["name"]
        or any(subject.get("namespace") == namespace for subject in item.get("subjects") or ())
    )


@pytest.fixture
def webhook_configurations(control_plane: cluster.ControlPlane) -> Iterator[list[str]]:
    """Names of webhook configurations a test makes; deleted afterwards (no garbage collector here)."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            control_plane.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)


def test_the_chart_runs_the_operator_with_least_privilege_and_leaves_nothing_cluster_wide(
    env: op.Env, webhook_configurations: list[str]
) -> None:
    release = Release(env, webhook_port=cluster.free_port())
    # Cluster-scoped, so named per release and namespace: two releases never share it.
    webhook_configuration = release.flag("webhook-configuration")
    assert webhook_configuration == f"{release.name}-propylon.{env.gw_ns}.propylon.dev"
    webhook_configurations.append(webhook_configuration)
    settings = release.settings()
    release.install()
    operator = release.start_operator()
    proxy_role = env.get("clusterrole", settings.proxy_cluster_role)

    # The one cluster-scoped object the operator makes, owned by the chart's ClusterRole so that it
    # goes with the release; and it works under the chart's RBAC: a broken Api is refused.
    configuration = op.eventually(
        lambda: env.get("validatingwebhookconfiguration", webhook_configuration), op.START_WITHIN, "webhook"
    )
    assert configuration["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "name": settings.proxy_cluster_role,
            "uid": proxy_role["metadata"]["uid"],
            "controller": True,
        }
    ]
    refused = env.plane.apply(
        f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: broken, namespace: {env.app_ns}}}
spec:
  routes: [{{routeKey: "GET /x/{{id", integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}}}]
""",
        check=False,
    )
    assert refused.returncode != 0 and "denied the request" in refused.stderr, refused.stderr

    env.plane.apply(_objects(env.app_ns))
    op.eventually(
        lambda: ((env.get("stage", "-n", env.app_ns, "dev") or {}).get("status") or {}).get("configVersion"),
        op.CHANGE_WITHIN * 2,
        "Stage status written by the operator",
    )

    # Everything the operator applies is within the chart's RBAC: nothing refused, all there.
    secret = env.secret()
    assert secret is not None
    operator_deployment = env.get("deployment", "-n", env.gw_ns, release.flag("owner-deployment"))
    (secret_owner,) = secret["metadata"]["ownerReferences"]
    assert (secret_owner["kind"], secret_owner["uid"]) == ("Deployment", operator_deployment["metadata"]["uid"])
    for kind, name in (
        ("deployment", op.GATEWAY),
        ("service", op.GATEWAY),
        ("service", f"{op.GATEWAY}-internal"),
        ("poddisruptionbudget", op.GATEWAY),
        ("serviceaccount", workloads.proxy_name(settings)),
        ("role", workloads.proxy_name(settings)),
        ("rolebinding", workloads.proxy_name(settings)),
    ):
        obj = op.eventually(
            lambda kind=kind, name=name: env.get(kind, "-n", env.gw_ns, name), op.CHANGE_WITHIN, f"{kind} {name}"
        )
        (reference,) = obj["metadata"]["ownerReferences"]
        assert (reference["kind"], reference["uid"]) == ("Secret", secret["metadata"]["uid"]), (kind, name)
    log = operator.log()
    for refusal in ("cannot apply", "cannot list", "cannot delete", "cannot write", "cannot post", "Forbidden"):
        assert refusal not in log, log[-4000:]

    # The proxies' cluster-wide grant is the chart's; the operator made none of its own.
    assert env.get("clusterrole", workloads.cluster_role_name(settings)) is None
    assert env.get("clusterrolebinding", workloads.cluster_role_name(settings)) is None
    chart_role = env.get("clusterrolebinding", settings.proxy_cluster_role)
    assert chart_role["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert chart_role["subjects"] == [
        {"kind": "ServiceAccount", "name": workloads.proxy_name(settings), "namespace": env.gw_ns}
    ]

    # The proxy, as the ServiceAccount the operator made, serves and keeps its Lease, which the
    # snapshot Secret owns; its EndpointSlice watch in the Api's namespace is allowed.
    proxy, port = release.start_proxy()
    assert op.get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hello")
    lease_name = f"{settings.snapshot_secret}-{op.REPLICA}"
    lease = op.eventually(
        lambda: (
            (lease := env.get("lease", "-n", env.gw_ns, lease_name))
            and lease["metadata"].get("ownerReferences")
            and lease
        ),
        op.CHANGE_WITHIN * 2,
        "the proxy's Lease with its owner",
    )
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Secret", "name": settings.snapshot_secret, "uid": secret["metadata"]["uid"]}
    ]
    op.eventually(
        lambda: op.condition(env.get("stage", "-n", env.app_ns, "dev"), "Ready").get("status") == "True",
        30,
        "Stage Ready once the proxy's Lease shows the version",
    )
    assert f"EndpointSlices in {env.app_ns}:" not in proxy.log(), proxy.log()[-4000:]

    # A snapshot Secret deleted and published anew has a new uid: the Lease follows it, or the
    # garbage collector would take the Lease for an orphan.
    env.plane.kubectl("delete", "secret", "-n", env.gw_ns, settings.snapshot_secret)
    renewed = op.eventually(
        lambda: (new := env.secret()) and new["metadata"]["uid"] != secret["metadata"]["uid"] and new,
        op.CHANGE_WITHIN * 2,
        "the snapshot Secret published again",
    )
    op.eventually(
        lambda: (
            [r["uid"] for r in env.get("lease", "-n", env.gw_ns, lease_name)["metadata"]["ownerReferences"]]
            == [renewed["metadata"]["uid"]]
        ),
        op.CHANGE_WITHIN * 2,
        "the Lease owned by the new Secret",
    )

    # A Lease left by a replica killed an hour ago goes; a fresh one and another gateway's stay.
    now = datetime.datetime.now(datetime.UTC)
    an_hour_ago = now - datetime.timedelta(hours=1)
    env.plane.apply(
        _lease(env.gw_ns, "gw-snapshot-killed-0", settings.snapshot_secret, an_hour_ago)
        + "---"
        + _lease(env.gw_ns, "other-snapshot-killed-0", "other-snapshot", an_hour_ago)
        + "---"
        + _lease(env.gw_ns, "gw-snapshot-slow-0", settings.snapshot_secret, now - datetime.timedelta(seconds=60))
    )
    op.eventually(
        lambda: env.get("lease", "-n", env.gw_ns, "gw-snapshot-killed-0") is None,
        settings.resync_s * 3,
        "the expired Lease deleted by the operator",
    )
    assert "deleted the expired Lease gw-snapshot-killed-0" in operator.log()
    assert env.get("lease", "-n", env.gw_ns, "other-snapshot-killed-0") is not None
    assert env.get("lease", "-n", env.gw_ns, "gw-snapshot-slow-0") is not None
    assert env.get("lease", "-n", env.gw_ns, lease_name) is not None

    # A proxy shutting down gives its Lease back itself (its Role allows the delete).
    proxy.stop()
    assert env.get("lease", "-n", env.gw_ns, lease_name) is None, proxy.log()[-4000:]
    assert "not deleted" not in proxy.log()

    # `helm uninstall`: the chart's objects go; the rest hangs off the operator's Deployment by
    # ownerReferences (checked above), so nothing cluster-scoped naming the namespace remains.
    operator.stop()
    assert _cluster_rbac_naming(env.plane, env.gw_ns)  # the chart's binding, before
    release.uninstall()
    assert _cluster_rbac_naming(env.plane, env.gw_ns) == []


def test_run_by_hand_the_operator_binds_the_proxies_itself_with_labels_to_find_them(env: op.Env) -> None:
    """Without --proxy-cluster-role (no chart), the operator creates the grant, labelled."""
    env.start_operator()
    settings = operator_settings.Settings(gateway_name=op.GATEWAY, gateway_namespace=env.gw_ns)
    name = workloads.cluster_role_name(settings)
    role = op.eventually(lambda: env.get("clusterrole", name), op.CHANGE_WITHIN, "the proxies' ClusterRole")
    binding = op.eventually(lambda: env.get("clusterrolebinding", name), op.CHANGE_WITHIN, "its binding")
    try:
        for obj in (role, binding):
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "propylon"
            assert labels["propylon.dev/gateway-namespace"] == env.gw_ns
            assert labels["app.kubernetes.io/instance"] == op.GATEWAY
        selector = f"app.kubernetes.io/managed-by=propylon,propylon.dev/gateway-namespace={env.gw_ns}"
        found = env.plane.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").stdout
        assert sorted(found.split()) == sorted(
            [f"clusterrole.rbac.authorization.k8s.io/{name}", f"clusterrolebinding.rbac.authorization.k8s.io/{name}"]
        )
    finally:
        env.plane.kubectl("delete", "clusterrole,clusterrolebinding", name, "--ignore-not-found", check=False)
