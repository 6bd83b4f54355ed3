"""The replica's status Lease: which config version this proxy actually serves.

The operator cannot see inside proxies, so each replica keeps a ``coordination.k8s.io/v1``
Lease named ``<secret>-<pod>`` in the Secret's namespace, labelled with the Secret's name and
annotated with the applied version, renewed every 10 s with a 30 s duration. The operator counts
fresh Leases per version to tell whether a new snapshot has rolled out; a replica that died or
lost the API server simply stops renewing and drops out of the count.

Written with server-side apply: one idempotent request that creates or updates, owned by the
field manager ``propylon-proxy``, in a background thread (the client is synchronous).

Each Lease names the snapshot Secret as its owner (``set_owner``, from the Secret's uid): the
Secret belongs to the operator, so the garbage collector removes a killed replica's Lease along
with the rest of the data plane when the gateway is uninstalled.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("propylon.kube")

SECRET_LABEL = "propylon.dev/snapshot-secret"
VERSION_ANNOTATION = "propylon.dev/config-version"
# Where the operator reads this replica's /admin/usage (the data behind UsagePlan status).
ADMIN_ANNOTATION = "propylon.dev/admin-url"
RENEW_SECONDS = 10.0
DURATION_SECONDS = 30
FIELD_MANAGER = "propylon-proxy"


def replica_name() -> str:
    """The pod name (POD_NAME from the downward API), else the hostname (a pod's hostname is its name)."""
    return os.environ.get("POD_NAME") or socket.gethostname()


def lease_name(secret_name: str, replica: str) -> str:
    """``<secret>-<replica>`` made into a valid object name (lowercase, at most 253 characters)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", f"{secret_name}-{replica}".lower()).strip("-.")
    return name[:253].rstrip("-.")


def lease_body(
    *,
    namespace: str,
    name: str,
    secret_name: str,
    holder: str,
    version: str,
    now: datetime.datetime,
    owner_uid: str | None = None,
    admin_url: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {SECRET_LABEL: secret_name},
        "annotations": {VERSION_ANNOTATION: version},
    }
    if admin_url:
        metadata["annotations"][ADMIN_ANNOTATION] = admin_url
    if owner_uid:
        # Not a controller reference and no blockOwnerDeletion: the Lease only follows the
        # Secret away, and setting it needs no right on the Secret beyond reading it.
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Secret", "name": secret_name, "uid": owner_uid}]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": DURATION_SECONDS,
            "renewTime": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


class LeaseReporter:
    """Renews the Lease every ``RENEW_SECONDS`` and at once whenever ``set_version`` changes it.

    Nothing is written before the first version is applied: a replica that serves nothing yet
    must not count as having rolled anything out.
    """

    def __init__(
        self,
        *,
        patch_fn: Callable[..., Any],
        namespace: str,
        delete_fn: Callable[..., Any] | None = None,
        secret_name: str,
        replica: str | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self._patch_fn = patch_fn  # CoordinationV1Api(client).patch_namespaced_lease
        self._delete_fn = delete_fn  # CoordinationV1Api(client).delete_namespaced_lease
        self.namespace = namespace
        self.secret_name = secret_name
        self.holder = replica or replica_name()
        self.name = lease_name(secret_name, self.holder)
        self._clock = clock
        self._renew_seconds = renew_seconds
        self._version: str | None = None
        self._owner_uid: str | None = None
        self.admin_url: str | None = None  # announced in the Lease; set before start()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name=f"lease {self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def release(self, timeout: float = 5.0) -> None:
        """Stop renewing and delete the Lease (best effort, blocking up to ``timeout``): a replica
        shutting down should not count as serving for another ``DURATION_SECONDS``."""
        self.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)  # a renew in flight must not recreate the Lease after the delete
        if self._version is None or self._delete_fn is None:
            return
        try:
            response = self._delete_fn(
                self.name, self.namespace, _preload_content=False, _request_timeout=(timeout, timeout)
            )
            response.release_conn()
        except Exception as error:  # the API server may be gone too; the Lease then just expires
            log.warning("lease %s/%s: not deleted (%s)", self.namespace, self.name, _first_line(error))

    def set_version(self, version: str) -> None:
        with self._lock:
            changed = version != self._version
            self._version = version
        if changed:
            self._wake.set()

    def set_owner(self, uid: str | None) -> None:
        """The snapshot Secret's uid: the Lease's owner from the next renewal on (at once if it changed)."""
        with self._lock:
            changed = bool(uid) and uid != self._owner_uid
            if uid:
                self._owner_uid = uid
        if changed and self._version is not None:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                version, owner_uid = self._version, self._owner_uid
            if version is not None:
                self._renew(version, owner_uid)
            self._wake.wait(self._renew_seconds)
            self._wake.clear()

    def _renew(self, version: str, owner_uid: str | None = None) -> None:
        body = lease_body(
            namespace=self.namespace,
            name=self.name,
            secret_name=self.secret_name,
            holder=self.holder,
            version=version,
            now=self._clock(),
            owner_uid=owner_uid,
            admin_url=self.admin_url,
        )
        try:
            response = self._patch_fn(
                self.name,
                self.namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
                _request_timeout=(5.0, 10.0),
            )
            status = response.status
            response.release_conn()
            if not 200 <= status <= 299:
                raise RuntimeError(f"HTTP {status}")
        except Exception as error:  # keep trying; serving never depends on the Lease
            if not self._failing:
                log.warning(
                    "lease %s/%s: cannot renew (%s); retrying",
                    self.namespace,
                    self.name,
                    _first_line(error),
                )
            self._failing = True
            return
        if self._failing:
            log.warning("lease %s/%s: renewed again", self.namespace, self.name)
        self._failing = False


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
