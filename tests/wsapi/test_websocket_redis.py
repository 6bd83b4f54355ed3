"""WebSocket @connections across two `propylon serve` replicas sharing a real redis-server.

A client connects to replica B; @connections calls land on replica A, which finds the
connection in the shared registry, answers GET from it and forwards POST and DELETE to B over
B's channel. B killed with SIGKILL (no cleanup runs) → its connections leave the registry within
the TTL (``--ws-registry-ttl 1`` here) and A answers 410.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests import redis_servers
from tests.serve.test_serve import Served, _wait_for
from tests.wsapi.test_websocket_serve import API, STAGE, Backend, _manage


def _replica(folder: Path, logs: Path, redis_url: str) -> Served:
    logs.mkdir()
    return Served(folder, logs, "--redis", redis_url, "--ws-registry-ttl", "1")


async def test_a_post_on_replica_a_reaches_a_client_on_b_and_b_killed_is_gone(tmp_path: Path) -> None:
    redis_servers.require_redis()
    backend = Backend()
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.format(backend=backend.url, extra="join"))
    (folder / "stage.yaml").write_text(STAGE)
    with redis_servers.redis_server(tmp_path / "redis") as redis:
        a = _replica(folder, tmp_path / "a", redis.url)
        b = _replica(folder, tmp_path / "b", redis.url)
        try:
            async with connect(f"ws://127.0.0.1:{b.port}/live", user_agent_header="on-b") as client:
                await client.send(json.dumps({"action": "join"}))
                assert _wait_for(lambda: "/oneway" in backend.paths(), 10)
                connection_id = backend.calls[0][1]
                status, _ = await asyncio.to_thread(_manage, a, "POST", connection_id, b"from A")
                assert status == 200
                assert await asyncio.wait_for(client.recv(), timeout=10) == "from A"
                status, body = await asyncio.to_thread(_manage, a, "GET", connection_id)
                assert status == 200
                described = json.loads(body)
                assert described["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "on-b"}
                assert {"connectedAt", "lastActiveAt"} <= described.keys()
                # a connection nobody holds is gone on every replica
                assert (await asyncio.to_thread(_manage, a, "POST", "nosuchid", b"x"))[0] == 410
                # B dies without cleanup: its registry entries expire (TTL 1 s, no heartbeat)
                b.process.kill()
                b.process.wait(timeout=10)
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(client.recv(), timeout=10)
            assert _wait_for(lambda: _manage(a, "GET", connection_id)[0] == 410, 20)
            assert (await asyncio.to_thread(_manage, a, "POST", connection_id, b"late"))[0] == 410
            assert redis.cli("--scan", "--pattern", "propylon:ws:conn:*").strip() == ""
        finally:
            a.stop()
            b.stop()
            backend.close()


async def test_a_delete_on_replica_a_closes_the_client_on_b_and_runs_disconnect(tmp_path: Path) -> None:
    redis_servers.require_redis()
    backend = Backend()
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.format(backend=backend.url, extra="join"))
    (folder / "stage.yaml").write_text(STAGE)
    with redis_servers.redis_server(tmp_path / "redis") as redis:
        a = _replica(folder, tmp_path / "a", redis.url)
        b = _replica(folder, tmp_path / "b", redis.url)
        try:
            async with connect(f"ws://127.0.0.1:{b.port}/live") as client:
                assert _wait_for(lambda: "/connect" in backend.paths(), 10)
                connection_id = backend.calls[0][1]
                status, _ = await asyncio.to_thread(_manage, a, "DELETE", connection_id)
                assert status == 204
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    await asyncio.wait_for(client.recv(), timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            assert _wait_for(lambda: backend.paths().count("/disconnect") == 1, 10)
            # B removed the entry itself on $disconnect: gone at once, no TTL wait
            assert (await asyncio.to_thread(_manage, a, "GET", connection_id))[0] == 410
        finally:
            a.stop()
            b.stop()
            backend.close()
