"""Live endpoints: Services + EndpointSlices (as the API server returns them) -> snapshot endpoints.

Pure functions, no I/O. A route names a Service *port* (``ServiceTarget.port``), while an
EndpointSlice lists *target* ports, matched to the Service port by port name as kube-proxy does.
So the Service is needed to pick the right slice port; without it (the proxy's RBAC may not
allow reading Services) the port the snapshot's own endpoints use is taken, else a slice port
with the Service port's number, else a slice's only port.
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


def _service_port(services: Mapping[str, Object], target: model.ServiceTarget) -> Object | None:
    service = services.get(target.name)
    for port in ((service or {}).get("spec") or {}).get("ports") or ():
        if port.get("port") == target.port:
            found: Object = port
            return found
    return None


def _slice_port(
    ports: list[Object], target: model.ServiceTarget, service_port: Object | None, hints: frozenset[int]
) -> int | None:
    numbers = [int(p["port"]) for p in ports if isinstance(p.get("port"), int)]
    if service_port is not None:
        name = service_port.get("name") or ""
        for port in ports:
            if (port.get("name") or "") == name and isinstance(port.get("port"), int):
                return int(port["port"])
        # Slices without port names: a numeric targetPort (or the port itself) says which.
        wanted = service_port.get("targetPort", service_port.get("port"))
        return wanted if isinstance(wanted, int) and wanted in numbers else None
    for number in sorted(hints):  # the port the operator resolved when it compiled the snapshot
        if number in numbers:
            return number
    if target.port in numbers:
        return target.port
    return numbers[0] if len(numbers) == 1 else None


def resolve(
    target: model.ServiceTarget,
    services: Mapping[str, Object] | None,
    slices: Iterable[Object],
    hints: frozenset[int] = frozenset(),
) -> model.ServiceEndpoints:
    """The ready addresses of one Service port, from the objects of the Service's namespace.

    ``services`` is None when the proxy may not read Services; ``hints`` are the ports the
    snapshot's own endpoints use for this target, the operator having seen the Service.
    """
    service_port = _service_port(services, target) if services is not None else None
    addresses: set[tuple[str, int]] = set()
    for slice_ in slices:
        labels = (slice_.get("metadata") or {}).get("labels") or {}
        if labels.get(SERVICE_NAME_LABEL) != target.name:
            continue
        if slice_.get("addressType") not in ("IPv4", "IPv6"):
            continue  # FQDN slices name hosts the proxy would have to resolve; not supported
        port = _slice_port(list(slice_.get("ports") or ()), target, service_port, hints)
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
    """What the watchers have seen of one namespace.

    ``synced`` once the EndpointSlices have been listed; ``services`` is None while they are
    unknown (not listed yet, or the proxy may not read them).
    """

    services: Mapping[str, Object] | None
    slices: Mapping[str, Object]
    synced: bool


def with_live_endpoints(
    config: model.GatewayConfig,
    views: Mapping[str, NamespaceView],
    targets: Iterable[model.ServiceTarget] | None = None,
) -> model.GatewayConfig:
    """``config`` with the endpoints of every synced namespace replaced by what the cluster says now.

    Targets in a namespace not yet synced keep whatever the snapshot carried, so a proxy that
    starts while the API server is slow still serves the operator's last view. The version is
    left alone: it names the snapshot the operator published, which is what status reports.
    ``targets`` is ``service_targets(config)`` when the caller has it already (it walks the
    whole snapshot, so callers reacting to every EndpointSlice event compute it once per snapshot).
    """
    by_key = {entry.key: entry for entry in config.endpoints}
    for target in service_targets(config) if targets is None else targets:
        view = views.get(target.namespace)
        if view is not None and view.synced:
            known = by_key.get(target.key)
            hints = frozenset(a.port for a in known.addresses) if known else frozenset()
            by_key[target.key] = resolve(target, view.services, view.slices.values(), hints)
    endpoints = tuple(by_key[key] for key in sorted(by_key))
    if endpoints == config.endpoints:
        return config
    return dataclasses.replace(config, endpoints=endpoints)
