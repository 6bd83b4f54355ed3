"""@connections POST is held to the stage's maxMessageBytes (DESIGN.md sections 5 and 8).

A message larger than ``maxMessageBytes`` closes a client with 1009; a POST larger than it
was relayed to the client anyway. It is 413 REQUEST_TOO_LARGE now, as AWS's PostToConnection
refuses a payload over its frame limit, nothing is sent, and the connection stays open.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

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
  websocket: {{maxMessageBytes: 64}}
  routes:
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: talk}}
spec: {{apiRef: chat, basePath: /live}}
"""


def _post(served: Served, connection_id: str, body: bytes) -> tuple[int, bytes, str]:
    url = f"http://127.0.0.1:{served.internal}/live/@connections/{connection_id}"
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read(), answer.headers.get("x-propylon-error-type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("x-propylon-error-type", "")


async def test_a_post_over_max_message_bytes_is_413_and_the_connection_stays(tmp_path: Path) -> None:
    fn = harness.function("ws_chat.handler", tmp_path, path=HANDLERS).wait()
    try:
        folder = tmp_path / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(MANIFESTS.format(fn=f"http://127.0.0.1:{fn.port}"))
        served = Served(folder, tmp_path)
        try:
            async with connect(f"ws://127.0.0.1:{served.port}/live", max_size=None) as client:
                await client.send("{}")
                connection_id = json.loads(await client.recv())["connectionId"]
                status, body, error_type = _post(served, connection_id, b"x" * 65)
                assert (status, json.loads(body), error_type) == (
                    413,
                    {"message": "Request Too Long"},
                    "REQUEST_TOO_LARGE",
                )
                assert _post(served, connection_id, b"y" * 64)[0] == 200  # exactly the limit passes
                assert await client.recv() == "y" * 64  # the refused one never arrived
        finally:
            served.stop()
    finally:
        fn.stop()
