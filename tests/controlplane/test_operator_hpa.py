"""Turning the HPA on keeps the proxies' replica count (item 2), in a real API server.

Server-side apply resets a field its only manager stops applying; the proxy Deployment leaves
``replicas`` to the HPA, so without a second manager holding it the count would drop to 1.
"""

from __future__ import annotations

import operator_env as op
import pytest

pytestmark = pytest.mark.controlplane


async def test_enabling_the_hpa_keeps_the_proxies_replica_count(gateway: op.Env) -> None:
    from propylon_operator import inventory, kube, reconciling, settings

    env = gateway
    client = kube.Client(kube.load_configuration(str(env.plane.kubeconfig)))
    base = {"gateway_name": op.GATEWAY, "gateway_namespace": env.gw_ns, "namespaces": (env.app_ns,), "replicas": 3}

    async def reconcile(**extra: int) -> dict:
        reconciler = reconciling.Reconciler(settings.Settings(**base, **extra), client, inventory.Inventory())
        await reconciler.prime()
        await reconciler.reconcile()
        return env.get("deployment", "-n", env.gw_ns, op.GATEWAY) or {}

    try:
        assert (await reconcile())["spec"]["replicas"] == 3
        assert (await reconcile(hpa_max=6))["spec"]["replicas"] == 3  # not 1
        hpa = env.get("hpa", "-n", env.gw_ns, op.GATEWAY) or {}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
        assert (await reconcile(hpa_max=6))["spec"]["replicas"] == 3  # a resync changes nothing
        assert (await reconcile())["spec"]["replicas"] == 3  # and off again: the operator's own count
    finally:
        await client.close()


async def test_a_new_gateway_with_an_hpa_starts_at_the_minimum(gateway: op.Env) -> None:
    from propylon_operator import inventory, kube, reconciling, settings

    env = gateway
    client = kube.Client(kube.load_configuration(str(env.plane.kubeconfig)))
    configured = settings.Settings(
        gateway_name=op.GATEWAY, gateway_namespace=env.gw_ns, namespaces=(env.app_ns,), replicas=4, hpa_max=8
    )
    try:
        reconciler = reconciling.Reconciler(configured, client, inventory.Inventory())
        await reconciler.prime()
        await reconciler.reconcile()
        assert (env.get("deployment", "-n", env.gw_ns, op.GATEWAY) or {})["spec"]["replicas"] == 4
    finally:
        await client.close()
