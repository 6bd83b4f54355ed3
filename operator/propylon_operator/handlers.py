"""kopf handlers: the watch feeds the inventory, admission reviews go to ``admission``.

Every watch handler is ``on.event`` and does the same thing: store the object as it now is,
or forget it. None of them reacts to what changed (kopf's maintainer calls diff-driven logic a
trap); the reconcile looks at the whole inventory. Objects that stop matching (a Secret whose
usage-plan label is removed) are forgotten, which label-filtered handlers would never see.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from propylon_operator import admission, kube, leases, reconciling, webhooks
from propylon_operator import inventory as inventory_
from propylon_operator import settings as settings_

logger = logging.getLogger("propylon.operator")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
GROUP = "propylon.dev"
VERSION = "v1alpha1"


def _body(body: Any, kind: str, api_version: str) -> dict[str, Any]:
    data = dict(body)
    data.setdefault("kind", kind)
    data.setdefault("apiVersion", api_version)
    return data


def build_registry(
    settings: settings_.Settings,
    inventory: inventory_.Inventory,
    reconciler: reconciling.Reconciler,
    configuration: Any,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        """kopf and our own client share one set of credentials (``kube.load_configuration``).

        kopf logs in again on a 401; ``kube.authorization`` then brings the token as the client
        has it now (an in-cluster projected token re-read from its file).
        """
        header = kube.authorization(configuration) or ""
        scheme, _space, value = header.partition(" ")
        if not value:  # a bare token without a scheme (RFC 7235, appendix C): kopf says Bearer
            scheme, value = "", scheme
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert or None,
            insecure=not configuration.verify_ssl,
            certificate_path=configuration.cert_file or None,
            private_key_path=configuration.key_file or None,
            scheme=scheme or None,
            token=value or None,
            default_namespace=settings.gateway_namespace,
        )

    def track(kind: str, api_version: str, keep: Any) -> Any:
        def handler(event: Any, body: Any, **_: Any) -> None:
            data = _body(body, kind, api_version)
            key = inventory_.Key.of(data)
            if event.get("type") == "DELETED" or not keep(data):
                inventory.discard(key)
            else:
                inventory.put(data, only_if_newer=True)

        return handler

    for kind, plural in reconciling.PLURALS.items():
        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"track-{plural}")(
            track(kind, f"{GROUP}/{VERSION}", lambda data: settings.watches(inventory_.Key.of(data).namespace))
        )

    def secret_handler(event: Any, body: Any, **_: Any) -> None:
        data = _body(body, "Secret", "v1")
        key = inventory_.Key.of(data)
        if key.namespace == settings.gateway_namespace and key.name == settings.snapshot_secret:
            reconciler.observe_snapshot_secret(None if event.get("type") == "DELETED" else data)
            return
        if reconciler.is_redis_secret(key):
            reconciler.observe_redis_secret(None if event.get("type") == "DELETED" else data)
            return
        if event.get("type") == "DELETED" or not reconciler.wants_secret(data):
            inventory.discard(key)
        else:
            inventory.put(data, only_if_newer=True)

    kopf.on.event("", "v1", "secrets", registry=registry, id="track-secrets")(secret_handler)
    kopf.on.event("", "v1", "services", registry=registry, id="track-services")(
        track("Service", "v1", lambda data: settings.watches(inventory_.Key.of(data).namespace))
    )

    def slice_of_a_service(data: dict[str, Any]) -> bool:
        # Slices not tied to a Service (no service-name label) can never back a route.
        labels = (data.get("metadata") or {}).get("labels") or {}
        return SERVICE_NAME_LABEL in labels and settings.watches(inventory_.Key.of(data).namespace)

    kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry, id="track-endpointslices")(
        track("EndpointSlice", "discovery.k8s.io/v1", slice_of_a_service)
    )

    def ours(data: dict[str, Any]) -> bool:
        meta = data.get("metadata") or {}
        return (
            meta.get("namespace") == settings.gateway_namespace
            and (meta.get("labels") or {}).get(leases.SECRET_LABEL) == settings.snapshot_secret
        )

    kopf.on.event("coordination.k8s.io", "v1", "leases", registry=registry, id="track-leases")(
        track("Lease", "coordination.k8s.io/v1", ours)
    )

    if settings.webhook_port is not None:
        for kind, plural in reconciling.PLURALS.items():
            kopf.on.validate(
                GROUP,
                VERSION,
                plural,
                registry=registry,
                id=webhooks.handler_id(plural),
                operations=["CREATE", "UPDATE"],
                # With the operator down, applies still go through; status then reports problems.
                ignore_failures=True,
            )(_validator(kind, settings))
    return registry


def _validator(kind: str, settings: settings_.Settings) -> Any:
    def validate(body: Any, **_: Any) -> None:
        data = _body(body, kind, f"{GROUP}/{VERSION}")
        if not settings.watches(inventory_.Key.of(data).namespace):
            return
        message = admission.refusal(data)
        if message:
            raise kopf.AdmissionError(message, code=422)

    return validate


def kopf_settings(settings: settings_.Settings, certfile: str | None, pkeyfile: str | None) -> kopf.OperatorSettings:
    configured = kopf.OperatorSettings()
    configured.posting.enabled = False  # we post our own Events; kopf's would narrate every handler call
    configured.watching.server_timeout = 300
    configured.networking.request_timeout = 60
    if settings.webhook_port is not None:
        # kopf serves the reviews; ``webhooks.configuration`` (applied by the reconcile) routes them here.
        configured.admission.server = kopf.WebhookServer(
            addr=settings.webhook_addr,
            port=settings.webhook_port,
            host=settings.webhook_host,
            certfile=certfile,
            pkeyfile=pkeyfile,
        )
        configured.admission.managed = None
    return configured
