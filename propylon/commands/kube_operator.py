"""`propylon operator`: run the Kubernetes operator (kopf), in a cluster or with a kubeconfig.

This module only turns flags into ``propylon_operator.settings.Settings``; everything else
lives in the operator package.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING

from propylon.commands import shared_flags

if TYPE_CHECKING:
    from propylon_operator import settings as settings_


PULL_POLICIES = ("Always", "IfNotPresent", "Never")  # a container's imagePullPolicy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch Propylon objects in this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--gateway-name", default="propylon", help="name of the gateway's Deployment and Services")
    parser.add_argument(
        "--gateway-namespace",
        default=os.environ.get("POD_NAMESPACE") or "propylon-system",
        help="namespace of the snapshot Secret and the proxy Deployment (default: $POD_NAMESPACE or propylon-system)",
    )
    parser.add_argument("--proxy-image", default=os.environ.get("PROPYLON_PROXY_IMAGE") or "propylon/propylon:latest")
    parser.add_argument(
        "--proxy-image-pull-policy",
        choices=PULL_POLICIES,
        default=None,
        help="imagePullPolicy of the proxy pods (the chart passes image.pullPolicy); default: Kubernetes' "
        "(Always for :latest, else IfNotPresent)",
    )
    parser.add_argument(
        "--proxy-image-pull-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a Secret in the gateway namespace the proxy pods pull their image with (repeatable; the chart "
        "passes imagePullSecrets): without it a private registry refuses them",
    )
    parser.add_argument("--replicas", type=int, default=2, help="proxy replicas (the HPA minimum with --hpa-max)")
    parser.add_argument("--hpa-max", type=int, default=0, help="add a CPU HorizontalPodAutoscaler up to N replicas")
    parser.add_argument(
        "--allow-cross-namespace",
        action="store_true",
        help="let any Api route to Services in any namespace, without the allow-from label",
    )
    shared_flags.add_trusted_proxies(parser)
    shared_flags.add_gateway_throttle(parser)
    shared_flags.add_slow_clients(parser, environment=True)  # passed on to each proxy
    parser.add_argument(
        "--drain-seconds",
        type=int,
        default=25,
        help="how long a stopping proxy lets running requests finish (its pods get this plus 10 s of grace)",
    )
    parser.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set NAME=VALUE in every proxy's environment (repeatable), e.g. "
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.monitoring:4318 to export spans",
    )
    parser.add_argument(
        "--owner-deployment",
        default=None,
        metavar="NAME",
        help="the operator's own Deployment in the gateway namespace: owns the snapshot Secret, so deleting "
        "the operator deletes the data plane too",
    )
    parser.add_argument(
        "--proxy-cluster-role",
        default=None,
        metavar="NAME",
        help="a ClusterRole that lets the proxies list and watch EndpointSlices, already bound to the proxy "
        "ServiceAccount (<gateway>-proxy) by the installer: the operator then creates nothing cluster-scoped "
        "(the Helm chart passes this); default: the operator creates and binds its own",
    )
    parser.add_argument(
        "--proxy-loop",
        choices=shared_flags.LOOPS,
        default="auto",
        help="the proxies' event loop (their --loop): auto is uvloop when the image has it (default: auto)",
    )
    parser.add_argument("--webhook-port", type=int, default=None, help="serve a validating admission webhook")
    parser.add_argument("--webhook-host", default="127.0.0.1", help="host name the API server dials for the webhook")
    parser.add_argument("--webhook-addr", default="0.0.0.0", help="address the webhook listens on")
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="base URL the API server dials instead of https://HOST:PORT (a Service or tunnel in front)",
    )
    parser.add_argument(
        "--webhook-configuration",
        default="propylon.dev",
        metavar="NAME",
        help="name of the ValidatingWebhookConfiguration to keep up to date (one per gateway)",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        action="store_true",
        help="run without kopf peering (the default: one operator per gateway)",
    )
    peering.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="coordinate with other operator replicas through this kopf peering object (must exist)",
    )
    parser.add_argument(
        "--admin-token-secret",
        default=os.environ.get("PROPYLON_ADMIN_TOKEN_SECRET") or None,
        metavar="NAME",
        help="Secret in the gateway namespace whose 'token' the proxies guard /admin/* with; the operator "
        "reads UsagePlan usage with the same token from $PROPYLON_ADMIN_TOKEN (default: "
        "$PROPYLON_ADMIN_TOKEN_SECRET)",
    )
    shared_flags.add_redis_arguments(parser, store="secret", environment=True)
    parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )


def run(args: argparse.Namespace) -> int:
    from propylon_operator import running

    return running.run(settings_from(args))


def settings_from(args: argparse.Namespace) -> settings_.Settings:
    """The operator's Settings from its parsed flags; a value it cannot run with ends the command.

    Apart from ``run`` so that the chart's tests build the data plane from exactly what the
    chart's flags give the operator."""
    from propylon_operator import settings

    if args.replicas < 1:
        raise SystemExit("propylon operator: --replicas must be at least 1")
    if args.drain_seconds < 0:
        raise SystemExit("propylon operator: --drain-seconds must not be negative")
    proxy_env = _proxy_env(args.proxy_env)
    configured = settings.Settings(
        gateway_name=args.gateway_name,
        gateway_namespace=args.gateway_namespace,
        namespaces=() if args.all_namespaces else tuple(dict.fromkeys(args.namespace)),
        proxy_image=args.proxy_image,
        proxy_image_pull_policy=args.proxy_image_pull_policy,
        proxy_image_pull_secrets=tuple(dict.fromkeys(args.proxy_image_pull_secret)),
        replicas=args.replicas,
        hpa_max=max(0, args.hpa_max),
        allow_cross_namespace=args.allow_cross_namespace,
        gateway_throttle=shared_flags.gateway_throttle(args),
        trusted_proxies=args.trusted_proxies,
        drain_seconds=args.drain_seconds,
        proxy_loop=args.proxy_loop,
        proxy_env=proxy_env,
        owner_deployment=args.owner_deployment,
        proxy_cluster_role=args.proxy_cluster_role or None,
        kubeconfig=args.kubeconfig,
        webhook_port=args.webhook_port,
        webhook_host=args.webhook_host,
        webhook_addr=args.webhook_addr,
        webhook_url=args.webhook_url,
        webhook_configuration=args.webhook_configuration,
        peering=None if args.standalone else args.peering,
        liveness_endpoint=args.liveness,
        redis_secret=args.redis_secret,
        redis_cluster=args.redis_cluster,
        redis_failure=args.redis_failure,
        redis_timeout_ms=args.redis_timeout_ms,
        ws_registry_ttl_s=args.ws_registry_ttl,
        slow_clients=shared_flags.slow_client_variables(args),
        admin_token_secret=args.admin_token_secret,
        admin_token=os.environ.get("PROPYLON_ADMIN_TOKEN") or None,
    )
    return configured


# Set by the operator itself on every proxy; --proxy-env must not change what they mean.
_OWN_ENV = ("POD_", "PROPYLON_")


def _proxy_env(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """``NAME=VALUE`` flags as pairs; a malformed or operator-owned name ends the command."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SystemExit(f"propylon operator: --proxy-env {pair!r}: expected NAME=VALUE")
        if name.startswith(_OWN_ENV):
            raise SystemExit(f"propylon operator: --proxy-env {name}: set by the operator itself")
        out[name] = value
    return tuple(out.items())
