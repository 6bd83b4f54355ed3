"""The authorizer result cache, in an in-process gateway with an injected clock and a real
handler process (``propylon.function`` running tests/functions/handlers/authorizers.py)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from propylon_config import model
from tests.proxy import conftest as c

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))
import harness


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def function(tmp_path: Path) -> Iterator[harness.Process]:
    process = harness.function("authorizers.request", tmp_path).wait()
    yield process
    process.stop()


def _config(backend: c.Backend, port: int, ttl: int, kind: model.AuthorizerType) -> model.GatewayConfig:
    source = "$request.header.Authorization" if kind is model.AuthorizerType.TOKEN else "$request.header.X-User"
    authorizer = model.Authorizer(
        id="shop/fn",
        namespace="shop",
        name="fn",
        type=kind,
        identity_source=(source,),
        function=model.AuthorizerFunction(url=f"http://127.0.0.1:{port}", result_ttl_seconds=ttl),
    )
    calls = model.ParameterMapping(
        action=model.MappingAction.OVERWRITE,
        target=model.MappingTarget.HEADER,
        name="X-Calls",
        value="$context.authorizer.calls",
    )
    routes = tuple(
        dataclasses.replace(
            c.route(f"GET /{name}", c.http_proxy(backend.url + f"/{name}", request_parameters=(calls,))),
            authorizer=authorizer.id,
        )
        for name in ("a", "b")
    )
    stage = dataclasses.replace(c.stage([]), routes=routes)
    return c.config(stage, authorizers=(authorizer,))


async def _calls(gw: Any, backend: c.Backend, path: str, user: str) -> int:
    url = gw.addresses.urls()["public"] + "/prod" + path
    headers = {"X-User": user, "Authorization": user}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    return int(next(v for k, v in backend.received[-1]["headers"] if k.lower() == "x-calls"))


@pytest.mark.parametrize("kind", [model.AuthorizerType.REQUEST, model.AuthorizerType.TOKEN])
async def test_answers_are_cached_for_the_ttl_by_identity(start_gateway, backend, function, kind):
    clock = Clock()
    gw = await start_gateway(None)
    gw.runtime.clock = clock
    gw.swap(_config(backend, function.port, 300, kind))
    first = await _calls(gw, backend, "/a", "alice")
    assert await _calls(gw, backend, "/a", "alice") == first  # cached
    other = await _calls(gw, backend, "/a", "bob")
    assert other == first + 1  # another identity is another entry
    on_b = await _calls(gw, backend, "/b", "alice")
    # REQUEST answers are kept per route; a TOKEN answer is the token's, judged for every route.
    assert on_b == (first if kind is model.AuthorizerType.TOKEN else other + 1)
    clock.now += 299
    assert await _calls(gw, backend, "/a", "alice") == first
    clock.now += 2
    assert await _calls(gw, backend, "/a", "alice") > on_b  # expired: invoked again


async def test_ttl_zero_invokes_every_time(start_gateway, backend, function):
    gw = await start_gateway(None)
    gw.swap(_config(backend, function.port, 0, model.AuthorizerType.REQUEST))
    first = await _calls(gw, backend, "/a", "alice")
    assert await _calls(gw, backend, "/a", "alice") == first + 1
