"""The cluster as a config source: snapshot Secret + live endpoints -> the proxy's atomic swap.

Runs on the event loop; the watch and Lease threads only post finished state to it. What is
served changes only here, in ``_publish``, and only to a config that parsed and that the proxy
accepted: a broken snapshot is logged and the last good one keeps serving, an unreachable API
server leaves everything as it is until the watches reconnect.

The set of EndpointSlice watches follows the snapshot: one Service watch and one EndpointSlice
watch per namespace that a route's ``service`` points into, started and stopped as snapshots
change. Namespaced watches (rather than one cluster-wide one) keep the proxy's RBAC to the
namespaces it routes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client

from propylon_config import model
from propylon_proxy.kube import leases, slices, snapshots, watches

log = logging.getLogger("propylon.kube")

Apply = Callable[[model.GatewayConfig], object]


@dataclasses.dataclass(slots=True)
class _Namespace:
    services_watch: watches.ListWatch
    slices_watch: watches.ListWatch
    services: dict[str, Any] | None = None
    endpoint_slices: dict[str, Any] | None = None
    services_failed: bool = False  # e.g. RBAC lets the proxy read EndpointSlices but not Services

    def view(self) -> slices.NamespaceView:
        # Wait for the Services too, unless reading them fails: then ports are matched without them.
        services_settled = self.services is not None or self.services_failed
        return slices.NamespaceView(
            services=self.services,
            slices=self.endpoint_slices or {},
            synced=self.endpoint_slices is not None and services_settled,
        )

    def stop(self) -> None:
        self.services_watch.stop()
        self.slices_watch.stop()


class SecretSource:
    """Feeds ``apply`` with the config in Secret ``namespace/name``, endpoints kept live."""

    def __init__(
        self,
        *,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        apply: Apply,
        replica: str | None = None,
        key_secret: Callable[[bytes | None], object] | None = None,
        sealing_secret: Callable[[bytes | None], object] | None = None,
        lease_renew_seconds: float = leases.RENEW_SECONDS,
        watch_seconds: int = 45,
        endpoint_grace_seconds: float = 5.0,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self._apply = apply
        self._key_secret = key_secret  # told the key-hashing secret before each snapshot is applied
        self._sealing_secret = sealing_secret  # likewise the sealing secret
        self._core = client.CoreV1Api(api_client)
        self._discovery = client.DiscoveryV1Api(api_client)
        self._watch_seconds = watch_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._secret_watch: watches.ListWatch | None = None
        self._namespaces: dict[str, _Namespace] = {}
        self._base: model.GatewayConfig | None = None  # the snapshot as published
        self._targets: set[model.ServiceTarget] = set()  # the Service targets of _base
        self._served: model.GatewayConfig | None = None  # what the proxy runs (live endpoints)
        self._secret_version: str | None = None  # resourceVersion of the Secret last looked at
        self._first = asyncio.Event()
        # The first config waits this long for the live endpoints, so a fresh replica does not
        # turn ready while it would still route by the snapshot's (possibly stale) endpoints.
        self._endpoint_grace = endpoint_grace_seconds
        self._grace_timer: asyncio.TimerHandle | None = None
        self._grace_over = False
        self._closed = False  # set by stop(): callbacks already posted by the threads do nothing
        coordination = client.CoordinationV1Api(api_client)
        self.lease = leases.LeaseReporter(
            patch_fn=coordination.patch_namespaced_lease,
            delete_fn=coordination.delete_namespaced_lease,
            namespace=namespace,
            secret_name=name,
            replica=replica,
            renew_seconds=lease_renew_seconds,
        )

    @property
    def served(self) -> model.GatewayConfig | None:
        return self._served

    async def wait_first_config(self, timeout: float | None = None) -> bool:
        """True once a config was applied; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._first.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._secret_watch = watches.ListWatch(
            what=f"Secret {self.namespace}/{self.name}",
            list_fn=self._core.list_namespaced_secret,
            namespace=self.namespace,
            field_selector=f"metadata.name={self.name}",
            publish=self._posting(self._on_secret),
            watch_seconds=self._watch_seconds,
        )
        self._secret_watch.start()
        self.lease.start()

    async def close(self) -> None:
        """Stop watching and give the Lease back, so this replica stops counting at once."""
        self.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.lease.release)

    def stop(self) -> None:
        self._closed = True
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._secret_watch is not None:
            self._secret_watch.stop()
        for namespace in self._namespaces.values():
            namespace.stop()
        self._namespaces.clear()
        self.lease.stop()

    def _posting(self, handler: Callable[[watches.Store], None]) -> Callable[[watches.Store], None]:
        """Wrap a loop-side handler so a watch thread can call it."""
        loop = self._loop
        assert loop is not None

        def post(store: watches.Store) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the thread was reading
                loop.call_soon_threadsafe(handler, store)

        return post

    def _posting_call(self, handler: Callable[[], None]) -> Callable[[], None]:
        loop = self._loop
        assert loop is not None

        def post() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(handler)

        return post

    # -- on the event loop

    def _on_secret(self, store: watches.Store) -> None:
        if self._closed:
            return
        secret = store.get(self.name)
        if secret is None:
            if self._served is None:
                log.warning("Secret %s/%s not found; waiting for it", self.namespace, self.name)
            else:
                log.warning("Secret %s/%s is gone; keeping version %s", self.namespace, self.name, self._served.version)
            return
        self.lease.set_owner(secret["metadata"].get("uid"))  # the Lease goes when the Secret goes
        resource_version = secret["metadata"].get("resourceVersion")
        if resource_version == self._secret_version:
            return  # a relist after a reconnect: nothing new
        self._secret_version = resource_version
        try:
            config = snapshots.decode(secret)
        except snapshots.SnapshotError as error:
            keeping = self._served.version if self._served else "nothing (no config yet)"
            log.error("Secret %s/%s: %s; keeping %s", self.namespace, self.name, error, keeping)
            return
        if self._key_secret is not None:
            self._key_secret(snapshots.key_hashing_secret(secret))
        if self._sealing_secret is not None:
            self._sealing_secret(snapshots.sealing_secret(secret))
        if self._base is not None and config == self._base:
            return
        self._base = config
        self._targets = slices.service_targets(config)
        self._follow_namespaces()
        self._publish()

    def _follow_namespaces(self) -> None:
        wanted = {target.namespace for target in self._targets}
        for namespace in set(self._namespaces) - wanted:
            self._namespaces.pop(namespace).stop()
        for namespace in wanted - set(self._namespaces):
            self._namespaces[namespace] = self._watch_namespace(namespace)

    def _watch_namespace(self, namespace: str) -> _Namespace:
        state: _Namespace

        def on_services(store: watches.Store) -> None:
            if self._namespaces.get(namespace) is state:
                state.services = store
                self._publish()

        def on_services_failure() -> None:
            if self._namespaces.get(namespace) is state and state.services is None:
                state.services_failed = True
                self._publish()

        def on_slices(store: watches.Store) -> None:
            if self._namespaces.get(namespace) is state:
                state.endpoint_slices = store
                self._publish()

        state = _Namespace(
            services_watch=watches.ListWatch(
                what=f"Services in {namespace}",
                list_fn=self._core.list_namespaced_service,
                namespace=namespace,
                publish=self._posting(on_services),
                on_failure=self._posting_call(on_services_failure),
                watch_seconds=self._watch_seconds,
            ),
            slices_watch=watches.ListWatch(
                what=f"EndpointSlices in {namespace}",
                list_fn=self._discovery.list_namespaced_endpoint_slice,
                namespace=namespace,
                label_selector=slices.SERVICE_NAME_LABEL,  # only slices that belong to a Service
                publish=self._posting(on_slices),
                watch_seconds=self._watch_seconds,
            ),
        )
        state.services_watch.start()
        state.slices_watch.start()
        return state

    def _end_grace(self) -> None:
        self._grace_over = True
        self._publish()

    def _publish(self) -> None:
        if self._base is None or self._closed:
            return
        views = {namespace: state.view() for namespace, state in self._namespaces.items()}
        if self._served is None and not self._grace_over and not all(v.synced for v in views.values()):
            if self._grace_timer is None and self._loop is not None:
                self._grace_timer = self._loop.call_later(self._endpoint_grace, self._end_grace)
            return
        config = slices.with_live_endpoints(self._base, views, self._targets)
        served = self._served
        if served is not None and served.version == config.version and served.endpoints == config.endpoints:
            return
        try:
            self._apply(config)
        except Exception:
            keeping = served.version if served else "nothing (no config yet)"
            log.exception("the proxy refused snapshot version %s; keeping %s", config.version, keeping)
            return
        if served is None or served.version != config.version:
            log.info("serving snapshot version %s from Secret %s/%s", config.version, self.namespace, self.name)
        else:
            log.info("endpoints changed; serving version %s with the live endpoints", config.version)
        self._served = config
        self._first.set()
        self.lease.set_version(config.version)
