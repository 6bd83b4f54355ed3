"""The $connect authorizer's context in every WebSocket event (issue 14), through `propylon serve`.

A REQUEST authorizer (real handler code under ``propylon.function``) and a JWT authorizer (a real
issuer with a JWKS endpoint) guard $connect; a FUNCTION integration records the
``requestContext.authorizer`` of each CONNECT, MESSAGE and DISCONNECT event. As AWS does, what
the authorizer said at $connect is kept for the connection: the authorizer runs once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests import issuers
from tests.functions import harness
from tests.serve.test_serve import Served

HANDLERS = Path(__file__).parent / "handlers"

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: req, namespace: talk}}
spec:
  type: REQUEST
  identitySource: ["$request.header.X-User"]
  function: {{url: "{authorizer}", payloadFormatVersion: "1.0", resultTtlSeconds: 0}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: idp, namespace: talk}}
spec:
  jwt: {{issuer: "{issuer}", audience: [chat], jwksUri: "{issuer}/jwks.json", algorithms: [RS256]}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: byrequest, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - {{routeKey: "$connect", authorizer: req, integration: {{type: FUNCTION, url: "{fn}"}}}}
    - {{routeKey: "$disconnect", integration: {{type: FUNCTION, url: "{fn}"}}}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: byjwt, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - {{routeKey: "$connect", authorizer: idp, integration: {{type: FUNCTION, url: "{fn}"}}}}
    - {{routeKey: "$disconnect", integration: {{type: FUNCTION, url: "{fn}"}}}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: open, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: req, namespace: talk}}
spec: {{apiRef: byrequest, basePath: /req}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: jwt, namespace: talk}}
spec: {{apiRef: byjwt, basePath: /jwt}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: open, namespace: talk}}
spec: {{apiRef: open, basePath: /open}}
"""


class World:
    def __init__(self, tmp: Path) -> None:
        self.fn = harness.function("ws_events.handler", tmp, path=HANDLERS).wait()
        self.authorizer = harness.function("authorizers.request", tmp).wait()
        self.issuer = issuers.Issuer()
        self.kid = self.issuer.add_key("RSA")
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(
            MANIFESTS.format(
                fn=f"http://127.0.0.1:{self.fn.port}",
                authorizer=f"http://127.0.0.1:{self.authorizer.port}",
                issuer=self.issuer.url,
            )
        )
        self.served = Served(folder, tmp)

    def ws(self, base: str) -> str:
        return f"ws://127.0.0.1:{self.served.port}{base}"

    def stop(self) -> None:
        self.served.stop()
        self.fn.stop()
        self.authorizer.stop()
        self.issuer.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.stop()


async def _history(world: World, base: str, of: str | None = None, **options: Any) -> dict[str, Any]:
    """What the function saw for ``of`` (or the new connection itself), asked over a connection."""
    async with connect(world.ws(base), **options) as client:
        await client.send(json.dumps({"of": of} if of else {}))
        answer: dict[str, Any] = json.loads(await client.recv())
    return answer


async def test_request_authorizer_context_in_connect_message_and_disconnect(world: World) -> None:
    headers = [("X-User", "bob"), ("X-Room", "a"), ("X-Room", "b")]
    async with connect(world.ws("/req") + "?room=1&tag=x&tag=y", additional_headers=headers) as client:
        await client.send("{}")
        first = json.loads(await client.recv())
        await client.send("{}")
        second = json.loads(await client.recv())
    connection_id = first["id"]
    # the authorizer ran once, at $connect: the same context (its call count) on every event
    expected = {"user": "bob", "calls": 1, "admin": False, "principalId": "bob", "integrationLatency": 0}
    assert [e["eventType"] for e in second["events"]] == ["CONNECT", "MESSAGE", "MESSAGE"]
    assert [e["authorizer"] for e in second["events"]] == [expected] * 3
    # CONNECT also carries the upgrade's headers and query, as AWS's $connect event does
    connected = second["events"][0]
    assert connected["headers"] == {"X-User": "bob", "X-Room": "b"}
    assert connected["multiValueHeaders"] == {"X-Room": ["a", "b"]}
    assert connected["query"] == {"room": "1", "tag": "y"}
    assert connected["multiQuery"] == {"room": ["1"], "tag": ["x", "y"]}
    assert "headers" not in second["events"][1]  # a MESSAGE has none
    # the DISCONNECT came after the client closed; another connection (alice) asks for it
    seen: list[dict[str, Any]] = []
    for _ in range(100):
        seen = (await _history(world, "/req", connection_id, additional_headers={"X-User": "alice"}))["events"]
        if seen[-1]["eventType"] == "DISCONNECT":
            break
    assert [e["eventType"] for e in seen] == ["CONNECT", "MESSAGE", "MESSAGE", "DISCONNECT"]
    assert seen[-1]["authorizer"] == expected and seen[-1]["routeKey"] == "$disconnect"


async def test_jwt_claims_and_principal_in_every_event(world: World) -> None:
    claims = world.issuer.claims(aud="chat", sub="user-7", email="ada@example.com", scope=None)
    token = world.issuer.token(world.kid, claims=claims)
    async with connect(world.ws("/jwt"), additional_headers={"Authorization": f"Bearer {token}"}) as client:
        await client.send("{}")
        answer = json.loads(await client.recv())
    authorizer = answer["events"][0]["authorizer"]
    assert authorizer["principalId"] == "user-7"
    assert authorizer["claims"]["sub"] == "user-7" and authorizer["claims"]["email"] == "ada@example.com"
    assert authorizer["claims"]["aud"] == "chat"
    assert [e["authorizer"] for e in answer["events"]] == [authorizer, authorizer]  # CONNECT, MESSAGE
    seen: list[dict[str, Any]] = []
    for _ in range(100):
        seen = (await _history(world, "/open", answer["id"]))["events"]
        if seen[-1]["eventType"] == "DISCONNECT":
            break
    assert seen[-1]["eventType"] == "DISCONNECT" and seen[-1]["authorizer"] == authorizer


async def test_no_authorizer_is_null(world: World) -> None:
    answer = await _history(world, "/open")
    assert answer["events"] == [{"eventType": "MESSAGE", "routeKey": "$default", "authorizer": None}]
