"""WebSocket Apis through `propylon serve` with the real `websockets` client (issue 14).

The backend is a real HTTP server on loopback that records every call, so the tests see what
a backend sees: $connect, each routed message, and $disconnect exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests import backends
from tests.serve.test_serve import Served, _wait_for

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  websocket: {{maxMessageBytes: 64}}
  cors: {{allowOrigins: ["https://ok.example"]}}
  routes:
    - routeKey: "$connect"
      integration: {{type: HTTP, url: "{backend}/connect"}}
    - routeKey: "$disconnect"
      integration: {{type: HTTP, url: "{backend}/disconnect"}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: HTTP, url: "{backend}/default"}}
    - routeKey: sendMessage
      routeResponseSelectionExpression: "$default"
      integration: {{type: HTTP, url: "{backend}/echo"}}
    - routeKey: {extra}
      integration: {{type: HTTP, url: "{backend}/oneway"}}
"""

STAGE = """\
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: live, namespace: talk}
spec: {apiRef: chat, basePath: /live}
"""


class Backend(backends.Backend):
    """Records (path, connection id, route key, event type, body); /connect may refuse."""

    def __init__(self) -> None:
        self.refuse_connect = False
        super().__init__(self._answer)

    def _answer(self, request: backends.Received) -> backends.Answer:
        status = 401 if request.path == "/connect" and self.refuse_connect else 200
        body = {"/echo": b"echo:" + request.body, "/default": b"default:" + request.body}.get(request.path, b"")
        return backends.Answer(status=status, body=body)

    @property
    def calls(self) -> list[tuple[str, str, str, str, bytes]]:
        return [
            (
                r.path,
                r.header("x-propylon-connection-id"),
                r.header("x-propylon-route-key"),
                r.header("x-propylon-event-type"),
                r.body,
            )
            for r in list(self.received)
        ]


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend() as b:
        yield b


def chat_folder(tmp: Path, api: str) -> Path:
    """A manifests folder with ``api`` (an Api named chat) and the Stage ``live`` that serves it."""
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(api)
    (folder / "stage.yaml").write_text(STAGE)
    return folder


@contextlib.contextmanager
def serving(tmp: Path, api: str, *flags: str) -> Iterator[Served]:
    """`propylon serve` on ``chat_folder(tmp, api)``, stopped however the test ends."""
    served = Served(chat_folder(tmp, api), tmp, *flags)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path, API.format(backend=backend.url, extra="join"), "--watch") as s:
        yield s


def _ws(served: Served, port: int | None = None) -> str:
    return f"ws://127.0.0.1:{port or served.port}/live"


def _manage(served: Served, method: str, connection_id: str, body: bytes = b"") -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{served.internal}/live/@connections/{connection_id}"
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_routes_by_action_default_for_the_rest_and_disconnect_once(served: Served, backend: Backend) -> None:
    async with connect(_ws(served)) as client:
        await client.send(json.dumps({"action": "sendMessage", "text": "hi"}))
        assert await client.recv() == 'echo:{"action": "sendMessage", "text": "hi"}'
        await client.send("not json at all")
        assert await client.recv() == "default:not json at all"
        await client.send(json.dumps({"action": "nobody"}))
        assert await client.recv() == 'default:{"action": "nobody"}'
        await client.send(json.dumps({"action": "join"}))  # one-way: nothing comes back
        await client.send(json.dumps({"action": "sendMessage"}))
        assert await client.recv() == 'echo:{"action": "sendMessage"}'
    assert _wait_for(lambda: "/disconnect" in backend.paths(), 10)
    await asyncio.sleep(0)
    paths = backend.paths()
    assert paths[0] == "/connect" and paths.count("/disconnect") == 1
    assert paths[1:-1] == ["/echo", "/default", "/default", "/oneway", "/echo"]
    ids = {c[1] for c in backend.calls}
    assert len(ids) == 1 and ids != {""}
    assert [c[3] for c in backend.calls] == [
        "CONNECT",
        "MESSAGE",
        "MESSAGE",
        "MESSAGE",
        "MESSAGE",
        "MESSAGE",
        "DISCONNECT",
    ]
    assert backend.calls[1][2] == "sendMessage" and backend.calls[2][2] == "$default"


async def test_connect_refused_by_a_non_2xx_integration(served: Served, backend: Backend) -> None:
    backend.refuse_connect = True
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(_ws(served)):
            pass
    assert refused.value.response.status_code == 403
    assert backend.paths() == ["/connect"]


async def test_a_message_over_max_message_bytes_closes_with_1009(served: Served, backend: Backend) -> None:
    async with connect(_ws(served)) as client:
        await client.send("x" * 65)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert _wait_for(lambda: backend.paths().count("/disconnect") == 1, 10)


async def test_origin_refused_and_broken_handshakes_never_run_connect(served: Served, backend: Backend) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(_ws(served), origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with connect(_ws(served), origin="https://ok.example"):  # type: ignore[arg-type]
        pass
    request = urllib.request.Request(
        served.url("/live"), headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    )
    with pytest.raises(urllib.error.HTTPError) as broken:
        urllib.request.urlopen(request, timeout=5)
    assert broken.value.code == 400
    assert backend.paths().count("/connect") == 1  # only the allowed Origin's


async def test_management_post_get_delete_and_gone(served: Served, backend: Backend) -> None:
    async with connect(_ws(served)) as client:
        await client.send(json.dumps({"action": "join"}))
        assert _wait_for(lambda: "/oneway" in backend.paths(), 10)
        connection_id = backend.calls[0][1]
        status, _ = await asyncio.to_thread(_manage, served, "POST", connection_id, b"pushed")
        assert status == 200
        assert await client.recv() == "pushed"
        status, body = await asyncio.to_thread(_manage, served, "GET", connection_id)
        described = json.loads(body)
        assert status == 200 and described["identity"]["sourceIp"] == "127.0.0.1"
        assert {"connectedAt", "lastActiveAt"} <= described.keys()
        status, _ = await asyncio.to_thread(_manage, served, "DELETE", connection_id)
        assert status == 204
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await client.recv()
    assert _wait_for(lambda: backend.paths().count("/disconnect") == 1, 10)
    assert (await asyncio.to_thread(_manage, served, "GET", connection_id))[0] == 410
    assert (await asyncio.to_thread(_manage, served, "POST", "nosuchid", b"x"))[0] == 410
    # @connections is internal only.
    request = urllib.request.Request(served.url(f"/live/@connections/{connection_id}"))
    with pytest.raises(urllib.error.HTTPError) as public:
        urllib.request.urlopen(request, timeout=5)
    assert public.value.code == 404


async def test_a_reload_during_open_connections_drops_none(served: Served, backend: Backend, tmp_path: Path) -> None:
    clients = [await connect(_ws(served)) for _ in range(5)]
    try:
        api = tmp_path / "manifests" / "api.yaml"
        api.write_text(API.format(backend=backend.url, extra="leave"))
        # the new plan is live once the new route answers on a fresh connection
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            async with connect(_ws(served)) as probe:
                await probe.send(json.dumps({"action": "leave"}))
                await probe.send(json.dumps({"action": "sendMessage"}))
                await probe.recv()
            if backend.calls[-3][0] == "/oneway" or any(c[2] == "leave" for c in backend.calls):
                break
        assert any(c[2] == "leave" for c in backend.calls)
        for client in clients:
            await client.send(json.dumps({"action": "sendMessage", "n": 1}))
            assert await client.recv() == 'echo:{"action": "sendMessage", "n": 1}'
    finally:
        for client in clients:
            await client.close()


FUNCTION_API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  routes:
    - routeKey: "$connect"
      integration: {{type: FUNCTION, url: "{fn}"}}
    - routeKey: ask
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
"""


async def test_function_integration_gets_aws_websocket_events(tmp_path: Path) -> None:
    from tests.functions import harness

    fn = harness.function("ws_chat.handler", tmp_path, path=Path(__file__).parent / "handlers").wait()
    with serving(tmp_path, FUNCTION_API.format(fn=f"http://127.0.0.1:{fn.port}")) as served:
        async with connect(_ws(served)) as client:
            await client.send(json.dumps({"action": "ask", "q": 1}))
            seen = json.loads(await client.recv())
        assert seen["routeKey"] == "ask" and seen["eventType"] == "MESSAGE" and seen["stage"] == "live"
        assert seen["apiId"] == "chat" and seen["hasMessageId"] and seen["connectionId"]
        assert json.loads(seen["body"]) == {"action": "ask", "q": 1} and seen["isBase64Encoded"] is False
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(_ws(served), user_agent_header="refuse-me"):
                pass
        assert refused.value.response.status_code == 403
        fn.stop()


async def test_server_shutdown_closes_with_1001_and_runs_disconnect(served: Served, backend: Backend) -> None:
    async with connect(_ws(served)) as client:
        await client.send(json.dumps({"action": "join"}))
        assert _wait_for(lambda: "/oneway" in backend.paths(), 10)
        await asyncio.to_thread(served.stop)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert backend.paths().count("/disconnect") == 1


JWT_API = """\
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: idp, namespace: talk}}
spec:
  jwt: {{issuer: "{issuer}", audience: [chat], jwksUri: "{issuer}/jwks.json", algorithms: [RS256]}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      authorizer: idp
      integration: {{type: HTTP, url: "{backend}/connect"}}
    - routeKey: "$default"
      integration: {{type: HTTP, url: "{backend}/default"}}
"""


async def test_connect_runs_the_routes_jwt_authorizer_before_its_integration(tmp_path: Path, backend: Backend) -> None:
    from tests import issuers

    issuer = issuers.Issuer()
    kid = issuer.add_key("RSA")
    try:
        with serving(tmp_path, JWT_API.format(issuer=issuer.url, backend=backend.url)) as served:
            with pytest.raises(websockets.exceptions.InvalidStatus) as denied:
                async with connect(_ws(served)):
                    pass
            assert denied.value.response.status_code == 401
            forged = issuer.token(kid, claims=issuer.claims(aud="someone-else"))
            with pytest.raises(websockets.exceptions.InvalidStatus) as wrong:
                async with connect(_ws(served), additional_headers={"Authorization": f"Bearer {forged}"}):
                    pass
            assert wrong.value.response.status_code in (401, 403)
            assert backend.paths() == []  # $connect's integration never ran
            token = issuer.token(kid, claims=issuer.claims(aud="chat"))
            async with connect(_ws(served), additional_headers={"Authorization": f"Bearer {token}"}):
                pass
            assert backend.paths() == ["/connect"]
    finally:
        issuer.stop()


KEY_API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      apiKeyRequired: true
      integration: {{type: HTTP, url: "{backend}/connect"}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: gold, namespace: talk}}
spec:
  stages: [{{stageRef: live}}]
  apiKeySelector: {{matchLabels: {{propylon.dev/usage-plan: gold}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k1, namespace: talk, labels: {{propylon.dev/usage-plan: gold}}}}
stringData: {{value: "{key}"}}
"""


async def test_connect_refused_without_a_valid_api_key(tmp_path: Path, backend: Backend) -> None:
    key = "ws-key-0123456789abcdefghij"
    with serving(tmp_path, KEY_API.format(backend=backend.url, key=key)) as served:
        for headers in ({}, {"x-api-key": "wrong-key-0123456789abcdefgh"}):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with connect(_ws(served), additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403
        assert backend.paths() == []
        async with connect(_ws(served), additional_headers={"x-api-key": key}):
            pass
        assert backend.paths() == ["/connect"]


IDLE_API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  websocket: {{idleTimeoutSeconds: 1}}
  routes:
    - routeKey: "$disconnect"
      integration: {{type: HTTP, url: "{backend}/disconnect"}}
    - routeKey: "$default"
      integration: {{type: HTTP, url: "{backend}/default"}}
"""


async def test_idle_timeout_closes_and_runs_disconnect_once(tmp_path: Path, backend: Backend) -> None:
    # idleTimeoutSeconds is whole seconds (minimum 1) and `serve` reads the wall clock, so this
    # one waits for the real second: it asserts that the close happens, not how fast.
    with serving(tmp_path, IDLE_API.format(backend=backend.url)) as served:
        async with connect(_ws(served), ping_interval=None) as client:
            await client.send("one")  # activity first: the timeout counts from the last message
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(client.recv(), timeout=30)
        assert _wait_for(lambda: "/disconnect" in backend.paths(), 10)
        await asyncio.to_thread(served.stop)  # nothing more can come after the process ended
        assert backend.paths() == ["/default", "/disconnect"]


def _raw_client_that_never_reads(served: Served) -> socket.socket:
    """A WebSocket handshake over a plain socket with a tiny receive buffer, then no reads at
    all: the websockets package keeps reading into its own buffers, so it cannot play this."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", served.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return raw


@pytest.fixture
def served_large(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    """The chat Api with messages up to 256 KiB: @connections POSTs are held to maxMessageBytes."""
    api = API.format(backend=backend.url, extra="join").replace("maxMessageBytes: 64", "maxMessageBytes: 262144")
    with serving(tmp_path, api) as s:
        yield s


async def test_a_client_that_never_reads_is_closed_1008_and_disconnect_runs(
    served_large: Served, backend: Backend
) -> None:
    # The kernel buffers and then the gateway's bounded send queue fill up; the POST that finds
    # the queue full is refused (410) and the connection is closed with 1008: memory stays bounded.
    served = served_large
    raw = await asyncio.to_thread(_raw_client_that_never_reads, served)
    try:
        assert _wait_for(lambda: "/connect" in backend.paths(), 10)
        connection_id = backend.calls[0][1]
        chunk = b"x" * 262144
        statuses = []
        for _ in range(2000):
            status, _ = await asyncio.to_thread(_manage, served, "POST", connection_id, chunk)
            statuses.append(status)
            if status != 200:
                break
        assert statuses[-1] == 410 and statuses.count(200) >= 64
        # Now read everything: the queued messages, then the close frame (unmasked, code 1008).
        raw.settimeout(30)
        stream = bytearray()
        close_1008 = bytes([0x88, len(b"client too slow") + 2]) + (1008).to_bytes(2, "big") + b"client too slow"
        while close_1008 not in stream[-64:]:
            data = await asyncio.to_thread(raw.recv, 1 << 20)
            assert data, "the gateway hung up without a 1008 close frame"
            stream += data
    finally:
        raw.close()
    assert _wait_for(lambda: backend.paths().count("/disconnect") == 1, 10)
