"""The cache's second key level, a reply's ``Vary`` headers (DESIGN.md sections 4 and 8), where
two paths missed it: coalesced concurrent misses, and a backend's own ``Vary: Origin``. The
in-process gateway in front of a real loopback backend that answers what each request asks
(``?vary=`` its Vary header, ``?d=`` a delay) and echoes the headers it was sent."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from propylon_config import model
from tests.proxy.conftest import config, http_proxy, stage

ECHOED = ("cookie", "x-foo", "origin")


class VaryingBackend:
    """Counts calls; answers 200 JSON with the call's number and the ``ECHOED`` headers it got."""

    def __init__(self) -> None:
        self.calls = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        n = next(self.calls)
        if "d" in request.query:
            await asyncio.sleep(float(request.query["d"]))
        headers = {"Vary": request.query["vary"]} if "vary" in request.query else {}
        seen = {name: request.headers.get(name) for name in ECHOED}
        return web.json_response({"n": n, **seen}, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"


@pytest.fixture
async def varying() -> AsyncIterator[VaryingBackend]:
    server = VaryingBackend()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def _gateway(start_gateway: Any, backend_url: str, cors: model.Cors | None = None) -> str:
    cache = model.CacheSettings(enabled=True)
    built = stage([("GET /c", http_proxy(backend_url + "/c"))])
    built = dataclasses.replace(
        built, cache=cache, routes=tuple(dataclasses.replace(r, cache=cache) for r in built.routes)
    )
    snapshot = config(built)
    if cors is not None:
        snapshot = dataclasses.replace(snapshot, apis=tuple(dataclasses.replace(a, cors=cors) for a in snapshot.apis))
    gw = await start_gateway(snapshot)
    return str(gw.addresses.urls()["public"]) + "/prod/c"


async def _get(session: aiohttp.ClientSession, url: str, **headers: str) -> tuple[dict[str, Any], str | None, Any]:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        return json.loads(await resp.read()), resp.headers.get("x-propylon-cache"), resp.headers


# --- 1. coalesced misses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "values"), [("Cookie", ("session=alice", "session=bob")), ("X-Foo", ("1", "2", "3"))]
)
async def test_concurrent_first_misses_never_get_a_reply_varied_for_another(
    start_gateway: Any, varying: VaryingBackend, header: str, values: tuple[str, ...]
) -> None:
    url = await _gateway(start_gateway, varying.url) + f"?vary={header}&d=0.5"
    async with aiohttp.ClientSession() as session:
        got = await asyncio.gather(*(_get(session, url, **{header: v}) for v in values))
        for value, (body, state, _) in zip(values, got, strict=True):
            assert body[header.lower()] == value  # each caller gets the reply fetched for it
            assert state == "miss"
        assert sorted(body["n"] for body, _, _ in got) == list(range(1, len(values) + 1))
        # Each was stored under its own values: later callers get their own entry.
        for value in values:
            body, state, _ = await _get(session, url, **{header: value})
            assert (body[header.lower()], state) == (value, "hit")


async def test_concurrent_misses_with_the_same_varied_values_still_make_one_call(
    start_gateway: Any, varying: VaryingBackend
) -> None:
    url = await _gateway(start_gateway, varying.url) + "?vary=Cookie&d=0.5"
    async with aiohttp.ClientSession() as session:
        got = await asyncio.gather(*(_get(session, url, Cookie="session=carol") for _ in range(3)))
    assert [body["n"] for body, _, _ in got] == [1, 1, 1]
    assert sorted(state for _, state, _ in got) == ["hit", "hit", "miss"]
    assert next(varying.calls) == 2  # one backend call was made


# --- 2. Vary: Origin ------------------------------------------------------------------------


async def test_a_backends_vary_origin_is_keyed(start_gateway: Any, varying: VaryingBackend) -> None:
    url = await _gateway(start_gateway, varying.url) + "?vary=Origin"
    async with aiohttp.ClientSession() as session:
        a, a_state, _ = await _get(session, url, Origin="https://a.example")
        b, b_state, _ = await _get(session, url, Origin="https://b.example")
        again, again_state, _ = await _get(session, url, Origin="https://a.example")
    assert (a["origin"], a_state) == ("https://a.example", "miss")
    assert (b["origin"], b_state) == ("https://b.example", "miss")
    assert (again, again_state) == (a, "hit")


async def test_a_backends_vary_origin_is_keyed_on_a_cors_api_too(start_gateway: Any, varying: VaryingBackend) -> None:
    cors = model.Cors(allow_origins=("https://a.example", "https://b.example"))
    url = await _gateway(start_gateway, varying.url, cors) + "?vary=Origin"
    async with aiohttp.ClientSession() as session:
        a, a_state, _ = await _get(session, url, Origin="https://a.example")
        b, b_state, b_headers = await _get(session, url, Origin="https://b.example")
    assert (a["origin"], a_state) == ("https://a.example", "miss")
    assert (b["origin"], b_state) == ("https://b.example", "miss")
    assert b_headers.getall("Vary") == ["Origin"]  # the backend's and the gateway's, named once


async def test_the_gateways_own_vary_origin_never_enters_the_key(start_gateway: Any, varying: VaryingBackend) -> None:
    cors = model.Cors(allow_origins=("https://a.example", "https://b.example"))
    url = await _gateway(start_gateway, varying.url, cors)
    async with aiohttp.ClientSession() as session:
        a, a_state, a_headers = await _get(session, url, Origin="https://a.example")
        b, b_state, b_headers = await _get(session, url, Origin="https://b.example")
    assert (a_state, b_state) == ("miss", "hit")
    assert b == a  # one entry for both origins
    # CORS headers are computed per request, never replayed from the cache.
    assert a_headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert b_headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert a_headers["Vary"] == b_headers["Vary"] == "Origin"
