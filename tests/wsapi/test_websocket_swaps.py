"""Config swaps and open WebSocket connections, through `propylon serve --watch` (issue 14).

A connection keeps the plan it opened with until its stage stops being served: editing the
manifest to remove a WebSocket Api and its Stage closes that stage's connections with 1001
and runs their $disconnect exactly once, while connections of the stage that remains stay open
and keep working.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.serve.test_serve import Served, _wait_for
from tests.wsapi.test_websocket_serve import API, Backend, chat_folder

NEWS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: news, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      integration: {{type: HTTP, url: "{backend}/news-connect"}}
    - routeKey: "$disconnect"
      integration: {{type: HTTP, url: "{backend}/news-disconnect"}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: HTTP, url: "{backend}/default"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: news, namespace: talk}}
spec: {{apiRef: news, basePath: {base}}}
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend() as b:
        yield b


@pytest.fixture
def folder(tmp_path: Path, backend: Backend) -> Path:
    manifests = chat_folder(tmp_path, API.format(backend=backend.url, extra="join"))
    (manifests / "news.yaml").write_text(NEWS.format(backend=backend.url, base="/news"))
    return manifests


@pytest.fixture
def served(folder: Path, tmp_path: Path) -> Iterator[Served]:
    s = Served(folder, tmp_path, "--watch")
    yield s
    s.stop()


def _ids(backend: Backend, path: str) -> list[str]:
    return [c[1] for c in backend.calls if c[0] == path]


async def _closed_code(client: websockets.ClientConnection) -> int | None:
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        await asyncio.wait_for(client.recv(), timeout=30)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_removing_an_api_closes_its_connections_1001_and_keeps_the_others(
    served: Served, folder: Path, backend: Backend
) -> None:
    live = [await connect(f"ws://127.0.0.1:{port}/live") for port in (served.port, served.internal)]
    news = [await connect(f"ws://127.0.0.1:{served.port}/news") for _ in range(3)]
    try:
        assert _wait_for(lambda: len(_ids(backend, "/news-connect")) == 3, 10)
        (folder / "news.yaml").unlink()  # the Api and its Stage leave the config
        assert [await _closed_code(client) for client in news] == [1001, 1001, 1001]
        assert _wait_for(lambda: len(_ids(backend, "/news-disconnect")) == 3, 10)
        # exactly once each, with the id $connect saw
        assert sorted(_ids(backend, "/news-disconnect")) == sorted(_ids(backend, "/news-connect"))
        # the stage that remains: its connections (public and internal listener) are open and work
        for client in live:
            await client.send(json.dumps({"action": "sendMessage", "n": 1}))
            assert await client.recv() == 'echo:{"action": "sendMessage", "n": 1}'
        with pytest.raises(websockets.exceptions.InvalidStatus) as gone:
            async with connect(f"ws://127.0.0.1:{served.port}/news"):
                pass
        assert gone.value.response.status_code == 404
    finally:
        for client in live + news:
            await client.close()
    assert _wait_for(lambda: backend.paths().count("/disconnect") == 2, 10)
    assert len(_ids(backend, "/news-disconnect")) == 3  # nothing ran twice


async def test_moving_a_stages_base_path_closes_the_connections_on_the_old_one(
    served: Served, folder: Path, backend: Backend
) -> None:
    old = await connect(f"ws://127.0.0.1:{served.port}/news")
    live = await connect(f"ws://127.0.0.1:{served.port}/live")
    try:
        assert _wait_for(lambda: len(_ids(backend, "/news-connect")) == 1, 10)
        (folder / "news.yaml").write_text(NEWS.format(backend=backend.url, base="/headlines"))
        assert await _closed_code(old) == 1001
        assert _wait_for(lambda: len(_ids(backend, "/news-disconnect")) == 1, 10)
        async with connect(f"ws://127.0.0.1:{served.port}/headlines") as moved:
            await moved.send("hello")
            assert await moved.recv() == "default:hello"
        await live.send(json.dumps({"action": "sendMessage"}))
        assert await live.recv() == 'echo:{"action": "sendMessage"}'
    finally:
        await old.close()
        await live.close()


async def test_a_stage_made_private_closes_its_public_connections_only(
    served: Served, folder: Path, backend: Backend
) -> None:
    public = await connect(f"ws://127.0.0.1:{served.port}/news")
    internal = await connect(f"ws://127.0.0.1:{served.internal}/news")
    try:
        assert _wait_for(lambda: len(_ids(backend, "/news-connect")) == 2, 10)
        private = NEWS.format(backend=backend.url, base="/news").replace(
            "basePath: /news}", "basePath: /news, endpoint: PRIVATE}"
        )
        assert "PRIVATE" in private
        (folder / "news.yaml").write_text(private)
        assert await _closed_code(public) == 1001
        assert _wait_for(lambda: len(_ids(backend, "/news-disconnect")) == 1, 10)
        await internal.send("still here")  # the internal listener serves PRIVATE stages too
        assert await internal.recv() == "default:still here"
    finally:
        await public.close()
        await internal.close()
    assert _wait_for(lambda: len(_ids(backend, "/news-disconnect")) == 2, 10)
