"""``propylon_proxy.kube.sources.SecretSource`` against the real API server.

What the proxy would be handed is recorded instead of served, so these tests pin down the
watching itself: first config, Secret updates, broken snapshots, live endpoints, the Lease.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid

import pytest

from propylon_config import codec, model
from propylon_proxy.kube import sources

WAIT = 10.0


def _config(namespace: str, marker: str) -> model.GatewayConfig:
    target = model.ServiceTarget(namespace=namespace, name="echo", port=80)
    route = model.Route(
        id=f"{namespace}/echo/prod/GET /{marker}",
        route_key=f"GET /{marker}",
        method="GET",
        path=f"/{marker}",
        segments=(model.Segment(kind=model.SegmentKind.LITERAL, value=marker),),
        integration=model.Integration(type=model.IntegrationType.HTTP_PROXY, service=target),
    )
    stage = model.Stage(
        id=f"{namespace}/prod",
        namespace=namespace,
        name="prod",
        api=f"{namespace}/echo",
        base_path="/prod",
        routes=(route,),
    )
    api = model.Api(id=f"{namespace}/echo", namespace=namespace, name="echo")
    return codec.with_version(model.GatewayConfig(version="", apis=(api,), stages=(stage,)))


def _secret_yaml(namespace: str, data: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gw-snapshot", "namespace": namespace},
            "data": data,
        }
    )


def _snapshot_data(config: model.GatewayConfig) -> dict[str, str]:
    return {"snapshot.json": base64.b64encode(codec.dumps(config).encode()).decode()}


def _service_and_slice(namespace: str, addresses: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "echo", "namespace": namespace},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
                },
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": "echo-1",
                        "namespace": namespace,
                        "labels": {"kubernetes.io/service-name": "echo"},
                    },
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
                },
            ],
        }
    )


async def _until(predicate, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT} s: {what}")


@pytest.fixture
def namespace(kube_apiserver) -> str:
    name = f"src-{uuid.uuid4().hex[:8]}"
    kube_apiserver.kubectl("create", "namespace", name)
    return name


async def test_secret_source_follows_snapshot_endpoints_and_reports_a_lease(
    kube_apiserver, namespace, api_client, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="propylon.kube")
    first = _config(namespace, "one")
    kube_apiserver.apply(_service_and_slice(namespace, ["10.203.255.2"]))
    applied: list[model.GatewayConfig] = []
    source = sources.SecretSource(
        api_client=api_client,
        namespace=namespace,
        name="gw-snapshot",
        apply=applied.append,
        replica="proxy-0",
        lease_renew_seconds=0.5,
    )
    source.start()
    try:
        # Started before the operator wrote the Secret: waits, then takes it when it appears.
        assert not await source.wait_first_config(1.0)
        assert "not found; waiting" in caplog.text
        kube_apiserver.apply(_secret_yaml(namespace, _snapshot_data(first)))
        assert await source.wait_first_config(WAIT)
        await _until(lambda: applied and applied[-1].endpoints, "live endpoints")
        assert applied[-1].version == first.version
        assert [(a.address, a.port) for a in applied[-1].endpoints[0].addresses] == [("10.203.255.2", 8080)]

        # The Lease reports what is applied.
        def lease_version() -> str | None:
            result = kube_apiserver.kubectl(
                "get", "lease", "-n", namespace, "gw-snapshot-proxy-0", "-o", "json", check=False
            )
            if result.returncode:
                return None
            lease = json.loads(result.stdout)
            assert lease["metadata"]["labels"]["propylon.dev/snapshot-secret"] == "gw-snapshot"
            assert lease["spec"]["holderIdentity"] == "proxy-0"
            assert lease["spec"]["leaseDurationSeconds"] == 30
            return lease["metadata"]["annotations"]["propylon.dev/config-version"]

        await _until(lambda: lease_version() == first.version, "lease shows the first version")

        # Endpoints move with the EndpointSlice.
        kube_apiserver.apply(_service_and_slice(namespace, ["10.203.255.6", "10.203.255.10"]))
        await _until(
            lambda: [a.address for a in applied[-1].endpoints[0].addresses] == ["10.203.255.10", "10.203.255.6"],
            "new endpoints",
        )

        # A broken snapshot is logged and replaces nothing.
        count = len(applied)
        kube_apiserver.apply(_secret_yaml(namespace, {"snapshot.json": base64.b64encode(b"{broken").decode()}))
        await _until(lambda: "unparsable snapshot" in caplog.text, "the broken snapshot is logged")
        assert len(applied) == count and source.served.version == first.version

        # A good one is applied, with the live endpoints.
        second = _config(namespace, "two")
        kube_apiserver.apply(_secret_yaml(namespace, _snapshot_data(second)))
        await _until(lambda: applied[-1].version == second.version, "the second snapshot")
        assert len(applied[-1].endpoints[0].addresses) == 2
        await _until(lambda: lease_version() == second.version, "lease shows the second version")
    finally:
        source.stop()
