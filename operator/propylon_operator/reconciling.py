"""The one reconcile: recompile everything, publish if the version changed, keep the data plane
and every object's status in line. Level-based: it never asks what changed, only what is.

One background task runs it, woken by any inventory change (debounced) and by a periodic
resync (Leases go stale without any event). Each pass is idempotent: publishing compares
versions, workloads are server-side applied only when their manifests change, when one of them
is deleted (``watch_workloads``) or on resync, and statuses are written only when they differ
from what the object shows, so the operator's own writes, which come back as watch events, end
in a pass that does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import Any

from propylon_config import model
from propylon_operator import (
    compiling,
    conditions,
    debouncing,
    documents,
    kube,
    leases,
    publishing,
    stage_digests,
    statuses,
    usage_polling,
    workloads,
)
from propylon_operator import inventory as inventory_
from propylon_operator import settings as settings_

logger = logging.getLogger("propylon.operator")

GROUP_VERSION = "propylon.dev/v1alpha1"
PLURALS = {"Api": "apis", "Stage": "stages", "UsagePlan": "usageplans", "Authorizer": "authorizers"}
USAGE_PLAN_LABEL = "propylon.dev/usage-plan"

# kind -> (apiVersion, plural, label selector) for the initial listing
WATCHED: dict[str, tuple[str, str, str | None]] = {
    **{kind: (GROUP_VERSION, plural, None) for kind, plural in PLURALS.items()},
    "Secret": ("v1", "secrets", USAGE_PLAN_LABEL),
    "Service": ("v1", "services", None),
    "EndpointSlice": ("discovery.k8s.io/v1", "endpointslices", "kubernetes.io/service-name"),
}


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(slots=True)
class _Published:
    body: dict[str, Any] | None = None  # the snapshot Secret as last seen
    known: bool = False  # whether ``body`` reflects the cluster (read or watched at least once)


class Reconciler:
    def __init__(
        self,
        settings: settings_.Settings,
        client: kube.Client,
        inventory: inventory_.Inventory,
        *,
        clock: Callable[[], datetime.datetime] = utcnow,
        cluster_objects: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.settings = settings
        self.client = client
        self.inventory = inventory
        self.wakeup = inventory_.Wakeup()
        self.passes = 0
        self.settled = False  # a first whole pass has succeeded
        self._clock = clock
        self._compiler = compiling.LastGood.for_settings(settings)
        self._fingerprint: str | None = None
        self._outcome: compiling.Outcome | None = None
        self._published = _Published()
        self._too_large: str | None = None  # the version last refused as too large, said once
        self._operator_owner: dict[str, Any] | None = None
        self._applied_digest: str | None = None
        self._applied_at = 0.0
        self._apply_failed_at: float | None = None
        self._workload_missing = False  # the workload watch saw one go: apply all on the next pass
        self._cluster_objects = list(cluster_objects)
        self._referenced: set[inventory_.Key] = set()  # unlabelled Secrets that Authorizers name
        self._redis_secret: dict[str, Any] | None = None  # settings.redis_secret as last seen
        # config version -> Stage id -> digest of that Stage as compiled in it (recent versions only)
        self._stage_digests: dict[str, dict[str, str]] = {}
        self._lease_failures: set[tuple[str, str]] = set()  # (name, resourceVersion) a delete failed on
        self.usage = usage_polling.UsageBook()  # UsagePlan usage, filled by usage_polling.UsagePoller
        inventory.subscribe(self.wakeup.set)

    # -- inputs from the watch handlers

    def observe_snapshot_secret(self, body: dict[str, Any] | None) -> None:
        """The snapshot Secret as the watch sees it (None when deleted): republish if it drifted."""
        if body is not None and inventory_.is_older(body, self._published.body):
            return  # the watch echoing a write older than the one just made
        before = publishing.stored_version(self._published.body)
        self._published = _Published(body=body, known=True)
        if publishing.stored_version(body) != before or body is None:
            self.wakeup.set()

    def is_redis_secret(self, key: inventory_.Key) -> bool:
        """Whether ``key`` is the Secret the proxies read their Redis URL from."""
        name = self.settings.redis_secret
        return bool(name) and key.namespace == self.settings.gateway_namespace and key.name == name

    def observe_redis_secret(self, body: dict[str, Any] | None) -> None:
        """The Redis Secret as the watch sees it: a new URL changes the proxies' pod template."""
        before = workloads.redis_checksum(self._redis_secret)
        self._redis_secret = body
        if workloads.redis_checksum(body) != before:
            self.wakeup.set()

    def wants_secret(self, body: dict[str, Any]) -> bool:
        """Whether a Secret is an input: a labelled API key, or one an Authorizer names."""
        key = inventory_.Key.of(body)
        if not self.settings.watches(key.namespace):
            return False
        labels = (body.get("metadata") or {}).get("labels") or {}
        return USAGE_PLAN_LABEL in labels or key in self._referenced

    async def _sync_referenced_secrets(self) -> None:
        """Fetch Secrets that Authorizers newly name; forget those no longer named (level-based)."""
        wanted = {
            inventory_.Key("Secret", inventory_.Key.of(body).namespace, name)
            for body in self.inventory.of_kind("Authorizer")
            for name in documents.secret_references(body)
        }
        added, dropped = wanted - self._referenced, self._referenced - wanted
        self._referenced = wanted
        for key in sorted(dropped):
            body = self.inventory.get(key)
            if body is not None and not self.wants_secret(body):
                self.inventory.discard(key)
        for key in sorted(added):
            if self.inventory.get(key) is None:
                body = await self.client.get(kube.object_path("v1", "secrets", key.namespace, key.name))
                if body is not None:
                    body.setdefault("kind", "Secret")
                    body.setdefault("apiVersion", "v1")
                    self.inventory.put(body, only_if_newer=True)

    # -- the loop

    async def run(self) -> None:
        """Prime, then reconcile on every (debounced) change and every resync, forever.

        Failures (the API server away, a write refused) are retried with a growing pause, up
        to 30 s: the proxies keep serving the last published snapshot meanwhile.
        """
        backoff = _Backoff()
        while True:
            try:
                await self.prime()
                break
            except (kube.KubeError, OSError, TimeoutError) as exc:
                logger.warning("cannot read the cluster yet (%s); retrying in %.0f s", exc, backoff.delay)
                await backoff.pause()
        watcher = asyncio.create_task(self.watch_workloads(), name="propylon-workload-watch")
        try:
            await self._loop(backoff)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _loop(self, backoff: _Backoff) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            if not first:
                await self.wakeup.wait(self.settings.resync_s)
                await debouncing.settle(
                    self.wakeup, quiet=self.settings.debounce_quiet_s, ceiling=self.settings.debounce_max_s
                )
            first = False
            try:
                await self.reconcile(now=loop.time())
            except asyncio.CancelledError:
                raise
            except (kube.KubeError, OSError, TimeoutError) as exc:
                logger.warning("reconcile failed (%s); retrying in %.0f s", exc, backoff.delay)
                await backoff.pause()
                self.wakeup.set()
            except Exception:
                logger.exception("reconcile failed; retrying in %.0f s", backoff.delay)
                await backoff.pause()
                self.wakeup.set()
            else:
                backoff.reset()

    async def prime(self) -> None:
        """List everything once before the first pass, so it never publishes a partial picture.

        kopf's own initial listing arrives as a stream of events with no end marker; compiling
        before it completes would publish a snapshot missing objects, then the full one: churn
        on every restart. Listing here first makes the first pass see the whole cluster.
        """
        namespaces = [None] if self.settings.watches_all_namespaces else list(self.settings.namespaces)
        for kind, (api_version, plural, selector) in WATCHED.items():
            for namespace in namespaces:
                path = kube.object_path(api_version, plural, namespace)
                for item in await self._list_patiently(path, selector):
                    item.setdefault("kind", kind)
                    item.setdefault("apiVersion", api_version)
                    self.inventory.put(item, only_if_newer=True)
        lease_path = kube.object_path("coordination.k8s.io/v1", "leases", self.settings.gateway_namespace)
        for item in await self._list_patiently(lease_path, leases.SECRET_LABEL):
            item.setdefault("kind", "Lease")
            item.setdefault("apiVersion", "coordination.k8s.io/v1")
            self.inventory.put(item, only_if_newer=True)
        if not self._published.known:
            self._published = _Published(body=await self.client.get(self._secret_path()), known=True)
        if self.settings.redis_secret and self._redis_secret is None:
            path = kube.object_path("v1", "secrets", self.settings.gateway_namespace, self.settings.redis_secret)
            self._redis_secret = await self.client.get(path)
        cluster_owner = await self._cluster_owner() if self._cluster_objects else None
        for manifest in self._cluster_objects:
            # The webhook configuration carries this process's fresh CA: (re)apply it once per start.
            if cluster_owner is not None:
                manifest = {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [cluster_owner]}}
            try:
                await self.client.apply(_manifest_path(manifest), manifest)
            except kube.KubeError as exc:
                logger.warning("cannot apply %s %s: %s", manifest["kind"], manifest["metadata"]["name"], exc)
        if self.settings.owner_deployment:
            path = kube.object_path("apps/v1", "deployments", self.settings.gateway_namespace)
            owner = await self.client.get(f"{path}/{self.settings.owner_deployment}")
            if owner is None:
                logger.warning("owner Deployment %s not found; the snapshot Secret has no owner", path)
            else:
                self._operator_owner = workloads.owner_reference(
                    "apps/v1", "Deployment", self.settings.owner_deployment, owner["metadata"]["uid"]
                )

    async def _cluster_owner(self) -> dict[str, Any] | None:
        """The installer's proxy ClusterRole, as the owner of what this operator makes cluster-wide.

        A cluster-scoped object (the webhook configuration) cannot be owned by the operator's
        Deployment; owned by the ClusterRole the chart installs and removes, it goes with the
        release instead of outliving it. None when there is no such ClusterRole or it cannot be read.
        """
        name = self.settings.proxy_cluster_role
        if not name:
            return None
        try:
            found = await self.client.get(kube.object_path("rbac.authorization.k8s.io/v1", "clusterroles", None, name))
        except kube.KubeError as exc:
            logger.warning("cannot read the ClusterRole %s (%s): cluster-wide objects get no owner", name, exc)
            return None
        if found is None:
            logger.warning("ClusterRole %s not found: cluster-wide objects get no owner", name)
            return None
        return workloads.owner_reference("rbac.authorization.k8s.io/v1", "ClusterRole", name, found["metadata"]["uid"])

    async def _list_patiently(self, path: str, selector: str | None) -> list[dict[str, Any]]:
        """List ``path``, retrying while the API server cannot answer (starting up, overloaded).

        Giving up would let the first pass publish a snapshot without these objects. A kind the
        server does not know (404: CRDs not installed) or may not show us (403) lists as empty.
        """
        delay = 0.5
        while True:
            try:
                return await self.client.list(path, label_selector=selector)
            except kube.KubeError as exc:
                if exc.status in (403, 404):
                    logger.warning("cannot list %s: %s", path, exc)
                    return []
                logger.info("listing %s failed (%s); retrying in %.1f s", path, exc, delay)
            except (OSError, TimeoutError) as exc:
                logger.info("listing %s failed (%s); retrying in %.1f s", path, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def reconcile(self, *, now: float = 0.0) -> compiling.Outcome:
        self.passes += 1
        await self._sync_referenced_secrets()
        inputs = {
            inventory_.Key.of(body): documents.to_document(body)
            for body in self.inventory.of_kind(*inventory_.INPUT_KINDS)
        }
        fingerprint = documents.fingerprint(inputs.values())
        if self._compiler.key_secret is None:
            # Read back from the published Secret, so a restart hashes keys (and versions) as before.
            self._compiler.use_key_secret(publishing.key_secret(self._published.body) or secrets.token_bytes(32))
            self._outcome = None
        if self._compiler.sealing_secret is None:
            self._compiler.use_sealing_secret(
                publishing.sealing_secret(self._published.body) or secrets.token_bytes(32)
            )
            self._outcome = None
        if fingerprint != self._fingerprint or self._outcome is None:
            # Pure but not instant (~0.5 s for 2,000 routes): off the loop, so watches keep flowing.
            self._outcome = await asyncio.to_thread(self._compiler.compile, inputs)
            self._fingerprint = fingerprint
        outcome = self._outcome
        self._remember_stages(outcome.snapshot)
        await self._publish(outcome.snapshot)
        await self._apply_workloads(now)
        await self._write_statuses(outcome)
        await self._delete_expired_leases()
        if not self.settled:
            self.settled = True
            logger.info("first pass done: config version %s, %d objects", outcome.snapshot.version, len(inputs))
        return outcome

    # -- publishing

    def _secret_path(self) -> str:
        return kube.object_path("v1", "secrets", self.settings.gateway_namespace, self.settings.snapshot_secret)

    async def _publish(self, snapshot: model.GatewayConfig) -> None:
        if publishing.stored_version(self._published.body) == snapshot.version:
            return
        try:
            body = publishing.secret(
                snapshot, self.settings, self._operator_owner, self._compiler.key_secret, self._compiler.sealing_secret
            )
        except publishing.SnapshotTooLarge as exc:
            # The proxies keep the last published version; statuses are still written below.
            if self._too_large != snapshot.version:
                self._too_large = snapshot.version
                logger.error("not published: %s; the proxies keep serving the last published version", exc)
            return
        answer = await self.client.apply(self._secret_path(), body)
        self._published = _Published(body=answer, known=True)
        logger.info("published snapshot %s (%d stages)", snapshot.version, len(snapshot.stages))
        await self._event(
            answer,
            "Normal",
            "SnapshotPublished",
            f"published config version {snapshot.version} ({len(snapshot.stages)} stages)",
        )

    # -- the data plane's objects

    def _workload_owner(self) -> dict[str, Any] | None:
        uid = ((self._published.body or {}).get("metadata") or {}).get("uid")
        if not uid:
            return None
        return workloads.owner_reference("v1", "Secret", self.settings.snapshot_secret, uid)

    def _workload_manifests(self) -> list[workloads.Manifest]:
        return workloads.build(
            self.settings, self._workload_owner(), redis_checksum=workloads.redis_checksum(self._redis_secret)
        )

    async def _apply_workloads(self, now: float) -> None:
        manifests = self._workload_manifests()
        digest = hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()
        missing, self._workload_missing = self._workload_missing, False  # one gone mid-pass: next pass
        if digest == self._applied_digest and not missing:
            # Unchanged manifests: re-apply only on resync (someone may have edited or deleted an
            # object), or 30 s after a failed attempt.
            if self._apply_failed_at is None and now - self._applied_at < self.settings.workload_resync_s:
                return
            if self._apply_failed_at is not None and now - self._apply_failed_at < 30.0:
                return
        failed = False
        held = await self._hold_replicas_for_the_hpa()
        for manifest in manifests:
            try:
                await self.client.apply(_manifest_path(manifest), manifest)
            except kube.KubeError as exc:
                failed = True
                logger.warning("cannot apply %s %s: %s", manifest["kind"], manifest["metadata"]["name"], exc)
        if not held:
            await self._hold_replicas_for_the_hpa()
        if not self.settings.hpa_max:
            await self._delete_ignoring_absence(
                kube.object_path(
                    "autoscaling/v2",
                    "horizontalpodautoscalers",
                    self.settings.gateway_namespace,
                    self.settings.gateway_name,
                )
            )
        self._applied_digest = digest
        self._applied_at = now
        self._apply_failed_at = now if failed else None

    async def watch_workloads(self) -> None:
        """Apply the data plane's objects again as soon as one of them is deleted.

        The operator owns them (DESIGN §7): a deleted proxy Deployment, Service or PDB must come
        back at once, not on the next workload resync minutes later. kopf cannot watch them: its
        watches span every namespace the operator serves, where it may read no Deployments. So a
        plain watch per kind, in the gateway namespace only, on the labels the operator sets.
        Only absence counts: edits wait for the resync, or status churn would re-apply all day.
        """
        kinds = {m["kind"]: m["apiVersion"] for m in self._workload_manifests() if workloads.PLURALS[m["kind"]][1]}
        await asyncio.gather(*(self._watch_workload_kind(kind, api_version) for kind, api_version in kinds.items()))

    async def _watch_workload_kind(self, kind: str, api_version: str) -> None:
        path = kube.object_path(api_version, workloads.PLURALS[kind][0], self.settings.gateway_namespace)
        selector = ",".join(f"{name}={value}" for name, value in sorted(workloads.labels(self.settings).items()))
        backoff = _Backoff()
        version: str | None = None  # None: list first (at start, and when the watch cannot resume)
        refused: set[int] = set()
        while True:
            try:
                if version is None:
                    listed = await self.client.request("GET", path, params={"labelSelector": selector})
                    version = str(listed["metadata"]["resourceVersion"])
                    present = {item["metadata"]["name"] for item in listed.get("items") or ()}
                    # Level-based: one deleted while no watch ran is missed by no event.
                    for name in sorted(self._workload_names(kind) - present):
                        self._workload_gone(kind, name)
                async for event in self.client.watch(path, resource_version=version, label_selector=selector):
                    meta = (event.get("object") or {}).get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if event.get("type") == "DELETED" and meta.get("name") in self._workload_names(kind):
                        self._workload_gone(kind, str(meta["name"]))
                backoff.reset()  # the server ended the watch (its timeout): resume from ``version``
            except asyncio.CancelledError:
                raise
            except kube.KubeError as exc:
                if exc.status not in (0, 410, *refused):  # a refusal is said once, not every 30 s
                    logger.warning("cannot watch %s: %s; retrying", path, exc)
                    refused.add(exc.status)
                version = None
                await backoff.pause()
            except Exception:
                logger.exception("watching %s failed; retrying in %.0f s", path, backoff.delay)
                version = None
                await backoff.pause()

    def _workload_names(self, kind: str) -> set[str]:
        return {m["metadata"]["name"] for m in self._workload_manifests() if m["kind"] == kind}

    def _workload_gone(self, kind: str, name: str) -> None:
        """A data-plane object is missing: the next pass applies every manifest again."""
        if self._applied_digest is None:
            return  # nothing applied yet: the first pass applies everything anyway
        logger.info("%s %s is gone; applying it again", kind, name)
        self._workload_missing = True
        self.wakeup.set()

    async def _hold_replicas_for_the_hpa(self) -> bool:
        """With an HPA, keep the proxy Deployment's replica count under a second field manager.

        Called before the Deployment is applied without ``replicas``: an existing count (the
        operator's own, or the HPA's) is held as it is, never below the HPA's minimum, so the
        apply that drops the field does not reset it to 1. Called again after the apply that
        created a Deployment, which starts at the minimum. True when there was a Deployment to
        hold (or nothing to do: no HPA); False when it does not exist yet.
        """
        if not self.settings.hpa_max:
            return True
        path = _manifest_path(workloads.replicas_handover(self.settings, 0))
        try:
            current = await self.client.get(path)
        except kube.KubeError as exc:
            logger.warning("cannot read the proxy Deployment: %s", exc)
            return True
        if current is None:
            return False
        replicas = (current.get("spec") or {}).get("replicas")
        count = max(replicas if isinstance(replicas, int) else 0, workloads.hpa_min_replicas(self.settings))
        try:
            await self.client.apply(
                path, workloads.replicas_handover(self.settings, count), field_manager=workloads.REPLICAS_MANAGER
            )
        except kube.KubeError as exc:
            logger.warning("cannot hold the proxies' replica count for the HPA: %s", exc)
        return True

    async def _delete_ignoring_absence(self, path: str) -> None:
        try:
            await self.client.request("DELETE", path)
        except kube.KubeError as exc:
            if exc.status not in (404, 403):
                logger.warning("cannot delete %s: %s", path, exc)

    # -- Leases left behind

    async def _delete_expired_leases(self) -> None:
        """Delete the Leases of proxies gone for good (killed before they could delete their own).

        They would never count (they are not fresh), but they pile up with every pod that dies.
        The garbage collector removes them with the snapshot Secret (their owner); this keeps
        the gateway namespace clean while the gateway lives. The delete is conditional on the
        resourceVersion seen, so a replica that renewed meanwhile keeps its Lease.
        """
        found = leases.expired(
            self.inventory.of_kind("Lease"),
            self.settings.snapshot_secret,
            self._clock(),
            factor=self.settings.lease_expiry_factor,
        )
        for lease in found:
            meta = lease.get("metadata") or {}
            name, version = str(meta.get("name")), str(meta.get("resourceVersion") or "")
            if (name, version) in self._lease_failures:
                continue  # already refused once; not worth a warning every pass
            path = kube.object_path("coordination.k8s.io/v1", "leases", self.settings.gateway_namespace, name)
            preconditions = {k: v for k, v in (("uid", meta.get("uid")), ("resourceVersion", version)) if v}
            try:
                await self.client.request("DELETE", path, body={"preconditions": preconditions})
            except kube.KubeError as exc:
                if exc.status not in (404, 409):  # gone already, or renewed since we looked
                    logger.warning("cannot delete the expired Lease %s: %s", name, exc)
                    self._lease_failures.add((name, version))
                continue
            renewed = (lease.get("spec") or {}).get("renewTime")
            logger.info("deleted the expired Lease %s (last renewed %s)", name, renewed)
            self.inventory.discard(inventory_.Key.of(lease))

    # -- status

    def served_snapshot(self) -> model.GatewayConfig | None:
        """The snapshot of the last pass, or None before the first (what the poller reads plans from)."""
        return self._outcome.snapshot if self._outcome is not None else None

    def _remember_stages(self, snapshot: model.GatewayConfig) -> None:
        """Keep what each Stage compiled to in this version (and a few before it), so a replica
        still on an older version counts for the Stages that version serves the same way."""
        if snapshot.version in self._stage_digests:
            return  # a version is a hash of its content: its Stages were digested when it was new
        self._stage_digests[snapshot.version] = stage_digests.stage_digests(snapshot)
        while len(self._stage_digests) > _REMEMBERED_VERSIONS:
            del self._stage_digests[next(iter(self._stage_digests))]

    def _replicas(self, snapshot: model.GatewayConfig, stage_id: str | None = None) -> statuses.Replicas:
        """Fresh replicas serving ``snapshot``; for a Stage, also those on an older version that
        serves that Stage exactly as this one does: an edit elsewhere leaves it Ready throughout."""
        counts = leases.versions(self.inventory.of_kind("Lease"), self.settings.snapshot_secret, self._clock())
        serving = counts.get(snapshot.version, 0)
        wanted = self._stage_digests.get(snapshot.version, {}).get(stage_id or "")
        if wanted is not None:
            serving += sum(
                count
                for version, count in counts.items()
                if version != snapshot.version and self._stage_digests.get(version, {}).get(stage_id or "") == wanted
            )
        return statuses.Replicas(serving=serving, expected=self.settings.replicas)

    async def _write_statuses(self, outcome: compiling.Outcome) -> None:
        now = conditions.rfc3339(self._clock())
        replicas = self._replicas(outcome.snapshot)
        for body in list(self.inventory.of_kind(*inventory_.PROPYLON_KINDS)):
            key = inventory_.Key.of(body)
            verdict = outcome.verdict(key)
            if key.kind == "Stage":
                counted = self._replicas(outcome.snapshot, f"{key.namespace}/{key.name}")
            else:
                counted = replicas
            status = statuses.desired(
                body,
                verdict,
                snapshot=outcome.snapshot,
                settings=self.settings,
                replicas=counted,
                now=now,
                usage=self.usage.entries,
            )
            current = statuses.mapping(body.get("status"))
            if not statuses.needs_write(current, status):
                continue
            path = kube.object_path(GROUP_VERSION, PLURALS[key.kind], key.namespace, key.name) + "/status"
            try:
                await self.client.merge_patch(path, {"status": status})
            except kube.KubeError as exc:
                if exc.status != 404:
                    logger.warning("cannot write the status of %s: %s", key, exc)
                continue
            self.inventory.update_status(key, status)
            if _became_broken(current, status):
                await self._event(body, "Warning", verdict.reason, verdict.message or "not ready")

    # -- events

    async def _event(self, body: dict[str, Any] | None, type_: str, reason: str, message: str) -> None:
        if not body:
            return
        meta = body.get("metadata") or {}
        stamp = conditions.rfc3339(self._clock())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": kube.FIELD_MANAGER},
            "reportingComponent": kube.FIELD_MANAGER,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.client.create(kube.object_path("v1", "events", str(meta.get("namespace"))), event)
        except kube.KubeError as exc:
            logger.warning("cannot post an event on %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)


_REMEMBERED_VERSIONS = 16


class _Backoff:
    """Pauses of 1, 2, 4 ... 30 s between failed attempts; back to 1 s after a success."""

    def __init__(self) -> None:
        self.delay = 1.0

    async def pause(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 30.0)

    def reset(self) -> None:
        self.delay = 1.0


def _became_broken(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Ready turned False, or stayed False for a new reason: worth a Warning event."""
    old = conditions.find(before.get("conditions"), "Ready")
    new = conditions.find(after.get("conditions"), "Ready")
    if new is None or new.get("status") != conditions.FALSE or new.get("reason") == "ReplicasPending":
        return False
    return old is None or old.get("status") != conditions.FALSE or old.get("reason") != new.get("reason")


def _manifest_path(manifest: dict[str, Any]) -> str:
    plural, namespaced = workloads.PLURALS[manifest["kind"]]
    meta = manifest["metadata"]
    return kube.object_path(manifest["apiVersion"], plural, meta.get("namespace") if namespaced else None, meta["name"])
