"""Live endpoints: Services + EndpointSlices (as the API server returns them) -> snapshot endpoints.

Pure functions, no I/O. A route names a Service *port* (``ServiceTarget.port``), while an
EndpointSlice lists *target* ports, matched to the Service port by port name as kube-proxy does.
So the Service is needed to pick the right slice port; without it (not seen yet, or not
readable) a slice port with the same number, or a slice's only port, is used.
Only ready endpoints are kept (a missing ``ready`` condition means ready, as the API defines).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from propylon_config import model

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Object = Mapping[str, Any]


def service_targets(config: model.GatewayConfig) -> set[model.ServiceTarget]:
    """Every ServiceTarget anywhere in the config (routes, canary routes, and whatever later holds one)."""
    found: set[model.ServiceTarget] = set()
    for value in _walk(config):
        if isinstance(value, model.ServiceTarget):
            found.add(value)
    return found


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _walk(getattr(value, field.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _walk(item)


def _port_name(services: Mapping[str, Object], target: model.ServiceTarget) -> tuple[bool, str]:
    """(known, name) of the Service port ``target.port``; known=False when the Service is unseen."""
    service = services.get(target.name)
    if service is None:
        return False, ""
    for port in (service.get("spec") or {}).get("ports") or ():
        if port.get("port") == target.port:
            return True, port.get("name") or ""
    return True, ""


def _slice_port(ports: list[Object], target: model.ServiceTarget, known: bool, name: str) -> int | None:
    if known:
        for port in ports:
            if (port.get("name") or "") == name and port.get("port") is not None:
                return int(port["port"])
        return None
    for port in ports:
        if port.get("port") == target.port:
            return target.port
    if len(ports) == 1 and ports[0].get("port") is not None:
        return int(ports[0]["port"])
    return None


def resolve(
    target: model.ServiceTarget, services: Mapping[str, Object], slices: Iterable[Object]
) -> model.ServiceEndpoints:
    """The ready addresses of one Service port, from the objects of the Service's namespace."""
    known, name = _port_name(services, target)
    addresses: set[tuple[str, int]] = set()
    for slice_ in slices:
        labels = (slice_.get("metadata") or {}).get("labels") or {}
        if labels.get(SERVICE_NAME_LABEL) != target.name:
            continue
        if slice_.get("addressType") not in ("IPv4", "IPv6"):
            continue  # FQDN slices name hosts the proxy would have to resolve; not supported
        port = _slice_port(list(slice_.get("ports") or ()), target, known, name)
        if port is None:
            continue
        for endpoint in slice_.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or ():
                addresses.add((address, port))
    return model.ServiceEndpoints(
        key=target.key,
        addresses=tuple(model.EndpointAddress(address=a, port=p) for a, p in sorted(addresses)),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class NamespaceView:
    """What the watchers have seen of one namespace; ``synced`` once both lists have arrived."""

    services: Mapping[str, Object]
    slices: Mapping[str, Object]
    synced: bool


def with_live_endpoints(config: model.GatewayConfig, views: Mapping[str, NamespaceView]) -> model.GatewayConfig:
    """``config`` with the endpoints of every synced namespace replaced by what the cluster says now.

    Targets in a namespace not yet synced keep whatever the snapshot carried, so a proxy that
    starts while the API server is slow still serves the operator's last view. The version is
    left alone: it names the snapshot the operator published, which is what status reports.
    """
    by_key = {entry.key: entry for entry in config.endpoints}
    for target in service_targets(config):
        view = views.get(target.namespace)
        if view is not None and view.synced:
            by_key[target.key] = resolve(target, view.services, view.slices.values())
    endpoints = tuple(by_key[key] for key in sorted(by_key))
    if endpoints == config.endpoints:
        return config
    return dataclasses.replace(config, endpoints=endpoints)
