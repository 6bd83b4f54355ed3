"""The Helm chart: values match their schema, CRDs match the repository's, templates render.

The chart's crds/ folder is a copy of the top-level crds/ (Helm installs CRDs only from the
chart's own crds/ folder); charts/sync-crds.sh makes the copy and this test fails whenever the two
drift apart. Rendering needs a ``helm`` binary: the one on PATH, or the one the control-plane
tier builds into ~/.cache/propylon/<version>/bin; without one those tests skip and say so.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests import backends

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "propylon"
RELEASE_NAMESPACE = "propylon-system"


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def _default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_default_values_match_the_schema() -> None:
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(_default_values(), schema)


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"proxy": {"replica": 3}}, "a misspelt key"),
        ({"redis": {"failure": "maybe"}}, "a value outside the enum"),
        ({"proxy": {"loop": "trio"}}, "an event loop the proxies do not have"),
        ({"redis": {"url": "localhost:6379"}}, "a Redis URL without a scheme"),
        ({"redis": {"timeoutMs": 0}}, "a Redis budget of no time"),
        ({"redis": {"wsRegistryTtlSeconds": 0}}, "a WebSocket registry entry that expires at once"),
        ({"operator": {"replicas": 2}}, "two operators would race"),
        ({"gateway": {"name": "Not_A_DNS_Name"}}, "a gateway name Kubernetes would refuse"),
        ({"gateway": {"throttle": {"rateLimit": 0}}}, "a gateway-wide rate of nothing"),
        ({"gateway": {"throttle": {"burstLimit": 0}}}, "a gateway-wide bucket that holds nothing"),
        ({"proxy": {"env": {"PROPYLON_REDIS_URL": "redis://x"}}}, "an environment name the operator sets"),
        ({"proxy": {"env": {"OTEL-ENDPOINT": "x"}}}, "not an environment variable name"),
        ({"proxy": {"trustedProxies": "10.0.0.0/33"}}, "a prefix longer than an IPv4 address"),
        ({"proxy": {"trustedProxies": "256.1.1.1"}}, "not an IPv4 address"),
        ({"proxy": {"trustedProxies": "10.0.0.0/8;127.0.0.1"}}, "entries not separated by commas"),
        ({"proxy": {"trustedProxies": "my-ingress"}}, "a name, not an address"),
        ({"proxy": {"trustedProxies": ["10.0.0.0/8"]}}, "a list where a comma-separated string is read"),
    ],
)
def test_schema_rejects_mistakes(overrides: dict[str, Any], why: str) -> None:
    values = _merge(_default_values(), overrides)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, _schema())


@pytest.mark.parametrize(
    "value", ["", "10.0.0.0/8,127.0.0.1", "10.0.0.0/8, 35.191.0.0/16,130.211.0.0/22", "::1", "fd00::/8,10.1.2.3/32"]
)
def test_schema_takes_trusted_proxies_the_proxies_parse(value: str) -> None:
    """Item 4: the schema checks proxy.trustedProxies the way ``--trusted-proxies`` parses it."""
    from propylon_proxy import settings as proxy_settings

    proxy_settings.parse_networks(value)  # what the proxy accepts ...
    jsonschema.validate(_merge(_default_values(), {"proxy": {"trustedProxies": value}}), _schema())  # ... so do we


@pytest.mark.parametrize("value", ["10.0.0.0/33", "256.1.1.1", "10.0.0.0/8;127.0.0.1", "my-ingress", "10.0.0"])
def test_schema_refuses_trusted_proxies_the_proxies_refuse(value: str) -> None:
    from propylon_proxy import settings as proxy_settings

    with pytest.raises(ValueError):
        proxy_settings.parse_networks(value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(_default_values(), {"proxy": {"trustedProxies": value}}), _schema())


def test_chart_crds_are_the_repository_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    chart = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert sorted(chart) == sorted(top), "run charts/sync-crds.sh"
    for name, body in top.items():
        assert chart[name] == body, f"charts/propylon/crds/{name} differs from crds/{name}: run charts/sync-crds.sh"


def _repository_crd_kinds() -> set[str]:
    kinds = set()
    for file in (ROOT / "crds").glob("*.yaml"):
        for doc in yaml.safe_load_all(file.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                kinds.add(doc["spec"]["names"]["kind"])
    return kinds


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# --- rendering with helm ---------------------------------------------------------------------


def _find_helm() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    cache = Path(os.environ.get("PROPYLON_K8S_BIN", "")) if os.environ.get("PROPYLON_K8S_BIN") else None
    candidates = [cache / "helm"] if cache else []
    candidates += sorted((Path.home() / ".cache" / "propylon").glob("k8s-*/bin/helm"), reverse=True)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def helm() -> str:
    found = _find_helm()
    if found is None:
        pytest.skip(
            "no helm binary (PATH or ~/.cache/propylon/k8s-*/bin/helm; tools/controlplane/build.sh installs it)"
        )
    return found


def _helm(helm: str, *args: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> str:
    command = [helm, *args]
    if values is not None:
        assert tmp is not None
        file = tmp / "values.yaml"
        file.write_text(yaml.safe_dump(values))
        command += ["-f", str(file)]
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/propylon-helm/cache", "HELM_CONFIG_HOME": "/tmp/propylon-helm/config"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _render(helm: str, tmp: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = _helm(
        helm, "template", "propylon", str(CHART), "--namespace", RELEASE_NAMESPACE, "--include-crds",
        values=values, tmp=tmp,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _redis_secret(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-redis")]
    return found


def _one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    """The one ``kind`` of the chart; ClusterRoles and their bindings by component (operator, proxy)."""
    found = [d for d in docs if d["kind"] == kind]
    if component is not None:
        found = [d for d in found if _component(d) == component]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _component(doc: dict[str, Any]) -> str:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "operator")


def _operator_args(docs: list[dict[str, Any]]) -> list[str]:
    args: list[str] = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def _flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


def _settings_from(docs: list[dict[str, Any]]) -> Any:
    """The operator's Settings as the chart's Deployment configures it: its flags, parsed by the
    real command line and turned into Settings as ``propylon operator`` does."""
    from propylon import cli
    from propylon.commands import kube_operator

    return kube_operator.settings_from(cli.build_parser().parse_args(_operator_args(docs)))


def cli_args(args: list[str]) -> Any:
    from propylon import cli

    return cli.build_parser().parse_args(args)


WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def _allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False


ALL_ON = {
    "gateway": {
        "name": "edge",
        "watchNamespaces": ["shop", "billing"],
        "allowCrossNamespace": True,
        "throttle": {"rateLimit": 250000, "burstLimit": 20000},
    },
    "proxy": {
        "autoscaling": {"enabled": True, "maxReplicas": 7},
        "trustedProxies": "10.0.0.0/8,35.191.0.0/16",
        "drainSeconds": 40,
        "loop": "asyncio",
        "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.monitoring:4318"},
    },
    "networkPolicy": {"internalFrom": ["shop"], "adminFrom": ["monitoring"]},
    "redis": {
        "url": "redis://:secret@redis.propylon-system.svc:6379/0",
        "failure": "closed",
        "timeoutMs": 120,
        "wsRegistryTtlSeconds": 45,
    },
    "webhook": {"enabled": True},
}


def test_helm_lint(helm: str, tmp_path: Path) -> None:
    _helm(helm, "lint", str(CHART), "--strict")
    _helm(helm, "lint", str(CHART), "--strict", values=ALL_ON, tmp=tmp_path)


def test_default_render_has_the_operator_and_least_privilege_rbac(helm: str, tmp_path: Path) -> None:
    docs = _render(helm, tmp_path)
    kinds = sorted(d["kind"] for d in docs if d["kind"] != "CustomResourceDefinition")
    assert kinds == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "Deployment", "NetworkPolicy", "Secret"]
        + ["ClusterRole", "ClusterRoleBinding"] * 2
    )
    rendered = {d["spec"]["names"]["kind"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert rendered == _repository_crd_kinds()

    deployment = _one(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == RELEASE_NAMESPACE
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "operator"
    assert "--gateway-name=propylon" in container["args"]
    assert f"--gateway-namespace={RELEASE_NAMESPACE}" in container["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]

    # Cluster-wide, the operator reads; it writes only status and Events. No RBAC object at all,
    # so no right to grant anything: the proxies' cluster-wide grant is the chart's.
    for rule in _one(docs, "ClusterRole", "operator")["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"bind", "escalate", "impersonate"} & set(rule["verbs"]), rule
        if "rbac.authorization.k8s.io" in rule["apiGroups"]:  # only the webhook's owner, by name, read
            assert rule["verbs"] == ["get"] and rule["resourceNames"] == [
                _flag(_operator_args(docs), "proxy-cluster-role")
            ]
        written = WRITES & set(rule["verbs"])
        if written:
            assert set(rule["resources"]) <= {"events"} | {r for r in rule["resources"] if r.endswith("/status")}
    role = _one(docs, "Role")
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert not any(d["kind"] == "ValidatingWebhookConfiguration" for d in docs)


@pytest.mark.parametrize("values", [None, ALL_ON], ids=["defaults", "all-on"])
def test_the_chart_owns_the_proxies_cluster_wide_rbac(helm: str, tmp_path: Path, values: Any) -> None:
    """What the operator would otherwise create cluster-wide, the chart renders (and uninstalls)."""
    from propylon_operator import workloads

    docs = _render(helm, tmp_path, values)
    settings = _settings_from(docs)
    proxy_role = _one(docs, "ClusterRole", "proxy")
    binding = _one(docs, "ClusterRoleBinding", "proxy")
    # The operator is told the name, and so builds nothing cluster-scoped itself.
    assert settings.proxy_cluster_role == proxy_role["metadata"]["name"]
    assert not [m for m in workloads.build(settings, owner=None) if not workloads.PLURALS[m["kind"]][1]]
    # The same grant the operator would make, to the ServiceAccount it creates for the proxies.
    assert proxy_role["rules"] == workloads.cluster_role(settings)["rules"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": proxy_role["metadata"]["name"],
    }
    (service_account,) = [m for m in workloads.build(settings, owner=None) if m["kind"] == "ServiceAccount"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": service_account["metadata"]["name"],
            "namespace": service_account["metadata"]["namespace"],
        }
    ]
    assert proxy_role["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_all_options_render(helm: str, tmp_path: Path) -> None:
    docs = _render(helm, tmp_path, ALL_ON)
    args = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--gateway-name=edge" in args
    assert "--namespace=shop" in args and "--namespace=billing" in args
    assert "--hpa-max=7" in args
    assert "--allow-cross-namespace" in args
    assert any(a.startswith("--webhook-port=") for a in args)
    # Issue 8, items 5 and 7: the proxies learn whom to trust and how long to drain.
    assert "--trusted-proxies=10.0.0.0/8,35.191.0.0/16" in args
    assert "--drain-seconds=40" in args
    assert "--proxy-loop=asyncio" in args  # issue 15: the proxies' event loop is a value
    # The gateway-wide limit reaches the snapshot the operator compiles.
    from propylon.commands import shared_flags
    from propylon_operator import compiling

    parsed = cli_args(args)
    snapshot = compiling.LastGood(gateway_throttle=shared_flags.gateway_throttle(parsed)).compile({}).snapshot
    assert (snapshot.settings.gateway_throttle.rate_limit, snapshot.settings.gateway_throttle.burst_limit) == (
        250000.0,
        20000,
    )
    operator_settings = _settings_from(docs)
    assert (operator_settings.trusted_proxies, operator_settings.drain_seconds) == ("10.0.0.0/8,35.191.0.0/16", 40)
    # proxy.env reaches the proxies through the operator (span export's OTEL_* settings).
    assert operator_settings.proxy_env == (("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4318"),)
    secret = _redis_secret(docs)
    assert secret["stringData"]["url"].startswith("redis://")
    # The Redis budget reaches the operator as the variable its --redis-timeout-ms defaults from.
    (operator,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    operator_env = {e["name"]: e.get("value") for e in operator["env"]}
    assert operator_env["PROPYLON_REDIS_TIMEOUT_MS"] == "120"
    assert operator_env["PROPYLON_WS_REGISTRY_TTL"] == "45"  # --ws-registry-ttl's default, passed on
    # The password never appears in the Deployment itself.
    assert "secret@" not in json.dumps(_one(docs, "Deployment"))
    webhook_rules = [
        r for r in _one(docs, "ClusterRole", "operator")["rules"] if "validatingwebhookconfigurations" in r["resources"]
    ]
    assert webhook_rules
    # The webhook configuration's owner (the proxies' ClusterRole) may be read, by name only, nothing else of RBAC.
    rbac_rules = [
        r for r in _one(docs, "ClusterRole", "operator")["rules"] if "rbac.authorization.k8s.io" in r["apiGroups"]
    ]
    assert rbac_rules == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": [_flag(args, "proxy-cluster-role")],
            "verbs": ["get"],
        }
    ]


def test_network_policy_keeps_internal_and_admin_ports_to_listed_namespaces(helm: str, tmp_path: Path) -> None:
    """Issue 8, item 8: PRIVATE stages and /admin are private on the network, not only by port."""
    policy = _one(_render(helm, tmp_path, ALL_ON), "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "propylon-proxy",
        "app.kubernetes.io/instance": "edge",
    }
    by_port = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["spec"]["ingress"]}
    assert by_port[8080] is None  # the public listener is open

    def namespaces(port: int) -> list[str]:
        return [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in by_port[port]]

    assert namespaces(8081) == [RELEASE_NAMESPACE, "shop"]
    assert namespaces(9090) == [RELEASE_NAMESPACE, "monitoring"]
    off = _render(helm, tmp_path, {"networkPolicy": {"enabled": False}})
    assert not [d for d in off if d["kind"] == "NetworkPolicy"]


def test_network_policy_by_default_keeps_the_internal_listener_to_the_release_namespace(
    helm: str, tmp_path: Path
) -> None:
    """Issue 8, item 8: with no namespaces listed, PRIVATE stages and @connections answer only the
    release namespace's pods; the user opens them to another namespace by listing it (docs say so)."""
    policy = _one(_render(helm, tmp_path), "NetworkPolicy")
    by_port = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["spec"]["ingress"]}
    only_release = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": RELEASE_NAMESPACE}}}]
    assert by_port[8081] == only_release
    assert by_port[9090] == only_release


@pytest.mark.parametrize("name", ["", "ops-robot"])
def test_an_existing_service_account_gets_the_operators_rights(helm: str, tmp_path: Path, name: str) -> None:
    """Item 1: with serviceAccount.create false, the pod and every binding name the account given
    (or the documented "<release>-operator"), never the namespace's "default" account."""
    docs = _render(helm, tmp_path, {"serviceAccount": {"create": False, "name": name}})
    expected = name or "propylon-operator"
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    assert _one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == expected
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and _component(d) == "operator"]
    assert len(bindings) == 2
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": expected, "namespace": RELEASE_NAMESPACE}]


def test_watch_namespaces_make_the_operators_reading_rights_namespaced(helm: str, tmp_path: Path) -> None:
    """Item 6: watching named namespaces, the operator reads Secrets (and the rest) only there
    and in the release namespace, through Roles; nothing cluster-wide grants Secrets."""
    docs = _render(helm, tmp_path, {"gateway": {"watchNamespaces": ["shop", "billing"]}})
    cluster_rules = _one(docs, "ClusterRole", "operator")["rules"]
    assert not _allows(cluster_rules, "", "secrets", "get")
    assert not _allows(cluster_rules, "", "services", "list")
    assert not _allows(cluster_rules, "propylon.dev", "apis", "watch")
    watch_roles = {
        d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-watch")
    }
    assert sorted(watch_roles) == sorted(["shop", "billing", RELEASE_NAMESPACE])
    bound = {
        d["metadata"]["namespace"]
        for d in docs
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == f"propylon-operator-{RELEASE_NAMESPACE}-watch"
        and d["subjects"] == [{"kind": "ServiceAccount", "name": "propylon-operator", "namespace": RELEASE_NAMESPACE}]
    }  # fmt: skip
    assert bound == set(watch_roles)
    for role in watch_roles.values():
        for verb in ("get", "list", "watch"):
            for group, resource in (
                ("propylon.dev", "apis"), ("propylon.dev", "stages"), ("", "secrets"), ("", "services"),
                ("discovery.k8s.io", "endpointslices"), ("coordination.k8s.io", "leases"),
            ):  # fmt: skip
                assert _allows(role["rules"], group, resource, verb), f"{verb} {resource}"
        assert _allows(role["rules"], "propylon.dev", "stages/status", "patch")
        assert _allows(role["rules"], "", "events", "create")
    # All namespaces (the default): the same rights, cluster-wide.
    assert _allows(_one(_render(helm, tmp_path), "ClusterRole", "operator")["rules"], "", "secrets", "watch")


def test_helm_refuses_values_outside_the_schema(helm: str, tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump({"proxy": {"replica": 3}}))
    done = subprocess.run(
        [helm, "template", "propylon", str(CHART), "-f", str(file)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "replica" in done.stderr


def test_operator_rbac_covers_what_the_operator_writes(helm: str, tmp_path: Path) -> None:
    """Every object the operator applies, and every grant it hands the proxy, is within its RBAC.

    Kubernetes refuses to let the operator create a Role granting more than it holds itself, so
    the proxy's rules are checked against the operator's too. The settings are the ones the
    chart's flags give (``--proxy-cluster-role`` among them).
    """
    from propylon_operator import workloads

    docs = _render(helm, tmp_path, ALL_ON)
    cluster_rules = _one(docs, "ClusterRole", "operator")["rules"]
    (operator_role,) = [d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-watch")]
    namespace_rules = operator_role["rules"] + cluster_rules
    settings = _settings_from(docs)
    assert (settings.gateway_name, settings.gateway_namespace, settings.hpa_max) == ("edge", RELEASE_NAMESPACE, 7)
    for manifest in workloads.build(settings, owner=None):
        group = manifest["apiVersion"].rpartition("/")[0]
        plural, namespaced = workloads.PLURALS[manifest["kind"]]
        rules = namespace_rules if namespaced else cluster_rules
        name = manifest["metadata"]["name"]
        for verb in ("get", "patch"):  # server-side apply
            assert _allows(rules, group, plural, verb, name), f"{verb} {plural}/{name}"
        assert _allows(rules, group, plural, "create", name), f"create {plural}"
        for rule in manifest.get("rules", []):
            for granted_group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for granted_name in rule.get("resourceNames") or [None]:
                            assert _allows(
                                namespace_rules if namespaced else cluster_rules,
                                granted_group, resource, verb, granted_name,
                            ), f"the proxy gets {verb} {resource} that the operator lacks"  # fmt: skip
    snapshot = settings.snapshot_secret
    assert _allows(namespace_rules, "", "secrets", "patch", snapshot)
    # ALL_ON watches shop and billing: the reading rights are Roles there (and in the release namespace).
    watch_roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-watch")]
    for namespace in (*settings.namespaces, settings.gateway_namespace):
        (watch_role,) = [d for d in watch_roles if d["metadata"]["namespace"] == namespace]
        watch_rules = watch_role["rules"]
        for verb in ("get", "list", "watch"):
            for group, resource in (
                ("propylon.dev", "apis"), ("propylon.dev", "stages"), ("propylon.dev", "usageplans"),
                ("propylon.dev", "authorizers"), ("", "secrets"), ("", "services"),
                ("discovery.k8s.io", "endpointslices"), ("coordination.k8s.io", "leases"),
            ):  # fmt: skip
                assert _allows(watch_rules, group, resource, verb), f"{verb} {resource} in {namespace}"
        assert _allows(watch_rules, "propylon.dev", "stages/status", "patch")
        assert _allows(watch_rules, "", "events", "create")


# --- the chart in a real API server ------------------------------------------------------------
# The control-plane tier's etcd + kube-apiserver (RBAC on, no nodes): the rendered chart must be
# accepted as is, and the operator's ServiceAccount must be allowed, by the API server itself,
# to server-side apply everything the operator applies (Kubernetes also refuses it a Role or
# ClusterRole that grants more than it holds) while being refused what it should not do.


@pytest.fixture(scope="module")
def api_server(helm: str) -> Any:
    sys.path.insert(0, str(ROOT / "tests" / "controlplane"))
    try:
        import cluster
    finally:
        sys.path.pop(0)
    missing = cluster.binaries_missing()
    if missing:
        pytest.skip(f"control-plane binaries missing: {', '.join(missing)} (run tools/controlplane/build.sh)")
    plane = cluster.ControlPlane()
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.mark.controlplane
def test_rendered_chart_installs_and_its_rbac_is_enforced(helm: str, api_server: Any, tmp_path: Path) -> None:
    from propylon_operator import workloads

    rendered = _helm(
        helm, "template", "propylon", str(CHART), "--namespace", RELEASE_NAMESPACE, "--include-crds",
        values=ALL_ON, tmp=tmp_path,
    )  # fmt: skip
    api_server.kubectl("create", "namespace", RELEASE_NAMESPACE)
    api_server.kubectl("create", "namespace", "shop")
    api_server.kubectl("create", "namespace", "billing")
    # `helm install` puts CRDs in first; kubectl applies in document order, CRDs lead the output.
    api_server.kubectl("apply", "--server-side", "-f", "-", input=rendered)
    api_server.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", timeout=70)

    account = f"system:serviceaccount:{RELEASE_NAMESPACE}:propylon-operator"

    def as_operator(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return api_server.kubectl(f"--as={account}", *args, input=input, check=False)

    def can(*args: str) -> bool:
        return as_operator("auth", "can-i", *args).stdout.strip() == "yes"

    settings = _settings_from([doc for doc in yaml.safe_load_all(rendered) if doc])
    assert settings.proxy_cluster_role
    for manifest in workloads.build(settings, owner=None):
        done = as_operator(
            "apply", "--server-side", "--field-manager=propylon-operator", "-f", "-", input=json.dumps(manifest)
        )
        assert done.returncode == 0, f"{manifest['kind']} {manifest['metadata']['name']}: {done.stderr}"
    snapshot = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": settings.snapshot_secret, "namespace": RELEASE_NAMESPACE},
        "stringData": {"snapshot.json": "{}"},
    }
    done = as_operator(
        "apply", "--server-side", "--field-manager=propylon-operator", "-f", "-", input=json.dumps(snapshot)
    )
    assert done.returncode == 0, done.stderr

    # ALL_ON watches shop and billing: it reads there (and in its own namespace), nowhere else.
    for namespace in ("shop", "billing", RELEASE_NAMESPACE):
        assert can("list", "apis.propylon.dev", "-n", namespace)
        assert can("watch", "endpointslices.discovery.k8s.io", "-n", namespace)
        assert can("list", "secrets", "-n", namespace)
    assert not can("list", "secrets", "--all-namespaces")
    assert not can("get", "secrets", "-n", "default")
    assert can("patch", "stages.propylon.dev", "--subresource=status", "-n", "shop")
    assert can("create", "events", "-n", "shop")
    # What it must not do: write outside its namespace, change what users own, touch other RBAC.
    assert not can("create", "secrets", "-n", "shop")
    assert not can("patch", "deployments", "-n", "shop")
    assert not can("delete", "services", "-n", "shop")
    assert not can("patch", "apis.propylon.dev", "-n", "shop")
    assert not can("delete", "clusterroles/cluster-admin")
    assert not can("patch", "clusterrolebindings/cluster-admin")
    assert not can("create", "pods", "-n", RELEASE_NAMESPACE)
    # No RBAC object cluster-wide, hence no way to grant itself or anyone more.
    for resource in ("clusterroles", "clusterrolebindings"):
        assert not can("create", resource)
        assert not can("patch", f"{resource}/{settings.proxy_cluster_role}")
    assert can("get", f"clusterroles/{settings.proxy_cluster_role}")  # the webhook configuration's owner
    assert not can("get", "clusterroles/cluster-admin")
    assert not can("bind", "clusterroles/cluster-admin")
    assert not can("escalate", "clusterroles/cluster-admin")
    # The proxies, under the ServiceAccount the operator made, read EndpointSlices everywhere
    # through the chart's binding, and write nothing outside their own Leases.
    proxy = f"system:serviceaccount:{RELEASE_NAMESPACE}:{workloads.proxy_name(settings)}"

    def proxy_can(*args: str) -> bool:
        return api_server.kubectl(f"--as={proxy}", "auth", "can-i", *args, check=False).stdout.strip() == "yes"

    assert proxy_can("watch", "endpointslices.discovery.k8s.io", "-n", "shop")
    assert proxy_can("list", "endpointslices.discovery.k8s.io", "--all-namespaces")
    assert proxy_can("get", f"secrets/{settings.snapshot_secret}", "-n", RELEASE_NAMESPACE)
    assert proxy_can("patch", "leases.coordination.k8s.io", "-n", RELEASE_NAMESPACE)
    assert not proxy_can("get", "secrets", "-n", "shop")
    assert not proxy_can("patch", "endpointslices.discovery.k8s.io", "-n", "shop")


def test_the_bundled_redis_is_values_gated_and_its_url_reaches_the_operator(helm: str, tmp_path: Path) -> None:
    """redis.bundled renders one Redis Deployment and Service whose in-cluster URL the operator hands on."""
    docs = _render(helm, tmp_path, {"redis": {"bundled": {"enabled": True}}})
    redis = [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "redis"]
    assert sorted(d["kind"] for d in redis) == ["Deployment", "NetworkPolicy", "Service"]
    # It has no password: only the gateway's proxy pods may reach it.
    policy = next(d for d in redis if d["kind"] == "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "propylon-proxy", "app.kubernetes.io/instance": "propylon"}
            }
        }
    ]
    service = next(d for d in redis if d["kind"] == "Service")
    url = f"redis://{service['metadata']['name']}.{RELEASE_NAMESPACE}.svc:6379/0"
    assert _redis_secret(docs)["stringData"]["url"] == url
    env = {e["name"] for e in _one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "PROPYLON_REDIS_URL" in env
    # An explicit URL wins: no bundled Redis is rendered beside it.
    docs = _render(helm, tmp_path, {"redis": {"url": "redis://elsewhere:6379/0", "bundled": {"enabled": True}}})
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "redis"]
    assert _redis_secret(docs)["stringData"]["url"] == "redis://elsewhere:6379/0"


def test_the_admin_token_reaches_the_operator_and_the_proxies_from_one_secret(helm: str, tmp_path: Path) -> None:
    """The operator reads UsagePlan usage from the proxies' /admin/usage with the token they guard it with."""
    docs = _render(helm, tmp_path)
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-admin")]
    assert len(base64.b64decode(secret["data"]["token"])) == 40
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    name = secret["metadata"]["name"]
    assert env["PROPYLON_ADMIN_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": name, "key": "token"}}
    assert env["PROPYLON_ADMIN_TOKEN_SECRET"]["value"] == name


# --- Issue 13: the Grafana dashboard and the Prometheus operator's scrape objects ---------------

DASHBOARD = CHART / "dashboards" / "propylon.json"
MONITORING_ON = {
    "gateway": {"name": "edge"},
    "grafanaDashboard": {"enabled": True},
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "scrapeTimeout": "10s"},
        "podMonitor": {"enabled": True, "interval": "15s"},
    },
}
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _proxy_pods(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The proxy Deployment exactly as the operator the chart configures would build it."""
    from propylon_operator import workloads

    return workloads.deployment(_settings_from(docs), None)


def test_monitoring_values_lint_and_fail_closed_on_typos(helm: str, tmp_path: Path) -> None:
    _helm(helm, "lint", str(CHART), "--strict", values=MONITORING_ON, tmp=tmp_path)
    for bad in (
        {"metrics": {"serviceMonitor": {"enable": True}}},
        {"metrics": {"podMonitor": {"interval": "soon"}}},
        {"grafanaDashboard": {"labelKey": "not a label"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_merge(_default_values(), bad), _schema())


def test_default_render_has_no_dashboard_and_no_monitors(helm: str, tmp_path: Path) -> None:
    docs = _render(helm, tmp_path)
    assert not [d for d in docs if d["kind"] in MONITORING_KINDS]
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    assert not [d for d in docs if d["kind"] == "Service" and _component(d) == "metrics"]


def test_the_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard(helm: str, tmp_path: Path) -> None:
    config_map = _one(_render(helm, tmp_path, MONITORING_ON), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == RELEASE_NAMESPACE
    (name, body), *_ = config_map["data"].items()
    assert name.endswith(".json")
    assert json.loads(body) == _dashboard()  # valid JSON, and the chart's file unchanged
    custom = {
        "grafanaDashboard": {
            "enabled": True,
            "labelKey": "grafana.example/dashboard",
            "labelValue": "propylon",
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "Gateways"},
        }
    }
    config_map = _one(_render(helm, tmp_path, custom), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana.example/dashboard"] == "propylon"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Gateways"}


def test_the_service_monitor_scrapes_the_proxies_admin_port(helm: str, tmp_path: Path) -> None:
    values = _merge(MONITORING_ON, {"metrics": {"podMonitor": {"enabled": False}}})
    docs = _render(helm, tmp_path, values)
    assert not [d for d in docs if d["kind"] == "PodMonitor"]
    monitor = _one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scrapeTimeout"]) == ("admin", "/metrics", "10s")
    # The monitor selects exactly the chart's metrics Service (not the operator's public ones) ...
    selected = [
        d
        for d in docs
        if d["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["edge-metrics"]
    [port] = selected[0]["spec"]["ports"]
    assert port["name"] == "admin"
    # ... and that Service reaches the proxy pods' admin container port, which serves /metrics.
    pods = _proxy_pods(docs)["spec"]["template"]
    assert selected[0]["spec"]["selector"].items() <= pods["metadata"]["labels"].items()
    container_ports = {p["name"]: p["containerPort"] for p in pods["spec"]["containers"][0]["ports"]}
    assert container_ports[port["targetPort"]] == 9090
    assert port["port"] == container_ports["admin"]


def test_the_pod_monitor_scrapes_the_proxy_pods_admin_port(helm: str, tmp_path: Path) -> None:
    values = _merge(MONITORING_ON, {"metrics": {"serviceMonitor": {"enabled": False}}})
    docs = _render(helm, tmp_path, values)
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert not [d for d in docs if d["kind"] == "Service" and _component(d) == "metrics"]
    monitor = _one(docs, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("admin", "/metrics", "15s")
    pods = _proxy_pods(docs)["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pods["metadata"]["labels"].items()
    assert "admin" in {p["name"] for p in pods["spec"]["containers"][0]["ports"]}


GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
# Labels Prometheus adds to every scraped series from its target (the PodMonitor's pod, ...).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "container", "service", "endpoint"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def _selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Each series selector of a PromQL expression: (metric name, {label: (operator, value)}).

    Enough PromQL for the dashboard's own queries: string literals, range brackets and the
    grouping clauses are cut out first, then a name not followed by "(" is a metric name (a
    function name always is followed by one)."""
    found: list[tuple[str, dict[str, tuple[str, str]]]] = []
    text = re.sub(r"\[[^\]]*\]", "", expr)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\}|\()?", text):
        name, after = match.group(1), match.group(2) or ""
        if after.startswith("(") or name in PROMQL_WORDS:
            continue
        matchers = {
            label: (op, value) for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', after)
        }
        found.append((name, matchers))
    return found


def _grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    return labels


def _matches(labels: dict[str, str], matchers: dict[str, tuple[str, str]]) -> bool:
    for label, (op, value) in matchers.items():
        actual = labels.get(label, "")
        hit = re.fullmatch(value, actual) is not None if op in ("=~", "!~") else actual == value
        if hit == (op in ("!=", "!~")):
            return False
    return True


def test_the_dashboard_has_what_grafana_needs_to_load_it() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "route"} <= variables.keys()
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in dashboard["panels"]:
        assert panel["type"] == "timeseries" and panel["title"], panel
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= variables.keys() | GRAFANA_BUILTINS, (panel["title"], used)
    # What the issue asks the dashboard to show, by the series each panel reads.
    read = {name for _, expr in _exprs(dashboard) for name, _ in _selectors(expr)}
    assert {
        "propylon_requests_total",
        "propylon_request_duration_seconds_bucket",
        "propylon_integration_duration_seconds_bucket",
        "propylon_cache_total",
        "propylon_throttled_total",
    } <= read
    quantiles = {q for _, expr in _exprs(dashboard) for q in re.findall(r"histogram_quantile\(([0-9.]+)", expr)}
    assert {"0.5", "0.9", "0.99"} <= quantiles


SCRAPE_MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: demo}}
spec:
  routes:
    - routeKey: GET /items
      integration: {{type: HTTP_PROXY, url: "{backend}/items"}}
    - routeKey: GET /limited
      integration: {{type: HTTP_PROXY, url: "{backend}/limited"}}
    - routeKey: GET /broken
      integration: {{type: HTTP_PROXY, url: "{backend}/broken"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: demo}}
spec:
  apiRef: shop
  basePath: /live
  routeSettings:
    "GET /items": {{cache: {{enabled: true, ttlSeconds: 300}}}}
    "GET /limited": {{throttle: {{rateLimit: 0.001, burstLimit: 1}}}}
"""


def _ok_but_broken(request: backends.Received) -> backends.Answer:
    """200 everywhere except /broken (500), so every status class and the integration histogram move."""
    return backends.Answer(status=500 if request.path.startswith("/broken") else 200, body=b"ok")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


@pytest.fixture(scope="module")
def gateway_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The admin /metrics page of a real `propylon serve` after traffic on a cached and a throttled route."""
    from tests.serve.test_serve import Served

    tmp = tmp_path_factory.mktemp("dashboard")
    backend = backends.Backend(_ok_but_broken)
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(SCRAPE_MANIFESTS.format(backend=backend.url))
    served = Served(folder, tmp)
    try:
        assert [_get(served.url("/live/items")) for _ in range(3)] == [200, 200, 200]  # a miss, then hits
        assert [_get(served.url("/live/limited")) for _ in range(2)] == [200, 429]  # burst 1: throttled
        assert _get(served.url("/live/broken")) == 500
        assert _get(served.url("/nowhere")) == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{served.admin}/metrics", timeout=20) as response:
            yield response.read().decode()
    finally:
        served.stop()
        backend.close()


def test_every_dashboard_query_reads_series_a_running_gateway_exposes(gateway_scrape: str) -> None:
    """The dashboard "renders": each panel's selectors name series of a real scrape, with labels
    those series carry, and (with $namespace=demo and $route=All) select samples of it."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(gateway_scrape):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(dict(sample.labels))
    dashboard = _dashboard()
    variables = {"namespace": "demo", "route": ".*", "__rate_interval": "1m"}
    queries = [(title, expr, None) for title, expr in _exprs(dashboard)]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(selector, label): the label must exist too
            values_of = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
            assert values_of, variable
            queries.append((variable["name"], values_of.group(1), values_of.group(2)))
    for title, expr, wanted_label in queries:
        selectors = _selectors(expr)
        assert selectors, (title, expr)
        known: set[str] = set(TARGET_LABELS)
        for name, matchers in selectors:
            assert name in series, f"{title}: {name} is not in a gateway's /metrics ({sorted(series)})"
            labels = set().union(*(s.keys() for s in series[name]))
            known |= labels
            assert set(matchers) <= labels, (title, name, set(matchers) - labels)
            bound = {
                label: (op, re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], value))
                for label, (op, value) in matchers.items()
            }
            assert any(_matches(s, bound) for s in series[name]), f"{title}: {name}{bound} selects nothing"
        assert _grouping_labels(expr) <= known, (title, _grouping_labels(expr) - known)
        assert wanted_label is None or wanted_label in known, (title, wanted_label)
    for name, labels in (
        ("propylon_cache_total", {"result": "hit"}),
        ("propylon_throttled_total", {"reason": "route"}),
    ):
        assert any(labels.items() <= s.items() for s in series[name]), (name, series.get(name))


def test_slow_client_limits_reach_the_operator_as_the_variables_it_passes_on(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN.md section 8 "All configurable": proxy.*TimeoutSeconds become the operator's
    PROPYLON_* variables, which its flags default from and which it sets on every proxy."""
    from propylon import cli
    from propylon.commands import shared_flags

    values = {
        "proxy": {
            "headerTimeoutSeconds": 4,
            "bodyStallTimeoutSeconds": 12.5,
            "keepaliveTimeoutSeconds": 90,
            "responseStallTimeoutSeconds": 45,
        }
    }
    docs = _render(helm, tmp_path, values)
    (operator,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert (env["PROPYLON_HEADER_TIMEOUT"], env["PROPYLON_BODY_STALL_TIMEOUT"]) == ("4", "12.5")
    assert (env["PROPYLON_KEEPALIVE_TIMEOUT"], env["PROPYLON_RESPONSE_STALL_TIMEOUT"]) == ("90", "45")
    names = ("HEADER_TIMEOUT", "BODY_STALL_TIMEOUT", "KEEPALIVE_TIMEOUT", "RESPONSE_STALL_TIMEOUT")
    for name in names:
        monkeypatch.setenv(f"PROPYLON_{name}", str(env[f"PROPYLON_{name}"]))
    args = cli.build_parser().parse_args(_operator_args(docs))
    assert dict(shared_flags.slow_client_variables(args)) == {
        "PROPYLON_HEADER_TIMEOUT": 4.0,
        "PROPYLON_BODY_STALL_TIMEOUT": 12.5,
        "PROPYLON_KEEPALIVE_TIMEOUT": 90.0,
        "PROPYLON_RESPONSE_STALL_TIMEOUT": 45.0,
    }
    with pytest.raises(AssertionError, match="headerTimeoutSeconds"):  # the schema refuses a zero limit
        _render(helm, tmp_path, {"proxy": {"headerTimeoutSeconds": 0}})


# --- the b2 audit: two releases, big numbers, schema rules, the proxies' image pull -------------


def _render_in(helm: str, tmp: Path, namespace: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = _helm(helm, "template", "propylon", str(CHART), "--namespace", namespace, values=values, tmp=tmp)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _identities(docs: list[dict[str, Any]], namespace: str) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of each object, "" for a cluster-scoped one: what two releases must not share."""
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration", "CustomResourceDefinition"}
    return {
        (
            d["kind"],
            "" if d["kind"] in cluster_scoped else d["metadata"].get("namespace", namespace),
            d["metadata"]["name"],
        )
        for d in docs
    }


@pytest.mark.parametrize(
    "values",
    [None, {"gateway": {"watchNamespaces": ["shop"]}, "webhook": {"enabled": True}}],
    ids=["defaults", "watching-shop"],
)
def test_two_releases_of_one_name_in_two_namespaces_share_no_object(
    helm: str, tmp_path: Path, values: dict[str, Any] | None
) -> None:
    """Audit b2, item 1: the operator's ClusterRole and ClusterRoleBinding (and its reading Roles in
    a namespace both watch) carry the release namespace, as the proxies' ClusterRole does: a second
    release "propylon" in propylon-staging no longer rebinds the first one's rights to itself."""
    system = _render_in(helm, tmp_path, "propylon-system", values)
    staging = _render_in(helm, tmp_path, "propylon-staging", values)
    assert not _identities(system, "propylon-system") & _identities(staging, "propylon-staging")
    for docs, namespace in ((system, "propylon-system"), (staging, "propylon-staging")):
        role = _one(docs, "ClusterRole", "operator")
        binding = _one(docs, "ClusterRoleBinding", "operator")
        assert role["metadata"]["name"] == f"propylon-operator-{namespace}"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "propylon-operator", "namespace": namespace}]
        for watch in [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-watch")]:
            assert watch["roleRef"]["name"] == watch["metadata"]["name"] == f"propylon-operator-{namespace}-watch"


@pytest.mark.controlplane
def test_a_second_release_of_the_same_name_leaves_the_first_its_rights(
    helm: str, api_server: Any, tmp_path: Path
) -> None:
    """Audit b2, item 1, in a real API server: both releases applied server-side, each operator
    keeps its cluster-wide reads and no object of one was taken over by the other."""
    releases = ("audit-b2-one", "audit-b2-two")
    for namespace in releases:
        api_server.kubectl("create", "namespace", namespace)
        (tmp_path / namespace).mkdir()
        rendered = _helm(
            helm, "template", "propylon", str(CHART), "--namespace", namespace, "--include-crds",
            values={}, tmp=tmp_path / namespace,
        )  # fmt: skip
        api_server.kubectl("apply", "--server-side", "-f", "-", input=rendered)
    for namespace in releases:
        account = f"system:serviceaccount:{namespace}:propylon-operator"
        done = api_server.kubectl(
            f"--as={account}", "auth", "can-i", "list", "apis.propylon.dev", "--all-namespaces", check=False
        )
        assert done.stdout.strip() == "yes", f"{account}: {done.stdout}{done.stderr}"
        binding = json.loads(
            api_server.kubectl("get", "clusterrolebinding", f"propylon-operator-{namespace}", "-o", "json").stdout
        )
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "propylon-operator", "namespace": namespace}]


BIG_NUMBERS = {
    "gateway": {"throttle": {"rateLimit": 2500000.25, "burstLimit": 1000000}},
    "proxy": {
        "replicas": 1000000,
        "drainSeconds": 3600,
        "autoscaling": {"enabled": True, "maxReplicas": 2000000},
        "headerTimeoutSeconds": 1000000,
        "env": {"OTEL_BSP_MAX_QUEUE_SIZE": 10000000, "OTEL_BSP_SCHEDULE_DELAY": 0.5, "OTEL_SDK_DISABLED": False},
    },
    "redis": {"url": "redis://redis:6379/0", "timeoutMs": 1000000, "wsRegistryTtlSeconds": 1234567.5},
}


def test_numbers_of_a_million_and_more_reach_the_operator_whole(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit b2, item 2: Helm reads numbers as floats and %v wrote 1e+06, which --gateway-burst
    refused (the operator exited 2: a crash loop). Every number now parses with the operator's own
    argparse types and keeps every digit, fractions included, down to the proxies' environment."""
    from propylon.commands import shared_flags
    from propylon_operator import compiling, workloads

    docs = _render(helm, tmp_path, BIG_NUMBERS)
    args = _operator_args(docs)
    assert not [a for a in args if re.search(r"\de[+-]\d", a)], args
    assert (_flag(args, "gateway-rate"), _flag(args, "gateway-burst")) == ("2500000.25", "1000000")
    (operator,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert (env["PROPYLON_HEADER_TIMEOUT"], env["PROPYLON_REDIS_TIMEOUT_MS"]) == ("1000000", "1000000")
    assert env["PROPYLON_WS_REGISTRY_TTL"] == "1234567.5"
    for name, value in env.items():  # the operator Pod's environment, which its flags default from
        if value is not None:
            monkeypatch.setenv(name, value)
    parsed = cli_args(args)  # the operator's real argparse types: exit 2 on 1e+06
    throttle = shared_flags.gateway_throttle(parsed)
    assert (throttle.rate_limit, throttle.burst_limit) == (2500000.25, 1000000)
    snapshot = compiling.LastGood(gateway_throttle=throttle).compile({}).snapshot
    assert snapshot.settings.gateway_throttle.burst_limit == 1000000
    assert (parsed.replicas, parsed.hpa_max, parsed.drain_seconds) == (1000000, 2000000, 3600)
    assert (parsed.redis_timeout_ms, parsed.ws_registry_ttl) == (1000000.0, 1234567.5)
    settings = _settings_from(docs)
    (proxy,) = workloads.deployment(settings, None)["spec"]["template"]["spec"]["containers"]
    proxy_env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert proxy_env["OTEL_BSP_MAX_QUEUE_SIZE"] == "10000000"
    assert proxy_env["OTEL_BSP_SCHEDULE_DELAY"] == "0.5"
    assert proxy_env["OTEL_SDK_DISABLED"] == "false"
    # The operator writes the numbers it passes on in full too (":g" kept six digits: 1.23457e+06).
    assert proxy_env["PROPYLON_HEADER_TIMEOUT"] == proxy_env["PROPYLON_REDIS_TIMEOUT_MS"] == "1000000"
    assert proxy_env["PROPYLON_WS_REGISTRY_TTL"] == "1234567.5"


def _proxy_accepts_cluster(url: str) -> bool:
    """Whether ``propylon proxy --redis URL --redis-cluster`` starts: its flag type, then its check."""
    from propylon.commands import shared_flags

    try:
        shared_flags.redis_url(url)
    except argparse.ArgumentTypeError:
        return False
    return shared_flags.redis_cluster_refusal(url, True) is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis-cluster.data.svc:6379",
        "rediss://:secret@redis-cluster.data.svc:6380/0",
        "unix:///var/run/redis/redis.sock",
        "unix:///tmp/r.sock?db=0",
    ],
)
def test_schema_and_proxies_agree_on_a_redis_cluster_url(url: str) -> None:
    """Audit b2, item 3: redis.cluster with a unix:// URL passed the schema and the proxies then
    refused to start; the schema now gives the proxies' verdict (as for trustedProxies)."""
    values = _merge(_default_values(), {"redis": {"url": url, "cluster": True}})
    schema_accepts = jsonschema.Draft7Validator(_schema()).is_valid(values)
    assert schema_accepts == _proxy_accepts_cluster(url), (url, schema_accepts)
    # Without cluster the same URL is the proxies' as before (unix:// is a plain Redis's).
    assert jsonschema.Draft7Validator(_schema()).is_valid(_merge(values, {"redis": {"cluster": False}}))


def test_the_schema_refuses_a_cluster_of_the_bundled_redis(helm: str, tmp_path: Path) -> None:
    """Audit b2, item 3: the bundled Redis is one plain Redis; told it is a cluster, the proxies'
    cluster client could never use it. Helm refuses that, and a unix:// cluster URL, at install."""
    for redis in ({"bundled": {"enabled": True}, "cluster": True}, {"url": "unix:///r.sock", "cluster": True}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_merge(_default_values(), {"redis": redis}), _schema())
        with pytest.raises(AssertionError, match="schema"):
            _render(helm, tmp_path, {"redis": redis})
    # Still fine: the bundled Redis as itself, a cluster URL winning over it, cluster with no Redis at all.
    for redis in (
        {"bundled": {"enabled": True}},
        {"bundled": {"enabled": True}, "url": "redis://cluster:6379", "cluster": True},
        {"cluster": True},
    ):
        jsonschema.validate(_merge(_default_values(), {"redis": redis}), _schema())


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"serviceAccount": {"name": "default"}}, "the namespace's default account, every pod's"),
        ({"serviceAccount": {"create": False, "name": "default"}}, "binding the operator's rights to it"),
        ({"serviceAccount": {"name": "Ops_Robot"}}, "not a DNS name"),
        ({"serviceAccount": {"name": "ops-robot-"}}, "a DNS label does not end in a dash"),
        ({"serviceAccount": {"name": "a" * 254}}, "longer than a DNS subdomain"),
        ({"gateway": {"watchNamespaces": ["n" * 64]}}, "longer than a namespace name"),
    ],
)
def test_schema_refuses_names_kubernetes_or_the_readme_refuse(overrides: dict[str, Any], why: str) -> None:
    """Audit b2, item 5."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(_default_values(), overrides), _schema())


@pytest.mark.parametrize(
    "overrides",
    [
        {"serviceAccount": {"name": ""}},
        {"serviceAccount": {"name": "ops-robot"}},
        {"serviceAccount": {"name": "propylon.operator"}},
        {"serviceAccount": {"name": "defaults"}},
        {"gateway": {"watchNamespaces": ["n" * 63]}},
    ],
)
def test_schema_takes_the_names_kubernetes_takes(overrides: dict[str, Any]) -> None:
    jsonschema.validate(_merge(_default_values(), overrides), _schema())


def test_the_proxy_pods_pull_their_image_as_the_operator_pod_does(helm: str, tmp_path: Path) -> None:
    """Audit b2, item 4: image.pullPolicy and imagePullSecrets reached the operator Pod only; with
    a private registry the proxies could not pull. They now reach the proxy Deployment the
    operator builds, through its --proxy-image-pull-policy and --proxy-image-pull-secret."""
    from propylon_operator import workloads

    values = {
        "image": {"repository": "registry.example/propylon", "tag": "0.1.0", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror-cred"}],
    }
    docs = _render(helm, tmp_path, values)
    operator_pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    args = _operator_args(docs)
    assert _flag(args, "proxy-image-pull-policy") == "Always"
    assert [a for a in args if a.startswith("--proxy-image-pull-secret=")] == [
        "--proxy-image-pull-secret=regcred",
        "--proxy-image-pull-secret=mirror-cred",
    ]
    (deployment,) = [m for m in workloads.build(_settings_from(docs), owner=None) if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/propylon:0.1.0"
    assert container["imagePullPolicy"] == operator_pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == operator_pod["imagePullSecrets"] == values["imagePullSecrets"]
    # The defaults: the chart's IfNotPresent, and no pull Secrets at all.
    default_pod = workloads.deployment(_settings_from(_render(helm, tmp_path)), None)["spec"]["template"]["spec"]
    assert default_pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "imagePullSecrets" not in default_pod


def _value_keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key of values.yaml as a dotted path; resources (Kubernetes' own shape) as one value."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "resources":
            yield from _value_keys(value, f"{path}.")
        else:
            yield path


def test_the_chart_readme_documents_every_value() -> None:
    """Audit b2, item 6: each key of values.yaml has a row in the README's table, by its full
    path or as a sibling listed in a row that starts from its parent (`proxy.autoscaling.enabled`,
    `maxReplicas`)."""
    rows = [line for line in (CHART / "README.md").read_text().splitlines() if line.startswith("| `")]
    missing = []
    for path in _value_keys(_default_values()):
        parent, _, leaf = path.rpartition(".")
        documented = any(
            f"`{path}`" in row.split(" | ")[0]
            or (f"`{parent}." in row.split(" | ")[0] and re.search(rf"`\.?{re.escape(leaf)}`", row.split(" | ")[0]))
            for row in rows
        )
        if not documented:
            missing.append(path)
    assert not missing, f"charts/propylon/README.md has no row for {missing}"
