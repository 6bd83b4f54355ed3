"""WebSocket @connections across two `propylon serve` replicas sharing a real redis-server.

A client connects to replica B; @connections calls land on replica A, which finds the
connection in the shared registry, answers GET from it and forwards POST and DELETE to B over
B's channel. B killed with SIGKILL (no cleanup runs) → its connections leave the registry within
the TTL (``--ws-registry-ttl 1`` here) and A answers 410. The same again on a real three-node
Redis Cluster (``--redis-cluster``).
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
from tests.wsapi.test_websocket_serve import API, Backend, _manage, chat_folder


def _replica(folder: Path, logs: Path, redis_url: str, *flags: str) -> Served:
    logs.mkdir()
    return Served(folder, logs, "--redis", redis_url, "--ws-registry-ttl", "1", *flags)


async def test_a_post_on_replica_a_reaches_a_client_on_b_and_b_killed_is_gone(tmp_path: Path) -> None:
    redis_servers.require_redis()
    backend = Backend()
    folder = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
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
    folder = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
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


async def test_two_replicas_on_a_redis_cluster(tmp_path: Path) -> None:
    redis_servers.require_redis()
    backend = Backend()
    folder = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
    with redis_servers.redis_cluster(tmp_path / "cluster") as cluster:
        # A is given one node and B another: each discovers the rest
        a = _replica(folder, tmp_path / "a", cluster.nodes[0].url, "--redis-cluster")
        b = _replica(folder, tmp_path / "b", cluster.nodes[2].url, "--redis-cluster")
        try:
            ids = []
            clients = [await connect(f"ws://127.0.0.1:{b.port}/live", user_agent_header=f"on-b-{n}") for n in range(6)]
            assert _wait_for(lambda: backend.paths().count("/connect") == 6, 10)
            ids = [c[1] for c in backend.calls if c[0] == "/connect"]
            # the entries spread over the cluster's nodes, each in its id's slot
            keys = [f"propylon:ws:conn:{{{i}}}" for i in ids]
            assert all(cluster.nodes[0].cli("-c", "EXISTS", key).strip() == "1" for key in keys)
            for n, (client, connection_id) in enumerate(zip(clients, ids, strict=True)):
                status, _ = await asyncio.to_thread(_manage, a, "POST", connection_id, f"to {n}".encode())
                assert status == 200
                assert await asyncio.wait_for(client.recv(), timeout=10) == f"to {n}"
            status, body = await asyncio.to_thread(_manage, a, "GET", ids[0])
            assert status == 200 and json.loads(body)["identity"]["userAgent"] == "on-b-0"
            status, _ = await asyncio.to_thread(_manage, a, "DELETE", ids[0])
            assert status == 204
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(clients[0].recv(), timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            assert _wait_for(lambda: backend.paths().count("/disconnect") == 1, 10)
            assert (await asyncio.to_thread(_manage, a, "GET", ids[0]))[0] == 410
            assert (await asyncio.to_thread(_manage, a, "POST", "nosuchid", b"x"))[0] == 410
            # B dies without cleanup: A answers 410 for its connections (no receiver, then no entry)
            b.process.kill()
            b.process.wait(timeout=10)
            assert (await asyncio.to_thread(_manage, a, "POST", ids[1], b"late"))[0] == 410
            assert _wait_for(lambda: all(_manage(a, "GET", i)[0] == 410 for i in ids[2:]), 20)
            for client in clients:
                await client.close()
        finally:
            a.stop()
            b.stop()
            backend.close()
