"""The response cache in-process, where the clock is injected: TTL expiry, the byte bound, and
refreshes allowed by a usage plan's allowCacheInvalidation."""

from __future__ import annotations

import dataclasses

import aiohttp

from propylon_config import model
from tests.proxy import keyed, scrape


def _cached(config: model.GatewayConfig, backend_url: str, **settings: object) -> model.GatewayConfig:
    cache = model.CacheSettings(enabled=True, **settings)  # type: ignore[arg-type]
    stage = config.stages[0]
    routes = tuple(
        dataclasses.replace(r, cache=cache, integration=dataclasses.replace(r.integration, url=backend_url + "/big"))
        for r in stage.routes
    )
    stage = dataclasses.replace(stage, cache=cache, routes=routes)
    return dataclasses.replace(config, stages=(stage, *config.stages[1:]))


async def _state(session: aiohttp.ClientSession, url: str, **headers: str) -> str | None:
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.headers.get("x-propylon-cache")


async def test_entries_expire_at_the_ttl_by_the_injected_clock(start_gateway, backend):
    clock = keyed.Clock()
    config = _cached(keyed.keyed_config(backend.url), backend.url, ttl_seconds=60)
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    url = gw.addresses.urls()["public"] + "/prod/open?n=10"
    async with aiohttp.ClientSession() as session:
        assert await _state(session, url) == "miss"
        clock.advance(59)
        assert await _state(session, url) == "hit"
        clock.advance(2)
        assert await _state(session, url) == "miss"
    text = gw.runtime.metrics.render()
    route = {"api": "shop/api-prod", "stage": "shop/prod", "route": "GET /open"}
    assert scrape.value(text, "propylon_cache_total", **route, result="hit") == 1
    assert scrape.value(text, "propylon_cache_total", **route, result="miss") == 2


async def test_the_cache_is_bounded_in_bytes(start_gateway, backend):
    config = _cached(keyed.keyed_config(backend.url), backend.url, capacity_mib=1)
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=keyed.Clock())
    base = gw.addresses.urls()["public"] + "/prod/open?n="
    async with aiohttp.ClientSession() as session:
        assert await _state(session, base + "600000") == "miss"
        assert await _state(session, base + "600000") == "hit"
        assert await _state(session, base + "600001") == "miss"  # 1.2 MB > 1 MiB: the first goes
        assert await _state(session, base + "600001") == "hit"
        assert await _state(session, base + "600000") == "miss"


async def test_a_plan_with_allow_cache_invalidation_may_refresh(start_gateway, backend):
    config = _cached(keyed.keyed_config(backend.url, plan={"allow_cache_invalidation": True}), backend.url)
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=keyed.Clock())
    url = gw.addresses.urls()["public"] + "/prod/keyed?n=7"
    async with aiohttp.ClientSession() as session:
        assert await _state(session, url, **{"x-api-key": keyed.ALICE}) == "miss"
        assert await _state(session, url, **{"x-api-key": keyed.ALICE}) == "hit"
        refreshed = await _state(session, url, **{"x-api-key": keyed.ALICE, "Cache-Control": "max-age=0"})
        assert refreshed == "bypass"  # DESIGN.md §8: refreshed responses are "bypass"


async def test_a_plan_without_it_is_refused_by_the_default_strategy(start_gateway, backend):
    config = _cached(keyed.keyed_config(backend.url), backend.url)
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=keyed.Clock())
    url = gw.addresses.urls()["public"] + "/prod/keyed?n=8"
    async with aiohttp.ClientSession() as session:
        assert await _state(session, url, **{"x-api-key": keyed.ALICE}) == "miss"
        async with session.get(url, headers={"x-api-key": keyed.ALICE, "Cache-Control": "max-age=0"}) as resp:
            await resp.read()
            assert resp.headers.get("x-propylon-cache") == "hit"
            assert resp.headers.get("x-propylon-cache-invalidation") == "denied"
