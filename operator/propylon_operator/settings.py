"""What one operator process is told to do: which namespaces it watches and which gateway it runs.

Built once from the command line (``propylon operator``) and never changed afterwards; every
other module receives it rather than reading flags or environment variables itself.
"""

from __future__ import annotations

import dataclasses

from propylon_config import model


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    gateway_name: str = "propylon"
    gateway_namespace: str = "propylon-system"
    namespaces: tuple[str, ...] = ()  # empty = all namespaces
    proxy_image: str = "propylon/propylon:latest"
    # How the proxy pods pull that image: the chart's image.pullPolicy and imagePullSecrets, which
    # reach the operator's own Pod from the chart but the proxies' only through the operator.
    proxy_image_pull_policy: str | None = None  # None: Kubernetes' default
    proxy_image_pull_secrets: tuple[str, ...] = ()  # Secret names in the gateway namespace
    replicas: int = 2
    hpa_max: int = 0  # 0 = no HorizontalPodAutoscaler
    allow_cross_namespace: bool = False
    # The gateway-wide limit compiled into the snapshot (--gateway-rate/--gateway-burst); each
    # proxy process enforces it on its own.
    gateway_throttle: model.Throttle = dataclasses.field(default_factory=lambda: model.Settings().gateway_throttle)
    # Passed to every proxy: peers (an Ingress controller, a cloud load balancer) whose
    # X-Forwarded-For/-Proto the proxies believe, so sourceIp and logs name the real client.
    trusted_proxies: str = ""
    drain_seconds: int = 25  # how long a stopping proxy lets running requests finish
    # The proxies' event loop (``propylon proxy --loop``): auto (uvloop when the image has it),
    # asyncio or uvloop; passed to them only when it is not auto.
    proxy_loop: str = "auto"
    # Extra environment for every proxy (name, value): OpenTelemetry's OTEL_* settings for span export.
    proxy_env: tuple[tuple[str, str], ...] = ()
    pre_stop_seconds: int = 5  # how long a pod keeps serving after Kubernetes starts removing it
    owner_deployment: str | None = None  # the operator's own Deployment in the gateway namespace
    # A ClusterRole, bound to the proxy ServiceAccount by whoever installed the operator (the Helm
    # chart), that lets proxies read EndpointSlices everywhere. None: the operator makes its own.
    proxy_cluster_role: str | None = None
    kubeconfig: str | None = None
    webhook_port: int | None = None  # None = no admission webhook
    webhook_host: str = "127.0.0.1"
    webhook_addr: str = "0.0.0.0"
    webhook_url: str | None = None  # a URL in front of the webhook, when not reached by https://host:port
    webhook_configuration: str = "propylon.dev"  # name of the ValidatingWebhookConfiguration
    peering: str | None = None  # None = standalone (no kopf peering)
    liveness_endpoint: str | None = None
    debounce_quiet_s: float = 0.4
    debounce_max_s: float = 2.0
    resync_s: float = 10.0  # status resync (Lease freshness), and the floor for re-applying workloads
    workload_resync_s: float = 300.0
    lease_stale_s: float = 30.0
    lease_expiry_factor: float = 5.0  # a Lease unrenewed for this many durations is deleted
    # A Secret in the gateway namespace whose key "url" is the Redis URL proxies share limits
    # through (the chart makes it from redis.url); None: each proxy limits in memory.
    redis_secret: str | None = None
    redis_cluster: bool = False
    redis_failure: str = "open"
    redis_timeout_ms: float | None = None  # each Redis call's budget in the proxies (None: their 50 ms)
    # How long a dead proxy's WebSocket connections stay in the shared registry (None: the proxies' 30 s).
    ws_registry_ttl_s: float | None = None
    # The proxies' slow-client limits in seconds, as variable name -> value (PROPYLON_HEADER_TIMEOUT,
    # ...): only those given, so a proxy keeps its own default for the rest (DESIGN.md section 8).
    slow_clients: tuple[tuple[str, float], ...] = ()
    # A Secret in the gateway namespace whose key "token" is the proxies' admin bearer token
    # (passed to them as PROPYLON_ADMIN_TOKEN); the operator holds the same token to read usage.
    admin_token_secret: str | None = None
    # Bearer token for the proxies' /admin/usage (PROPYLON_ADMIN_TOKEN); never logged.
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    usage_interval_s: float = 30.0  # how often UsagePlan usage is read; never below 30 s

    @property
    def snapshot_secret(self) -> str:
        return f"{self.gateway_name}-snapshot"

    @property
    def watches_all_namespaces(self) -> bool:
        return not self.namespaces

    def watches(self, namespace: str) -> bool:
        """Whether Propylon objects in ``namespace`` belong to this gateway."""
        return self.watches_all_namespaces or namespace in self.namespaces

    def stage_url(self, base_path: str, *, private: bool = False) -> str:
        """Where a Stage answers in the cluster: PRIVATE stages only behind the internal Service."""
        service = f"{self.gateway_name}-internal" if private else self.gateway_name
        return f"http://{service}.{self.gateway_namespace}.svc{base_path or '/'}"
