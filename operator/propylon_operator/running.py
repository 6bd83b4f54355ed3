"""Running the operator: kopf's watch loop and the reconcile task, side by side in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import sys
import tempfile

import kopf
import kubernetes

from propylon_operator import certificates, handlers, kube, reconciling, usage_polling, webhooks
from propylon_operator import inventory as inventory_
from propylon_operator import settings as settings_

logger = logging.getLogger("propylon.operator")


async def operate(
    settings: settings_.Settings,
    *,
    configuration: kubernetes.client.Configuration,
    stop_flag: asyncio.Event | None = None,
) -> None:
    client = kube.Client(configuration)
    inventory = inventory_.Inventory()
    with tempfile.TemporaryDirectory(prefix="propylon-webhook-") as cert_dir:
        certfile = pkeyfile = None
        extra: list[dict[str, object]] = []
        if settings.webhook_port is not None:
            hostnames = [settings.webhook_host, settings.webhook_addr, "localhost", "127.0.0.1"]
            certfile, pkeyfile = certificates.write_self_signed(pathlib.Path(cert_dir), hostnames)
            extra.append(webhooks.configuration(settings, pathlib.Path(certfile).read_bytes()))
        reconciler = reconciling.Reconciler(settings, client, inventory, cluster_objects=extra)
        registry = handlers.build_registry(settings, inventory, reconciler, configuration)
        configured = handlers.kopf_settings(settings, certfile, pkeyfile)
        if settings.watches_all_namespaces:
            scope: dict[str, object] = {"clusterwide": True}
        else:
            # The gateway namespace is watched too, for the proxies' Leases and the snapshot Secret;
            # Propylon objects there are ignored unless it is also one of the namespaces given.
            scope = {"namespaces": sorted({*settings.namespaces, settings.gateway_namespace})}
        task = asyncio.create_task(reconciler.run(), name="propylon-reconcile")
        poller = usage_polling.UsagePoller(
            settings,
            book=reconciler.usage,
            lease_bodies=lambda: inventory.of_kind("Lease"),
            snapshot=reconciler.served_snapshot,
            changed=reconciler.wakeup.set,
            clock=reconciling.utcnow,
            interval=settings.usage_interval_s,
        )
        usage_task = asyncio.create_task(poller.run(), name="propylon-usage")
        try:
            await kopf.operator(
                registry=registry,
                settings=configured,
                standalone=settings.peering is None,
                peering_name=settings.peering,
                liveness_endpoint=settings.liveness_endpoint,
                stop_flag=stop_flag,
                **scope,  # type: ignore[arg-type]
            )
        finally:
            for running_task in (usage_task, task):
                running_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running_task
            await client.close()


def run(settings: settings_.Settings) -> int:
    try:
        configuration = kube.load_configuration(settings.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as exc:
        print(f"propylon operator: cannot load cluster credentials: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf narrates every watch event at INFO ("Handler ... succeeded"); the operator logs what matters.
    for chatty in ("kopf.objects", "aiohttp.access"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    asyncio.run(operate(settings, configuration=configuration))
    return 0
