"""Every way an upgrade is refused answers the section-3 gateway response, body byte for byte.

Through `propylon serve` with the real `websockets` client: a REQUEST authorizer (real handler
code) that says 401, 403 or breaks; a missing or wrong API key; a FUNCTION and an HTTP $connect
integration answering non-2xx; an HTTP $connect that cannot be reached; a refused Origin; a
broken handshake; and @connections for an unknown connection. Each is JSON ``{"message": ...}``
with ``x-propylon-error-type`` and ``x-request-id``, as DESIGN.md sections 3, 5 and 8 say.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.functions import harness
from tests.serve.test_serve import Served
from tests.wsapi.test_websocket_serve import Backend

HANDLERS = Path(__file__).parent / "handlers"
KEY = "ws-refusals-key-0123456789abcdef"


def _api(name: str, connect_integration: str, extra: str = "", connect_extra: str = "") -> str:
    return (
        f"apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {{name: {name}, namespace: talk}}\n"
        f"spec:\n  protocol: WEBSOCKET\n{extra}  routes:\n"
        f'    - routeKey: "$connect"\n{connect_extra}      integration: {connect_integration}\n'
        f"    - routeKey: $default\n      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}\n---\n"
        f"apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}, namespace: talk}}\n"
        f"spec: {{apiRef: {name}, basePath: /{name}}}\n---\n"
    )


def _manifests(backend: str, authorizer: int, fn: int, dead: int) -> str:
    ok = f'{{type: HTTP, url: "{backend}/ok-connect"}}'
    guarded = _api("guarded", ok, '  cors: {allowOrigins: ["https://ok.example"]}\n', "      authorizer: req\n")
    keyed = _api("keyed", ok, connect_extra="      apiKeyRequired: true\n")
    return (
        "apiVersion: propylon.dev/v1alpha1\nkind: Authorizer\nmetadata: {name: req, namespace: talk}\n"
        'spec:\n  type: REQUEST\n  identitySource: ["$request.header.X-User"]\n'
        f'  function: {{url: "http://127.0.0.1:{authorizer}", resultTtlSeconds: 0}}\n---\n'
        + guarded
        + keyed
        + _api("fnconnect", f'{{type: FUNCTION, url: "http://127.0.0.1:{fn}"}}')
        + _api("httpno", f'{{type: HTTP, url: "{backend}/connect"}}')
        + _api("down", f'{{type: HTTP, url: "http://127.0.0.1:{dead}/connect"}}')
        + "apiVersion: propylon.dev/v1alpha1\nkind: UsagePlan\nmetadata: {name: gold, namespace: talk}\n"
        "spec:\n  stages: [{stageRef: keyed}]\n  apiKeySelector: {matchLabels: {propylon.dev/usage-plan: gold}}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: k1, namespace: talk, labels: {propylon.dev/usage-plan: gold}}\n"
        f'stringData: {{value: "{KEY}"}}\n'
    )


class World:
    def __init__(self, tmp: Path) -> None:
        self.backend = Backend()
        self.backend.refuse_connect = True  # /connect answers 401; /ok-connect 200
        self.authorizer = harness.function("authorizers.request", tmp).wait()
        self.fn = harness.function("ws_chat.handler", tmp, path=HANDLERS).wait()
        folder = tmp / "manifests"
        folder.mkdir()
        manifests = _manifests(self.backend.url, self.authorizer.port, self.fn.port, harness.free_port())
        (folder / "all.yaml").write_text(manifests)
        self.served = Served(folder, tmp)

    def stop(self) -> None:
        self.served.stop()
        self.authorizer.stop()
        self.fn.stop()
        self.backend.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("ws-refusals"))
    yield w
    w.stop()


async def _refused(world: World, base: str, **options: object) -> tuple[int, str, bytes]:
    """(status, x-propylon-error-type, body) of an upgrade the gateway must refuse."""
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{world.served.port}{base}", **options):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    assert response.headers.get("x-request-id"), "every gateway response names its request"
    assert response.headers.get("Content-Type") == "application/json"
    return response.status_code, response.headers.get("x-propylon-error-type", ""), response.body or b""


FORBIDDEN = b'{"message": "Forbidden"}'


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("nobody", (401, "UNAUTHORIZED", b'{"message": "Unauthorized"}')),  # raised "Unauthorized"
        ("mallory", (403, "ACCESS_DENIED", FORBIDDEN)),  # an explicit Deny for the route
        ("crash", (500, "AUTHORIZER_FAILURE", b'{"message": "Internal Server Error"}')),
    ],
)
async def test_the_authorizer_refuses(world: World, user: str, expected: tuple[int, str, bytes]) -> None:
    before = world.backend.paths().count("/ok-connect")
    assert await _refused(world, "/guarded", additional_headers={"X-User": user}) == expected
    assert world.backend.paths().count("/ok-connect") == before  # $connect's integration never ran


async def test_the_authorizer_allows(world: World) -> None:
    async with connect(f"ws://127.0.0.1:{world.served.port}/guarded", additional_headers={"X-User": "bob"}):
        pass
    assert "/ok-connect" in world.backend.paths()


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong-key-0123456789abcdefgh"}])
async def test_a_missing_or_wrong_api_key(world: World, headers: dict[str, str]) -> None:
    assert await _refused(world, "/keyed", additional_headers=headers) == (403, "INVALID_API_KEY", FORBIDDEN)


async def test_the_right_api_key_connects(world: World) -> None:
    async with connect(f"ws://127.0.0.1:{world.served.port}/keyed", additional_headers={"x-api-key": KEY}):
        pass


async def test_a_function_connect_answering_non_2xx(world: World) -> None:
    assert await _refused(world, "/fnconnect", user_agent_header="refuse-me") == (403, "ACCESS_DENIED", FORBIDDEN)


async def test_an_http_connect_answering_non_2xx(world: World) -> None:
    assert await _refused(world, "/httpno") == (403, "ACCESS_DENIED", FORBIDDEN)
    assert "/connect" in world.backend.paths()


async def test_an_http_connect_that_cannot_be_reached(world: World) -> None:
    expected = (502, "INTEGRATION_FAILURE", b'{"message": "Internal server error"}')
    assert await _refused(world, "/down") == expected


async def test_a_refused_origin(world: World) -> None:
    refusal = await _refused(world, "/guarded", origin="https://evil.example", additional_headers={"X-User": "bob"})
    assert refusal == (403, "ACCESS_DENIED", FORBIDDEN)


def _plain(world: World, url: str, headers: dict[str, str], method: str = "GET") -> tuple[int, str, bytes, str]:
    request = urllib.request.Request(url, headers=headers, method=method)
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    error = answer.value
    headers = error.headers
    return error.code, headers.get("x-propylon-error-type", ""), error.read(), headers.get("x-request-id", "")


def test_a_broken_handshake(world: World) -> None:
    before = list(world.backend.paths())
    no_key = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "X-User": "bob"}
    status, error_type, body, request_id = _plain(world, world.served.url("/guarded"), no_key)
    assert (status, error_type, body) == (400, "BAD_REQUEST", b'{"message": "Bad Request"}') and request_id
    assert world.backend.paths() == before  # nothing of the Api ran


def test_connections_on_an_unknown_id(world: World) -> None:
    url = f"http://127.0.0.1:{world.served.internal}/guarded/@connections/nosuchid"
    for method in ("GET", "POST", "DELETE"):
        status, error_type, body, request_id = _plain(world, url, {}, method)
        assert (status, error_type, body) == (410, "GONE", b'{"message": "Gone"}') and request_id
