"""WebSocket routes whose integration names a Service (DESIGN.md sections 1, 2.1, 6).

`serve` resolves ``service`` targets from the EndpointSlices given; a WebSocket Api's HTTP and
FUNCTION routes must reach them as HTTP routes do. Both refused every upgrade with 502
INTEGRATION_FAILURE: the HTTP call looked only at ``url`` and the function call was given no
endpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

from websockets.asyncio.client import connect

from tests import backends
from tests.functions import harness
from tests.serve.test_serve import Served

HANDLERS = Path(__file__).parent / "handlers"

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  routes:
    - {{routeKey: "$connect", integration: {{type: HTTP, service: {{name: be, port: 80}}, path: /connect}}}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: HTTP, service: {{name: be, port: 80}}, path: /default}}
    - routeKey: fn
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, service: {{name: fn, port: 80}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: talk}}
spec: {{apiRef: chat, basePath: /live}}
---
apiVersion: v1
kind: Service
metadata: {{name: be, namespace: talk}}
spec: {{ports: [{{port: 80, name: http}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: be-1, namespace: talk, labels: {{kubernetes.io/service-name: be}}}}
addressType: IPv4
ports: [{{name: http, port: {backend}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: fn, namespace: talk}}
spec: {{ports: [{{port: 80, name: http}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: fn-1, namespace: talk, labels: {{kubernetes.io/service-name: fn}}}}
addressType: IPv4
ports: [{{name: http, port: {fn}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"""


def _answer(request: backends.Received) -> backends.Answer:
    return backends.Answer(body=b"backend:" + request.body)


async def test_http_and_function_routes_reach_their_services_endpoints(tmp_path: Path) -> None:
    fn = harness.function("ws_chat.handler", tmp_path, path=HANDLERS).wait()
    try:
        with backends.Backend(_answer) as backend:
            folder = tmp_path / "manifests"
            folder.mkdir()
            (folder / "all.yaml").write_text(MANIFESTS.format(backend=backend.port, fn=fn.port))
            served = Served(folder, tmp_path)
            try:
                async with connect(f"ws://127.0.0.1:{served.port}/live") as client:
                    await client.send("hello")
                    assert await client.recv() == "backend:hello"
                    await client.send(json.dumps({"action": "fn"}))
                    seen = json.loads(await client.recv())
                    assert seen["routeKey"] == "fn" and seen["eventType"] == "MESSAGE"
                calls = [(r.path, r.header("x-propylon-event-type")) for r in list(backend.received)]
                assert calls[:2] == [("/connect", "CONNECT"), ("/default", "MESSAGE")]
            finally:
                served.stop()
    finally:
        fn.stop()
