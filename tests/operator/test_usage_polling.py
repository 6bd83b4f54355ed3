"""The operator's usage poller against real proxies (in-process gateways on loopback).

Two replicas with their own in-memory stores each count only their own requests: the poller
sums them. Two replicas sharing one store report the same counters: it is read once, never
doubled. A replica that does not answer leaves the last value in place and says so.
"""

from __future__ import annotations

import datetime
import socket

import aiohttp

from propylon_config import model
from propylon_operator import settings, statuses, usage_polling
from propylon_proxy import state
from tests.proxy import keyed
from tests.proxy.conftest import backend, http_server, start_gateway  # noqa: F401  (fixtures)

NOW = datetime.datetime(2026, 3, 11, 10, 0, tzinfo=datetime.UTC)
QUOTA = model.Quota(limit=10, period=model.QuotaPeriod.DAY)
SECRET = "gw-snapshot"


def _lease(admin_url: str, name: str) -> dict:
    return {
        "metadata": {
            "name": name,
            "labels": {"propylon.dev/snapshot-secret": SECRET},
            "annotations": {"propylon.dev/config-version": "v", usage_polling.ADMIN_ANNOTATION: admin_url},
        },
        "spec": {"renewTime": "2026-03-11T09:59:50Z", "leaseDurationSeconds": 30},
    }


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _send(gw, key: str, n: int) -> None:
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            async with session.get(url, headers={"x-api-key": key}) as resp:
                assert resp.status == 200


def _poller(config, lease_bodies, *, redis: bool = False):
    book = usage_polling.UsageBook()
    woken: list[bool] = []
    poller = usage_polling.UsagePoller(
        settings.Settings(gateway_name="gw", redis_secret="redis" if redis else None),
        book=book,
        lease_bodies=lambda: lease_bodies,
        snapshot=lambda: config,
        changed=lambda: woken.append(True),
        clock=lambda: NOW,
    )
    return poller, book, woken


async def test_in_memory_replicas_are_summed(start_gateway, backend) -> None:  # noqa: F811
    clock = keyed.Clock()
    config = keyed.keyed_config(backend.url, plan={"quota": QUOTA})
    one = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    two = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    await _send(one, keyed.ALICE, 2)
    await _send(two, keyed.ALICE, 3)
    await _send(two, keyed.BOB, 1)
    leases = [_lease(one.addresses.urls()["admin"], "a"), _lease(two.addresses.urls()["admin"], "b")]
    poller, book, woken = _poller(config, leases)
    await poller.poll_once()
    entry = book.entries["shop/basic"]
    assert entry.usage is not None
    assert entry.usage["keys"]["alice"] == {"used": 5, "remaining": 5}
    assert entry.usage["keys"]["bob"] == {"used": 1, "remaining": 9}
    assert entry.usage["period"] == {"start": "2026-03-11T00:00:00Z", "end": "2026-03-12T00:00:00Z"}
    assert (entry.usage["store"], entry.usage["reportedBy"]) == ("memory", "2 of 2 proxies")
    assert (entry.reported.status, entry.reported.reason) == ("True", "Reported")
    assert woken
    # The status the reconcile writes carries it, next to keyCount.
    body = {"kind": "UsagePlan", "metadata": {"name": "basic", "namespace": "shop", "generation": 1}}
    written = statuses.desired(
        body,
        statuses.compiling.OK,
        snapshot=config,
        settings=settings.Settings(),
        replicas=statuses.Replicas(serving=2, expected=2),
        now="T",
        usage=book.entries,
    )
    assert written["keyCount"] == 2 and written["usage"] == entry.usage
    assert [c["type"] for c in written["conditions"]] == ["Ready", "Accepted", "UsageReported"]
    await poller.close()


async def test_a_shared_store_is_read_once_and_not_doubled(start_gateway, backend) -> None:  # noqa: F811
    clock = keyed.Clock()
    shared = state.MemoryStore()
    config = keyed.keyed_config(backend.url, plan={"quota": QUOTA})
    one = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock, store=shared)
    two = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock, store=shared)
    await _send(one, keyed.ALICE, 2)
    await _send(two, keyed.ALICE, 2)
    leases = [_lease(one.addresses.urls()["admin"], "a"), _lease(two.addresses.urls()["admin"], "b")]
    poller, book, _ = _poller(config, leases, redis=True)
    await poller.poll_once()
    usage = book.entries["shop/basic"].usage
    assert usage is not None and usage["keys"]["alice"] == {"used": 4, "remaining": 6}
    assert (usage["store"], usage["reportedBy"]) == ("shared", "1 of 1 proxies")
    await poller.close()


async def test_an_unreachable_proxy_keeps_the_last_value_and_says_so(start_gateway, backend) -> None:  # noqa: F811
    clock = keyed.Clock()
    config = keyed.keyed_config(backend.url, plan={"quota": QUOTA})
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    await _send(gw, keyed.ALICE, 1)
    leases = [_lease(gw.addresses.urls()["admin"], "a"), _lease(_closed_port_url(), "b")]
    poller, book, _ = _poller(config, leases)
    await poller.poll_once()
    entry = book.entries["shop/basic"]
    assert entry.usage is not None and entry.usage["reportedBy"] == "1 of 2 proxies"
    assert entry.reported.reason == "PartiallyReported"
    leases[0] = _lease(_closed_port_url(), "a")  # now nobody answers
    await poller.poll_once()
    after = book.entries["shop/basic"]
    assert after.usage == entry.usage  # the last value read stays
    assert (after.reported.status, after.reported.reason) == ("False", "ProxiesUnreachable")
    await poller.close()


def test_only_fresh_leases_of_this_gateway_are_asked() -> None:
    fresh = _lease("http://10.0.0.1:9090", "a")
    stale = {**_lease("http://10.0.0.2:9090", "b"), "spec": {"renewTime": "2026-03-11T09:00:00Z"}}
    other = _lease("http://10.0.0.3:9090", "c")
    other["metadata"]["labels"] = {"propylon.dev/snapshot-secret": "someone-else"}
    assert usage_polling.admin_urls([fresh, stale, other], SECRET, NOW) == ["http://10.0.0.1:9090"]
