"""Which proxy replicas serve which snapshot, read from the Leases they keep.

Each proxy renews a ``coordination.k8s.io/v1`` Lease labelled with its snapshot Secret and
annotated with the config version it serves. A Lease not renewed within its duration belongs to
a replica that is gone or stuck, and counts for nothing. One not renewed for many durations
belongs to a replica that is gone for good (a pod killed before it could delete its Lease): the
operator deletes it (``expired``). Pure: the clock is passed in.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

SECRET_LABEL = "propylon.dev/snapshot-secret"
VERSION_ANNOTATION = "propylon.dev/config-version"


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _renewed_and_duration(lease: dict[str, Any], default_duration: float) -> tuple[datetime.datetime | None, float]:
    spec = lease.get("spec") or {}
    renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    seconds = float(duration) if isinstance(duration, int | float) and duration > 0 else default_duration
    return renewed, seconds


def is_fresh(lease: dict[str, Any], now: datetime.datetime, *, default_duration: float = 30.0) -> bool:
    renewed, seconds = _renewed_and_duration(lease, default_duration)
    if renewed is None:
        return False
    return now <= renewed + datetime.timedelta(seconds=seconds)


def is_expired(
    lease: dict[str, Any], now: datetime.datetime, *, factor: float = 5.0, default_duration: float = 30.0
) -> bool:
    """Not renewed for ``factor`` durations: its replica is gone, not merely slow.

    The margin is wide on purpose: a replica that lost the API server for a minute renews again
    when it comes back, and a Lease deleted under it would only be recreated. A Lease with no
    time at all was never renewed by a proxy and is left alone (not ours to judge).
    """
    renewed, seconds = _renewed_and_duration(lease, default_duration)
    if renewed is None:
        return False
    return now > renewed + datetime.timedelta(seconds=seconds * factor)


def versions(leases: Iterable[dict[str, Any]], secret: str, now: datetime.datetime) -> dict[str, int]:
    """Config version -> how many fresh replicas serve it, for proxies of ``secret``."""
    counts: dict[str, int] = {}
    for lease in leases:
        meta = lease.get("metadata") or {}
        if (meta.get("labels") or {}).get(SECRET_LABEL) != secret or not is_fresh(lease, now):
            continue
        version = str((meta.get("annotations") or {}).get(VERSION_ANNOTATION) or "")
        if version:
            counts[version] = counts.get(version, 0) + 1
    return counts


def expired(
    leases: Iterable[dict[str, Any]], secret: str, now: datetime.datetime, *, factor: float = 5.0
) -> list[dict[str, Any]]:
    """The Leases of proxies of ``secret`` that ``is_expired``, to be deleted."""
    return [
        lease
        for lease in leases
        if ((lease.get("metadata") or {}).get("labels") or {}).get(SECRET_LABEL) == secret
        and is_expired(lease, now, factor=factor)
    ]
