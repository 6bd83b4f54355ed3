"""The data plane's manifests: what `kubectl get -o yaml` would show a user after the operator ran."""

from __future__ import annotations

from propylon_operator import settings, workloads

OWNER = workloads.owner_reference("v1", "Secret", "gw-snapshot", "uid-1")


def _by_kind(manifests):
    out: dict[str, list[dict]] = {}
    for manifest in manifests:
        out.setdefault(manifest["kind"], []).append(manifest)
    return out


def test_deployment_runs_the_proxy_on_the_snapshot_secret() -> None:
    s = settings.Settings(gateway_name="gw", gateway_namespace="edge", proxy_image="img:1", replicas=3)
    deployment = workloads.deployment(s, OWNER)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["metadata"]["namespace"] == "edge"
    assert deployment["metadata"]["ownerReferences"] == [OWNER]
    assert spec["replicas"] == 3
    assert container["image"] == "img:1"
    assert container["command"] + container["args"] == [
        "propylon",
        "proxy",
        "--config-secret",
        "edge/gw-snapshot",
        "--drain-seconds",
        "25",
    ]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "public": 8080,
        "internal": 8081,
        "admin": 9090,
    }
    assert container["readinessProbe"]["httpGet"] == {"port": "admin", "path": "/readyz"}
    assert container["livenessProbe"]["httpGet"] == {"port": "admin", "path": "/healthz"}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"]
    assert pod["serviceAccountName"] == "gw-proxy"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_proxies_drain_on_rollouts_and_trust_the_configured_load_balancer() -> None:
    """Issue 8, items 5 and 7: preStop keeps a stopping pod serving while Services forget it,
    SIGTERM drains within the grace period, and --trusted-proxies reaches every proxy."""
    s = settings.Settings(gateway_name="gw", trusted_proxies="10.0.0.0/8,192.168.0.0/16", drain_seconds=40)
    pod = workloads.deployment(s, OWNER)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][-4:] == ["--drain-seconds", "40", "--trusted-proxies", "10.0.0.0/8,192.168.0.0/16"]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert pod["terminationGracePeriodSeconds"] == 5 + 40 + 5


def test_the_proxies_event_loop_is_passed_only_when_chosen() -> None:
    """Issue 15: --proxy-loop reaches every proxy as its --loop; auto (the default) adds nothing."""
    (default,) = workloads.deployment(settings.Settings(gateway_name="gw"), OWNER)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--loop" not in default["args"]
    chosen = settings.Settings(gateway_name="gw", proxy_loop="asyncio")
    (container,) = workloads.deployment(chosen, OWNER)["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["--loop", "asyncio"]


def test_with_an_autoscaler_the_deployment_leaves_replicas_to_it() -> None:
    s = settings.Settings(gateway_name="gw", replicas=2, hpa_max=6)
    assert "replicas" not in workloads.deployment(s, OWNER)["spec"]
    hpa = workloads.autoscaler(s, OWNER)
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gw"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert workloads.autoscaler(settings.Settings(hpa_max=0), OWNER) is None


def test_services_expose_public_and_internal_listeners_but_never_admin() -> None:
    s = settings.Settings(gateway_name="gw", gateway_namespace="edge")
    public, internal = workloads.services(s, OWNER)
    assert public["metadata"]["name"] == "gw"
    assert internal["metadata"]["name"] == "gw-internal"
    assert public["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "public", "protocol": "TCP"}]
    assert internal["spec"]["ports"][0]["targetPort"] == "internal"
    assert public["spec"]["selector"] == workloads.selector(s)
    every_port = [p["targetPort"] for svc in (public, internal) for p in svc["spec"]["ports"]]
    assert "admin" not in every_port


def test_disruption_budget_never_blocks_a_single_replica_drain() -> None:
    one = workloads.pod_disruption_budget(settings.Settings(replicas=1), OWNER)["spec"]
    many = workloads.pod_disruption_budget(settings.Settings(replicas=3), OWNER)["spec"]
    assert one.get("maxUnavailable") == 1 and "minAvailable" not in one
    assert many.get("minAvailable") == 1 and "maxUnavailable" not in many


def test_proxy_permissions_are_least_privilege() -> None:
    s = settings.Settings(gateway_name="gw", gateway_namespace="edge")
    role = workloads.role(s, OWNER)
    secret_rule, lease_rule = role["rules"]
    assert secret_rule["resourceNames"] == ["gw-snapshot"]
    assert "create" not in secret_rule["verbs"] and "list" in secret_rule["verbs"]
    assert lease_rule["apiGroups"] == ["coordination.k8s.io"]
    assert {"create", "update", "delete"} <= set(lease_rule["verbs"])  # delete: given back on shutdown
    cluster_role = workloads.cluster_role(s)
    assert cluster_role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}
    ]
    binding = workloads.role_binding(s, OWNER)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gw-proxy", "namespace": "edge"}]


def test_everything_namespaced_hangs_off_the_owner_and_cluster_objects_do_not() -> None:
    s = settings.Settings(gateway_name="gw", gateway_namespace="edge", hpa_max=4)
    kinds = _by_kind(workloads.build(s, OWNER))
    assert set(kinds) == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for kind, manifests in kinds.items():
        for manifest in manifests:
            namespaced = workloads.PLURALS[kind][1]
            assert ("ownerReferences" in manifest["metadata"]) is namespaced, kind
            assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "propylon"
    assert "HorizontalPodAutoscaler" not in _by_kind(workloads.build(settings.Settings(), OWNER))


def test_cluster_scoped_objects_are_labelled_with_their_gateway() -> None:
    """Nothing owns them, so labels are how a person (or a script) finds what to delete."""
    s = settings.Settings(gateway_name="gw", gateway_namespace="edge")
    for manifest in (workloads.cluster_role(s), workloads.cluster_role_binding(s)):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "propylon"
        assert labels["app.kubernetes.io/instance"] == "gw"
        assert labels["propylon.dev/gateway-namespace"] == "edge"
        assert "namespace" not in manifest["metadata"]


def test_with_an_installer_provided_cluster_role_nothing_cluster_scoped_is_built() -> None:
    s = settings.Settings(gateway_name="gw", gateway_namespace="edge", proxy_cluster_role="propylon-proxy-edge")
    kinds = _by_kind(workloads.build(s, OWNER))
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    assert all(workloads.PLURALS[kind][1] for kind in kinds)
    # The proxy's namespaced grants and its ServiceAccount (the binding's subject) stay.
    assert {"ServiceAccount", "Role", "RoleBinding", "Deployment"} <= set(kinds)
    assert kinds["ServiceAccount"][0]["metadata"]["name"] == "gw-proxy"


def test_with_a_redis_secret_proxies_read_the_url_from_it_never_from_the_pod_spec() -> None:
    s = settings.Settings(gateway_name="gw", redis_secret="gw-redis", redis_cluster=True, redis_failure="closed")
    (container,) = workloads.deployment(s, OWNER)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PROPYLON_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "gw-redis", "key": "url"}}
    assert (env["PROPYLON_REDIS_CLUSTER"]["value"], env["PROPYLON_REDIS_FAILURE"]["value"]) == ("true", "closed")
    (plain,) = workloads.deployment(settings.Settings(gateway_name="gw"), OWNER)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "PROPYLON_REDIS_URL" not in {e["name"] for e in plain["env"]}


def _proxy_env(s: settings.Settings) -> dict[str, str]:
    """The proxy container's environment, by name (a secretKeyRef's value is "")."""
    (container,) = workloads.deployment(s, OWNER)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_a_redis_budget_reaches_the_proxies_only_when_set() -> None:
    env_of = _proxy_env
    budget = env_of(settings.Settings(gateway_name="gw", redis_secret="r", redis_timeout_ms=120))
    assert budget["PROPYLON_REDIS_TIMEOUT_MS"] == "120"
    assert "PROPYLON_REDIS_TIMEOUT_MS" not in env_of(settings.Settings(gateway_name="gw", redis_secret="r"))


def test_the_websocket_registry_ttl_reaches_the_proxies_only_with_redis_and_when_set() -> None:
    env_of = _proxy_env
    shared = env_of(settings.Settings(gateway_name="gw", redis_secret="r", ws_registry_ttl_s=12.5))
    assert shared["PROPYLON_WS_REGISTRY_TTL"] == "12.5"
    assert "PROPYLON_WS_REGISTRY_TTL" not in env_of(settings.Settings(gateway_name="gw", redis_secret="r"))
    # Without Redis there is no shared registry: nothing to expire.
    assert "PROPYLON_WS_REGISTRY_TTL" not in env_of(settings.Settings(gateway_name="gw", ws_registry_ttl_s=12.5))


def test_with_an_admin_token_secret_proxies_guard_admin_with_it() -> None:
    s = settings.Settings(gateway_name="gw", admin_token_secret="gw-admin")
    (container,) = workloads.deployment(s, OWNER)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PROPYLON_ADMIN_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "gw-admin", "key": "token"}}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}  # the Lease's admin URL
    (plain,) = workloads.deployment(settings.Settings(gateway_name="gw"), OWNER)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "PROPYLON_ADMIN_TOKEN" not in {e["name"] for e in plain["env"]}


def test_proxy_env_reaches_every_proxy_after_the_operators_own() -> None:
    """The chart's proxy.env (OpenTelemetry's OTEL_* for span export) lands in the proxy pods."""
    endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4318")
    s = settings.Settings(gateway_name="gw", proxy_env=(endpoint, ("OTEL_SERVICE_NAME", "edge")))
    (container,) = workloads.deployment(s, OWNER)["spec"]["template"]["spec"]["containers"]
    env = container["env"]
    assert env[-2:] == [{"name": endpoint[0], "value": endpoint[1]}, {"name": "OTEL_SERVICE_NAME", "value": "edge"}]
    assert [e["name"] for e in env[:3]] == ["POD_NAME", "POD_NAMESPACE", "POD_IP"]


def test_the_proxy_pods_pull_with_the_policy_and_secrets_given() -> None:
    """Audit b2, item 4: the chart's image.pullPolicy and imagePullSecrets, passed as flags, reach
    the proxy pods (a private registry refused them without); not given, Kubernetes' defaults."""
    s = settings.Settings(
        gateway_name="gw", proxy_image_pull_policy="Always", proxy_image_pull_secrets=("regcred", "mirror")
    )
    pod = workloads.deployment(s, OWNER)["spec"]["template"]["spec"]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    plain = workloads.deployment(settings.Settings(gateway_name="gw"), OWNER)["spec"]["template"]["spec"]
    assert "imagePullPolicy" not in plain["containers"][0]
    assert "imagePullSecrets" not in plain


def test_numbers_passed_to_the_proxies_keep_every_digit() -> None:
    """Audit b2, item 2: ``:g`` kept six significant digits (1234567.5 -> 1.23457e+06)."""
    s = settings.Settings(
        gateway_name="gw",
        redis_secret="r",
        redis_timeout_ms=1000000.0,
        ws_registry_ttl_s=1234567.5,
        slow_clients=(("PROPYLON_HEADER_TIMEOUT", 12.345678),),
    )
    env = _proxy_env(s)
    assert env["PROPYLON_REDIS_TIMEOUT_MS"] == "1000000"
    assert env["PROPYLON_WS_REGISTRY_TTL"] == "1234567.5"
    assert env["PROPYLON_HEADER_TIMEOUT"] == "12.345678"
