"""WebSocket @connections across `serve --workers 2` with the private redis-server (DESIGN.md 8).

The workers share the ports (SO_REUSEPORT), so each new HTTP connection to the internal port
lands on either worker; a connection id held by one must work from both: every POST reaches
the client, none answers 410.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from propylon.commands import private_redis
from tests.serve.test_serve import Served, _wait_for
from tests.wsapi.test_websocket_redis import _manage
from tests.wsapi.test_websocket_serve import API, Backend, chat_folder


async def test_connections_calls_reach_the_client_from_either_worker(tmp_path: Path) -> None:
    if private_redis.find() is None:
        pytest.skip("redis-server is not installed (serve --workers needs it without --redis)")
    backend = Backend()
    folder = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
    served = Served(folder, tmp_path, "--workers", "2")
    try:
        async with connect(f"ws://127.0.0.1:{served.port}/live") as client:
            await client.send(json.dumps({"action": "join"}))
            assert _wait_for(lambda: "/oneway" in backend.paths(), 10)
            connection_id = backend.calls[0][1]
            # 16 fresh HTTP connections: with two workers, all landing on the owner is a 1 in 2^16
            statuses = [
                (await asyncio.to_thread(_manage, served, "POST", connection_id, f"m{n}".encode()))[0]
                for n in range(16)
            ]
            assert statuses == [200] * 16
            got = [await asyncio.wait_for(client.recv(), timeout=10) for _ in range(16)]
            assert sorted(got) == sorted(f"m{n}" for n in range(16))
            assert (await asyncio.to_thread(_manage, served, "DELETE", connection_id))[0] == 204
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(client.recv(), timeout=10)
        assert _wait_for(lambda: backend.paths().count("/disconnect") == 1, 10)
    finally:
        served.stop()
        backend.close()
