"""The cache's ``Vary`` level against a header's underscore twin (DESIGN.md section 8).

Many backends (nginx with ``underscores_in_headers``, WSGI/CGI servers, Spring) read ``X_Lang``
as ``X-Lang``. A reply that says ``Vary: X-Lang`` is keyed by the request's ``X-Lang``; one
fetched for a request that sent only ``X_Lang: fr`` answers "fr" and, stored under "no X-Lang",
would be every later caller's. The in-process gateway in front of a real loopback backend that
folds names the way those servers do."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from propylon_config import model
from tests.proxy.conftest import config, http_proxy, stage
from tests.proxy.test_audit_cache import VaryingBackend


class FoldingBackend(VaryingBackend):
    """Answers by ``X-Lang`` whichever spelling carried it (``_`` read as ``-``), with the call's
    number and ``Vary`` (``X-Lang``, or ``?vary=``); ``?d=`` delays the answer."""

    async def _handle(self, request: web.Request) -> web.Response:
        n = next(self.calls)
        if "d" in request.query:
            await asyncio.sleep(float(request.query["d"]))
        lang = next((v for k, v in request.headers.items() if k.lower().replace("_", "-") == "x-lang"), "en")
        return web.json_response({"n": n, "lang": lang}, headers={"Vary": request.query.get("vary", "X-Lang")})


@pytest.fixture
async def folding() -> AsyncIterator[FoldingBackend]:
    server = FoldingBackend()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def _gateway(start_gateway: Any, backend_url: str) -> str:
    cache = model.CacheSettings(enabled=True)
    built = stage([("GET /c", http_proxy(backend_url + "/c"))])
    built = dataclasses.replace(
        built, cache=cache, routes=tuple(dataclasses.replace(r, cache=cache) for r in built.routes)
    )
    gw = await start_gateway(config(built))
    return str(gw.addresses.urls()["public"]) + "/prod/c"


async def _get(session: aiohttp.ClientSession, url: str, **headers: str) -> tuple[str, str | None]:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        return json.loads(await resp.read())["lang"], resp.headers.get("x-propylon-cache")


async def test_a_reply_varied_by_an_underscore_twin_is_never_stored(
    start_gateway: Any, folding: FoldingBackend
) -> None:
    url = await _gateway(start_gateway, folding.url)
    async with aiohttp.ClientSession() as session:
        twin = await _get(session, url, X_Lang="fr")
        clean = await _get(session, url)
        again = await _get(session, url)
    # A caller without X-Lang never gets the twin's answer from the cache ...
    assert clean == ("en", "miss")
    assert again == ("en", "hit")
    # ... and the twin's caller gets its own, reported as not cacheable.
    assert twin == ("fr", "bypass")


async def test_a_twin_is_never_served_or_stored_once_the_vary_is_known(
    start_gateway: Any, folding: FoldingBackend
) -> None:
    url = await _gateway(start_gateway, folding.url)
    async with aiohttp.ClientSession() as session:
        assert await _get(session, url, **{"X-Lang": "de"}) == ("de", "miss")  # the Vary is now known
        # The key would read "no X-Lang": neither stored there nor answered from there.
        assert await _get(session, url, X_Lang="fr") == ("fr", "bypass")
        assert await _get(session, url) == ("en", "miss")
        assert await _get(session, url, x_lang="it") == ("it", "bypass")  # not "en" from the cache
        assert await _get(session, url) == ("en", "hit")
        assert await _get(session, url, **{"X-Lang": "de"}) == ("de", "hit")
        # The twin next to the dashed name: the backend may read either, so never from the cache.
        assert (await _get(session, url, **{"X-Lang": "de", "X_Lang": "fr"}))[1] == "bypass"


async def test_an_underscore_named_vary_is_guarded_from_its_dashed_twin(
    start_gateway: Any, folding: FoldingBackend
) -> None:
    url = await _gateway(start_gateway, folding.url) + "?vary=X_Lang"
    async with aiohttp.ClientSession() as session:
        assert await _get(session, url, **{"X-Lang": "fr"}) == ("fr", "bypass")
        assert await _get(session, url) == ("en", "miss")
        assert await _get(session, url, **{"X-Lang": "fr"}) == ("fr", "bypass")
        assert await _get(session, url) == ("en", "hit")
        assert await _get(session, url, X_Lang="it") == ("it", "miss")  # the name Vary names keys as before
        assert await _get(session, url, X_Lang="it") == ("it", "hit")


async def test_followers_never_get_a_leaders_reply_varied_by_a_twin(
    start_gateway: Any, folding: FoldingBackend
) -> None:
    url = await _gateway(start_gateway, folding.url) + "?d=0.5"
    async with aiohttp.ClientSession() as session:
        leader = asyncio.ensure_future(_get(session, url, X_Lang="fr"))
        await asyncio.sleep(0.2)  # the leader's miss is in flight
        followers = await asyncio.gather(*(_get(session, url) for _ in range(2)))
        first = await leader
        later = await _get(session, url)
    assert [lang for lang, _ in followers] == ["en", "en"]  # not the twin's "fr"
    assert later == ("en", "hit")  # one of the followers' replies was stored
    assert first == ("fr", "bypass")


async def test_a_twin_follower_never_gets_the_leaders_reply(start_gateway: Any, folding: FoldingBackend) -> None:
    url = await _gateway(start_gateway, folding.url) + "?d=0.5"
    async with aiohttp.ClientSession() as session:
        leader = asyncio.ensure_future(_get(session, url))
        await asyncio.sleep(0.2)
        follower = await _get(session, url, X_Lang="fr")
        assert await leader == ("en", "miss")
        assert follower == ("fr", "bypass")
        assert await _get(session, url) == ("en", "hit")
