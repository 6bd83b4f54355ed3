"""AWS's WebSocket event, field for field, and a function's base64 answer (DESIGN.md sections 5, 2.2, 8).

Through `propylon serve` with a real Lambda handler (``handlers/ws_audit_events.py``) that
keeps every event it gets: what a FUNCTION integration sees on CONNECT, MESSAGE and
DISCONNECT, and what the client gets back when the function answers ``isBase64Encoded``.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.functions import harness
from tests.serve.test_serve import Served, _wait_for

HANDLERS = Path(__file__).parent / "handlers"

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  routes:
    - {{routeKey: "$connect", integration: {{type: FUNCTION, url: "{fn}"}}}}
    - {{routeKey: "$disconnect", integration: {{type: FUNCTION, url: "{fn}"}}}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: talk}}
spec: {{apiRef: chat, basePath: /live, accessLog: {{enabled: true}}}}
"""

CLF = re.compile(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$")


class World:
    def __init__(self, tmp: Path) -> None:
        self.fn = harness.function("ws_audit_events.handler", tmp, path=HANDLERS).wait()
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "api.yaml").write_text(API.format(fn=f"http://127.0.0.1:{self.fn.port}"))
        self.served = Served(folder, tmp)
        self.url = f"ws://127.0.0.1:{self.served.port}/live"

    def access_line(self, request_id: str) -> dict[str, Any] | None:
        lines = self.served.stdout_path.read_text(errors="replace").splitlines()
        found = (json.loads(line) for line in lines if line.startswith("{"))
        return next((line for line in found if line.get("requestId") == request_id), None)

    def stop(self) -> None:
        self.served.stop()
        self.fn.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.stop()


async def _own_id(client: ClientConnection) -> str:
    """The connection id of ``client``, from the events the function saw for it so far."""
    await client.send(json.dumps({"of": None}))
    return str(json.loads(await client.recv())[0]["requestContext"]["connectionId"])


async def _events_of(world: World, connection_id: str, last: str) -> list[dict[str, Any]]:
    """The events the function saw for ``connection_id``, once its ``last`` event type came."""
    deadline = time.monotonic() + 10
    while True:
        async with connect(world.url) as other:
            await other.send(json.dumps({"of": connection_id}))
            events: list[dict[str, Any]] = json.loads(await other.recv())
        if (events and events[-1]["requestContext"]["eventType"] == last) or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.1)


async def test_every_event_has_awss_request_context_and_disconnect_says_how_it_closed(world: World) -> None:
    async with connect(world.url, user_agent_header="audit-agent") as client:
        connection_id = await _own_id(client)
        await client.close(code=4000, reason="bye")
    events = await _events_of(world, connection_id, "DISCONNECT")
    assert [e["requestContext"]["eventType"] for e in events] == ["CONNECT", "MESSAGE", "DISCONNECT"]
    for event in events:
        ctx = event["requestContext"]
        assert ctx["messageDirection"] == "IN"
        assert ctx["apiId"] == "chat"  # the Api's name, as the HTTP events and $context.apiId
        assert ctx["domainName"] == "127.0.0.1"  # the Host without its port
        assert ctx["stage"] == "live" and ctx["connectionId"] == connection_id
        assert ctx["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "audit-agent"}
        assert ctx["extendedRequestId"] == ctx["requestId"] and ctx["requestId"]
        assert CLF.match(ctx["requestTime"]), ctx["requestTime"]
        parsed = calendar.timegm(time.strptime(ctx["requestTime"], "%d/%b/%Y:%H:%M:%S +0000"))
        assert parsed == ctx["requestTimeEpoch"] // 1000
        assert isinstance(ctx["connectedAt"], int) and ctx["connectedAt"] <= ctx["requestTimeEpoch"]
    connect_ctx, message_ctx, disconnect_ctx = (e["requestContext"] for e in events)
    assert message_ctx.get("messageId")
    assert "messageId" not in connect_ctx and "messageId" not in disconnect_ctx
    assert len({connect_ctx["requestId"], message_ctx["requestId"], disconnect_ctx["requestId"]}) == 3
    assert _wait_for(lambda: world.access_line(connect_ctx["requestId"]) is not None, 10)
    upgrade = world.access_line(connect_ctx["requestId"])
    assert upgrade is not None and upgrade["status"] == 101  # CONNECT carries the upgrade's own id
    assert disconnect_ctx["disconnectStatusCode"] == 4000 and disconnect_ctx["disconnectReason"] == "bye"
    for ctx in (connect_ctx, message_ctx):
        assert "disconnectStatusCode" not in ctx and "disconnectReason" not in ctx
    assert events[0]["headers"]["User-Agent"] == "audit-agent"  # CONNECT still has the upgrade's headers


async def test_a_close_the_gateway_makes_is_the_disconnects_code_and_reason(world: World) -> None:
    async with connect(world.url) as client:
        connection_id = await _own_id(client)
        internal = f"http://127.0.0.1:{world.served.internal}/live/@connections/{connection_id}"
        with urllib.request.urlopen(urllib.request.Request(internal, method="DELETE"), timeout=5) as answer:
            assert answer.status == 204
        await client.wait_closed()
        assert client.close_code == 1000
    ctx = (await _events_of(world, connection_id, "DISCONNECT"))[-1]["requestContext"]
    assert ctx["disconnectStatusCode"] == 1000 and ctx["disconnectReason"] == "closed by @connections"


async def test_an_is_base64_encoded_answer_reaches_the_client_decoded(world: World) -> None:
    async with connect(world.url) as client:
        await client.send(json.dumps({"b64": "not base64!"}))  # malformed: nothing comes back
        await client.send(json.dumps({"b64": "aGk="}))
        assert await client.recv() == b"hi"  # the decoded bytes, as a binary frame
        await client.send(json.dumps({"b64": "/wA="}))
        assert await client.recv() == b"\xff\x00"  # bytes no text frame could carry


async def test_a_message_over_the_limit_is_the_disconnects_1009(world: World) -> None:
    async with connect(world.url, max_size=None) as client:
        connection_id = await _own_id(client)
        await client.send("x" * 131073)
        await client.wait_closed()
        assert client.close_code == 1009
    ctx = (await _events_of(world, connection_id, "DISCONNECT"))[-1]["requestContext"]
    assert ctx["disconnectStatusCode"] == 1009 and ctx["disconnectReason"] == "message too big"
