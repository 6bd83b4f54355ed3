"""The Kubernetes objects that run one gateway's data plane, built as plain manifests.

Pure builders: settings and an owner in, manifests out, applied by the reconcile with
server-side apply. Everything namespaced hangs off one owner (the snapshot Secret, see
``owner_reference``) so that deleting it removes the whole data plane. The ClusterRole that
lets proxies read EndpointSlices in other namespaces cannot have a namespaced owner: when the
installer provides one (``Settings.proxy_cluster_role``, the Helm chart does, and removes it on
uninstall) the operator builds nothing cluster-scoped; otherwise it builds its own, labelled
(``cluster_labels``) so that ``kubectl delete clusterroles,clusterrolebindings -l ...`` finds it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from propylon_operator import settings as settings_

PUBLIC_PORT = 8080
INTERNAL_PORT = 8081
ADMIN_PORT = 9090
MANAGED_BY = {"app.kubernetes.io/managed-by": "propylon"}
GATEWAY_NAMESPACE_LABEL = "propylon.dev/gateway-namespace"
# On the proxies' pod template: a digest of the Redis URL they read from the Secret at start, so
# a new URL rolls them (a secretKeyRef alone never changes the template, and pods keep the old value).
REDIS_CHECKSUM_ANNOTATION = "propylon.dev/redis-url-checksum"
# The field manager that holds the proxies' replica count while an HPA runs them (``replicas_handover``).
REPLICAS_MANAGER = "propylon-operator-replicas"

Manifest = dict[str, Any]


def labels(settings: settings_.Settings) -> dict[str, str]:
    return {**selector(settings), **MANAGED_BY, "app.kubernetes.io/component": "proxy"}


def cluster_labels(settings: settings_.Settings) -> dict[str, str]:
    """Labels of the cluster-scoped objects: the gateway namespace too, as their only owner."""
    return {**labels(settings), GATEWAY_NAMESPACE_LABEL: settings.gateway_namespace}


def selector(settings: settings_.Settings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "propylon-proxy", "app.kubernetes.io/instance": settings.gateway_name}


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def _meta(settings: settings_.Settings, name: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": settings.gateway_namespace, "labels": labels(settings)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return meta


def proxy_name(settings: settings_.Settings) -> str:
    return f"{settings.gateway_name}-proxy"


def cluster_role_name(settings: settings_.Settings) -> str:
    return f"propylon-proxy-{settings.gateway_namespace}-{settings.gateway_name}"


def service_account(settings: settings_.Settings, owner: dict[str, Any] | None) -> Manifest:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(settings, proxy_name(settings), owner)}


def role(settings: settings_.Settings, owner: dict[str, Any] | None) -> Manifest:
    """What a proxy does in its own namespace: read its snapshot Secret, keep its Lease (and
    delete it when it shuts down, so it stops counting at once and leaves nothing behind)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(settings, proxy_name(settings), owner),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [settings.snapshot_secret],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            },
        ],
    }


def role_binding(settings: settings_.Settings, owner: dict[str, Any] | None) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(settings, proxy_name(settings), owner),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": proxy_name(settings)},
        "subjects": [{"kind": "ServiceAccount", "name": proxy_name(settings), "namespace": settings.gateway_namespace}],
    }


def cluster_role(settings: settings_.Settings) -> Manifest:
    """EndpointSlices of backends live in any namespace, so this one grant is cluster-wide."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": cluster_role_name(settings), "labels": cluster_labels(settings)},
        "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}],
    }


def cluster_role_binding(settings: settings_.Settings) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": cluster_role_name(settings), "labels": cluster_labels(settings)},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role_name(settings),
        },
        "subjects": [{"kind": "ServiceAccount", "name": proxy_name(settings), "namespace": settings.gateway_namespace}],
    }


def proxy_args(settings: settings_.Settings) -> list[str]:
    args = ["proxy", "--config-secret", f"{settings.gateway_namespace}/{settings.snapshot_secret}"]
    args += ["--drain-seconds", str(settings.drain_seconds)]
    if settings.trusted_proxies:
        args += ["--trusted-proxies", settings.trusted_proxies]
    if settings.proxy_loop != "auto":
        args += ["--loop", settings.proxy_loop]
    return args


def termination_grace_seconds(settings: settings_.Settings) -> int:
    return settings.pre_stop_seconds + settings.drain_seconds + 5


def redis_checksum(secret: dict[str, Any] | None) -> str | None:
    """A digest of the Redis Secret's ``url`` (None without one): changes exactly when the URL does."""
    if not secret:
        return None
    data, string_data = secret.get("data") or {}, secret.get("stringData") or {}
    value = string_data.get("url") if "url" in string_data else data.get("url")
    if not isinstance(value, str) or not value:
        return None
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _number(value: float) -> str:
    """A number for a proxy's environment, every digit kept: "10", "12.5", "1234567.5". (``:g``
    keeps six significant digits, so 1234567.5 became 1.23457e+06 and reached the proxy changed.)"""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def deployment(
    settings: settings_.Settings, owner: dict[str, Any] | None, *, redis_checksum: str | None = None
) -> Manifest:
    probe: dict[str, Any] = {"httpGet": {"port": "admin"}, "periodSeconds": 5, "timeoutSeconds": 2}
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},  # the Lease's admin URL
    ]
    container = {
        "name": "proxy",
        "image": settings.proxy_image,
        "command": ["propylon"],
        "args": proxy_args(settings),
        "ports": [
            {"name": "public", "containerPort": PUBLIC_PORT, "protocol": "TCP"},
            {"name": "internal", "containerPort": INTERNAL_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "readinessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/readyz"}},
        "livenessProbe": {
            **probe,
            "httpGet": {**probe["httpGet"], "path": "/healthz"},
            "initialDelaySeconds": 5,
            "failureThreshold": 6,
        },
        # Kubernetes removes a stopping pod from its Services while it runs preStop, so the pod
        # keeps serving through that window; SIGTERM then stops accepting and drains.
        "lifecycle": {"preStop": {"sleep": {"seconds": settings.pre_stop_seconds}}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if settings.proxy_image_pull_policy:
        container["imagePullPolicy"] = settings.proxy_image_pull_policy
    if settings.admin_token_secret:
        # Without a token a proxy answers /admin/* on loopback only, and the operator reads usage there.
        env.append(
            {
                "name": "PROPYLON_ADMIN_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": settings.admin_token_secret, "key": "token"}},
            }
        )
    if settings.redis_secret:
        # The URL may hold a password: it reaches the proxy from the Secret, never in the Pod spec.
        env.extend(
            [
                {
                    "name": "PROPYLON_REDIS_URL",
                    "valueFrom": {"secretKeyRef": {"name": settings.redis_secret, "key": "url"}},
                },
                {"name": "PROPYLON_REDIS_CLUSTER", "value": "true" if settings.redis_cluster else "false"},
                {"name": "PROPYLON_REDIS_FAILURE", "value": settings.redis_failure},
            ]
        )
        if settings.redis_timeout_ms is not None:
            env.append({"name": "PROPYLON_REDIS_TIMEOUT_MS", "value": _number(settings.redis_timeout_ms)})
        if settings.ws_registry_ttl_s is not None:
            env.append({"name": "PROPYLON_WS_REGISTRY_TTL", "value": _number(settings.ws_registry_ttl_s)})
    env.extend({"name": name, "value": _number(seconds)} for name, seconds in settings.slow_clients)
    env.extend({"name": name, "value": value} for name, value in settings.proxy_env)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(settings)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": _pod_metadata(settings, redis_checksum),
            "spec": {
                "serviceAccountName": proxy_name(settings),
                "automountServiceAccountToken": True,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                # preStop, then the drain, then a margin before SIGKILL.
                "terminationGracePeriodSeconds": termination_grace_seconds(settings),
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
    }
    if settings.proxy_image_pull_secrets:
        # A private registry: the same Secrets the operator's own Pod pulls the image with.
        spec["template"]["spec"]["imagePullSecrets"] = [{"name": name} for name in settings.proxy_image_pull_secrets]
    if not settings.hpa_max:
        # With an HPA the replica count is its field; claiming it here would fight the autoscaler.
        spec["replicas"] = settings.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(settings, settings.gateway_name, owner),
        "spec": spec,
    }


def _pod_metadata(settings: settings_.Settings, redis_checksum: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels(settings)}
    if settings.redis_secret and redis_checksum:
        meta["annotations"] = {REDIS_CHECKSUM_ANNOTATION: redis_checksum}
    return meta


def replicas_handover(settings: settings_.Settings, replicas: int) -> Manifest:
    """Only the proxy Deployment's replica count, applied as ``REPLICAS_MANAGER`` while an HPA runs.

    The main manifest leaves ``replicas`` out then (owning it would fight the autoscaler), and
    server-side apply resets a field its only manager stops applying: to 1, so enabling the HPA
    would scale the proxies down to one. Held by a second manager, the count survives.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": settings.gateway_name, "namespace": settings.gateway_namespace},
        "spec": {"replicas": replicas},
    }


def hpa_min_replicas(settings: settings_.Settings) -> int:
    return max(1, settings.replicas)


def services(settings: settings_.Settings, owner: dict[str, Any] | None) -> list[Manifest]:
    """The public Service and the in-cluster one; the admin port stays on the pods only."""
    out = []
    for name, port_name in ((settings.gateway_name, "public"), (f"{settings.gateway_name}-internal", "internal")):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(settings, name, owner),
                "spec": {
                    "type": "ClusterIP",
                    "selector": selector(settings),
                    "ports": [{"name": "http", "port": 80, "targetPort": port_name, "protocol": "TCP"}],
                },
            }
        )
    return out


def pod_disruption_budget(settings: settings_.Settings, owner: dict[str, Any] | None) -> Manifest:
    spec: dict[str, Any] = {"selector": {"matchLabels": selector(settings)}}
    if settings.replicas > 1 or settings.hpa_max > 1:
        spec["minAvailable"] = 1
    else:
        # One replica: minAvailable 1 would block every node drain forever.
        spec["maxUnavailable"] = 1
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(settings, settings.gateway_name, owner),
        "spec": spec,
    }


def autoscaler(settings: settings_.Settings, owner: dict[str, Any] | None) -> Manifest | None:
    if not settings.hpa_max:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(settings, settings.gateway_name, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": settings.gateway_name},
            "minReplicas": hpa_min_replicas(settings),
            "maxReplicas": max(settings.hpa_max, settings.replicas, 1),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def build(
    settings: settings_.Settings, owner: dict[str, Any] | None, *, redis_checksum: str | None = None
) -> list[Manifest]:
    """Every object of the data plane, in the order they should be applied.

    Nothing cluster-scoped when the installer binds ``settings.proxy_cluster_role`` itself: the
    operator then needs no right to create ClusterRoles or to grant what it holds.
    """
    cluster_scoped = [] if settings.proxy_cluster_role else [cluster_role(settings), cluster_role_binding(settings)]
    out = [
        service_account(settings, owner),
        role(settings, owner),
        role_binding(settings, owner),
        *cluster_scoped,
        *services(settings, owner),
        deployment(settings, owner, redis_checksum=redis_checksum),
        pod_disruption_budget(settings, owner),
    ]
    hpa = autoscaler(settings, owner)
    if hpa is not None:
        out.append(hpa)
    return out


PLURALS = {
    "ServiceAccount": ("serviceaccounts", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Service": ("services", True),
    "Deployment": ("deployments", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "Secret": ("secrets", True),
    "ValidatingWebhookConfiguration": ("validatingwebhookconfigurations", False),
}
"""Kind -> (plural, namespaced) for the kinds this module builds."""
