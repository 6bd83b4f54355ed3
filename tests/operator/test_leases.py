"""Which proxy Leases count, and which are left behind by replicas gone for good."""

from __future__ import annotations

import datetime

from propylon_operator import leases

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def _lease(name: str, renewed: datetime.datetime | None, *, secret: str = "gw-snapshot", duration: int = 30) -> dict:
    spec: dict = {"holderIdentity": name, "leaseDurationSeconds": duration}
    if renewed is not None:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "edge", "labels": {leases.SECRET_LABEL: secret}},
        "spec": spec,
    }


def test_a_lease_expires_only_after_five_durations() -> None:
    seconds = datetime.timedelta(seconds=1)
    assert not leases.is_expired(_lease("a", NOW - 31 * seconds), NOW)  # stale (no longer counts) but kept
    assert not leases.is_fresh(_lease("a", NOW - 31 * seconds), NOW)
    assert not leases.is_expired(_lease("a", NOW - 150 * seconds), NOW)
    assert leases.is_expired(_lease("a", NOW - 151 * seconds), NOW)
    # The Lease's own duration sets the scale.
    assert not leases.is_expired(_lease("a", NOW - 400 * seconds, duration=100), NOW)
    assert leases.is_expired(_lease("a", NOW - 400 * seconds, duration=10), NOW, factor=5)


def test_a_lease_never_renewed_is_left_alone() -> None:
    assert not leases.is_expired(_lease("a", None), NOW)


def test_expired_picks_only_this_gateways_leases() -> None:
    old = NOW - datetime.timedelta(hours=1)
    found = leases.expired(
        [_lease("mine-old", old), _lease("mine-new", NOW), _lease("theirs-old", old, secret="other-snapshot")],
        "gw-snapshot",
        NOW,
    )
    assert [lease["metadata"]["name"] for lease in found] == ["mine-old"]
