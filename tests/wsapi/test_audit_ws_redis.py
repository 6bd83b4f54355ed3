"""@connections across two `propylon serve --redis` replicas when the channel sits idle, and
shutting down with a live subscriber (audit b5 r1 and r5).

The owner's subscriber used to read its channel with the client's 1 s socket timeout: every
idle second was an error and a resubscription, and a POST or DELETE published in between was
counted as received by the stale subscription (200/204) and lost. Here the POSTs come through
the other replica at irregular intervals, most longer than a second apart, and each one must
reach the client; a DELETE after an idle pause must close it the first time. Then the owner
must stop within the drain time on SIGTERM, with Redis up and with Redis frozen (SIGSTOP).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests import redis_servers
from tests.serve.test_serve import Served, _wait_for
from tests.wsapi.test_websocket_serve import API, Backend, _manage, chat_folder

GAPS = (0.2, 1.3, 0.7, 2.1, 1.05, 0.4, 1.6, 0.9, 1.2, 0.3)  # seconds before each POST
DRAIN = 3.0


def _replica(folder: Path, logs: Path, redis_url: str, *flags: str) -> Served:
    logs.mkdir()
    return Served(folder, logs, "--redis", redis_url, "--drain-seconds", str(DRAIN), *flags)


async def test_posts_at_irregular_intervals_all_reach_the_owner_and_delete_closes_at_once(tmp_path: Path) -> None:
    redis_servers.require_redis()
    backend = Backend()
    folder = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
    with redis_servers.redis_server(tmp_path / "redis") as redis:
        a = _replica(folder, tmp_path / "a", redis.url)
        b = _replica(folder, tmp_path / "b", redis.url)
        try:
            async with connect(f"ws://127.0.0.1:{b.port}/live") as client:
                assert _wait_for(lambda: "/connect" in backend.paths(), 10)
                connection_id = backend.calls[0][1]
                for n, gap in enumerate(GAPS):
                    await asyncio.sleep(gap)
                    status, _ = await asyncio.to_thread(_manage, a, "POST", connection_id, f"m-{n}".encode())
                    assert status == 200
                    # the 200 says the owner received it: the client gets it, in order
                    assert await asyncio.wait_for(client.recv(), timeout=5) == f"m-{n}"
                await asyncio.sleep(1.5)
                status, _ = await asyncio.to_thread(_manage, a, "DELETE", connection_id)
                assert status == 204
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    await asyncio.wait_for(client.recv(), timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            assert "resubscribing" not in b.stderr()
        finally:
            a.stop()
            b.stop()
            backend.close()


def _stops_within_drain(served: Served) -> float:
    started = time.monotonic()
    served.stop()  # SIGTERM, then SIGKILL after 15 s
    return time.monotonic() - started


@pytest.mark.parametrize("redis_state", ["up", "frozen"])
async def test_serve_with_a_live_subscriber_stops_within_the_drain_time(tmp_path: Path, redis_state: str) -> None:
    redis_servers.require_redis()
    backend = Backend()
    folder = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
    with redis_servers.redis_server(tmp_path / "redis") as redis:
        served = _replica(folder, tmp_path / "a", redis.url, "--ws-registry-ttl", "1")
        try:
            async with connect(f"ws://127.0.0.1:{served.port}/live") as client:
                assert _wait_for(lambda: "/connect" in backend.paths(), 10)
                await asyncio.sleep(1.2)  # the heartbeat and the subscriber are running
                if redis_state == "frozen":
                    redis.freeze()
                    await asyncio.sleep(2.5)  # calls time out; the subscriber's reads wait
                took = await asyncio.to_thread(_stops_within_drain, served)
                assert served.process.returncode == 0, served.stderr()
                assert took < DRAIN + 2.0, served.stderr()
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(client.recv(), timeout=5)
        finally:
            served.stop()
            backend.close()
            if redis_state == "frozen":
                redis.thaw()


async def test_a_cancellation_lost_inside_the_redis_client_still_ends_the_channel_tasks(tmp_path: Path) -> None:
    """The r5 hang's mechanism, made deterministic: Python 3.11's ``asyncio.wait_for`` (which
    redis-py sends with) drops a cancellation that arrives as its call finishes, so the task is
    left "cancelling" with no CancelledError to end it. The subscriber and the heartbeat must
    still end, and ``close`` return, instead of looping on (what held ``gw.stop()`` forever)."""
    from propylon_proxy.websocket import cluster

    with redis_servers.redis_server(tmp_path / "redis") as redis:
        channel = cluster.Cluster(redis.url, 1.0, lambda *_: None)

        async def cancel_lost_then(loop: Awaitable[None]) -> None:
            with contextlib.suppress(asyncio.CancelledError):  # as wait_for does when its
                await asyncio.sleep(30)  # inner call completes in the same turn
            await loop

        for loop in (channel._subscribe(), channel._heartbeat()):
            task = asyncio.create_task(cancel_lost_then(loop))
            await asyncio.sleep(0.1)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=3)
            if not done:  # the old loops: a second cancel reaches their sleep
                task.cancel()
                await asyncio.wait([task], timeout=3)
            assert done and task.cancelled()
        await channel.close()
