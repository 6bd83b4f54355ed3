"""Backends: Services and EndpointSlices, resolved into the endpoints a ``service`` target uses.

A ``service`` integration names a Service port, as a user thinks of it; the proxy needs
addresses and the port the pods listen on. The Kubernetes rule is followed: a Service port
maps to the EndpointSlice port of the same name (its ``targetPort``). For ``propylon serve``,
where a user may write EndpointSlices without their Service, the slice port with the Service
port's number is taken. No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from propylon_compiler import objects
from propylon_config import model

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ALLOW_FROM_LABEL = "propylon.dev/allow-from"


class Backends:
    """What the inputs say about Services: which exist, their ports, their endpoints."""

    def __init__(self, index: objects.Index) -> None:
        self._services = {(obj.namespace, obj.name): obj for obj in index.of_kind("Service")}
        self._slices: dict[tuple[str, str], list[objects.Object]] = defaultdict(list)
        for obj in index.of_kind("EndpointSlice"):
            service = obj.labels.get(SERVICE_NAME_LABEL)
            if service:
                self._slices[(obj.namespace, service)].append(obj)

    def exists(self, target: model.ServiceTarget) -> bool:
        """A Service, or failing that an EndpointSlice labelled with its name, proves it exists."""
        key = (target.namespace, target.name)
        return key in self._services or key in self._slices

    def missing_port(self, target: model.ServiceTarget) -> bool:
        """True when the Service is given and has no such port."""
        service = self._services.get((target.namespace, target.name))
        return service is not None and self._service_port(service, target.port) is None

    def allows(self, from_namespace: str, target_namespace: str) -> bool:
        """Whether Apis in ``from_namespace`` may route to Services in ``target_namespace``.

        The target namespace opts in with a Service labelled ``propylon.dev/allow-from``
        whose value names the Api's namespace (a comma-separated list is accepted).
        """
        if from_namespace == target_namespace:
            return True
        for (namespace, _), service in self._services.items():
            if namespace != target_namespace:
                continue
            allowed = service.labels.get(ALLOW_FROM_LABEL, "")
            if from_namespace in (part.strip() for part in allowed.split(",")):
                return True
        return False

    def endpoints(self, target: model.ServiceTarget) -> model.ServiceEndpoints:
        """Every address of the target, ready or not, sorted; the proxy uses the ready ones."""
        service = self._services.get((target.namespace, target.name))
        service_port = self._service_port(service, target.port) if service is not None else None
        found: set[model.EndpointAddress] = set()
        for slice_obj in self._slices.get((target.namespace, target.name), ()):
            port = _slice_port(slice_obj.body, target.port, service_port)
            if port is None:
                continue
            for endpoint in _list(slice_obj.body.get("endpoints")):
                conditions = endpoint.get("conditions")
                ready = conditions.get("ready", True) if isinstance(conditions, dict) else True
                for address in endpoint.get("addresses") or ():
                    if isinstance(address, str) and address:
                        found.add(model.EndpointAddress(address=address, port=port, ready=ready is not False))
        return model.ServiceEndpoints(key=target.key, addresses=tuple(sorted(found, key=_address_order)))

    @staticmethod
    def _service_port(service: objects.Object, number: int) -> dict[str, Any] | None:
        for port in _list(service.spec.get("ports")):
            if port.get("port") == number:
                return port
        return None


def _slice_port(body: dict[str, Any], number: int, service_port: dict[str, Any] | None) -> int | None:
    ports = [p for p in _list(body.get("ports")) if isinstance(p.get("port"), int)]
    if service_port is None:
        return number if any(p["port"] == number for p in ports) else None
    name = service_port.get("name") or ""
    for port in ports:
        if (port.get("name") or "") == name:
            return int(port["port"])
    # A slice without port names: trust a numeric targetPort (or the port itself).
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) and any(p["port"] == target for p in ports):
        return target
    return None


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _address_order(address: model.EndpointAddress) -> tuple[str, int, bool]:
    return (address.address, address.port, address.ready)
