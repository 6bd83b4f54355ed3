"""Audit of throttles and their metrics through a real in-process gateway, as a user sees them.

A token bucket refills at ``rateLimit`` per second, however long it sat idle: the in-memory
store forgets idle buckets to stay bounded, and must never hand one back full before it has
refilled. A Stage's own series (requests none of its routes matched) survive a reload that
keeps the Stage.
"""

from __future__ import annotations

import dataclasses
import json

import aiohttp

from propylon_config import model
from tests import backends
from tests.proxy import conftest as c
from tests.proxy import keyed, scrape
from tests.proxy.test_limits import OK, T, _metrics, _statuses


async def test_a_slow_bucket_left_idle_past_the_sweep_is_not_handed_back_full(start_gateway, backend):
    """One token per 10,000 s: after an idle hour (when idle buckets are swept) there is still
    only a third of a token, so the key stays refused until the bucket has really refilled."""
    clock = keyed.Clock()
    config = keyed.keyed_config(backend.url, plan={"throttle": T(0.0001, 1)})
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        assert await _statuses(session, url, keyed.ALICE, 2) == [OK, (429, "THROTTLED", "10000")]
        clock.advance(3601)  # past MemoryStore.IDLE_SECONDS since alice's bucket last changed
        assert await _statuses(session, url, keyed.BOB, 1) == [OK]  # any decision runs the sweep
        [(status, error_type, retry_after)] = await _statuses(session, url, keyed.ALICE, 1)
        assert (status, error_type) == (429, "THROTTLED")
        assert int(retry_after) in (6399, 6400)  # what is left of the 10,000 s
        clock.advance(6400)  # now the token is back, and only one
        assert await _statuses(session, url, keyed.ALICE, 2) == [OK, (429, "THROTTLED", "10000")]
    assert len(backend.received) == 3


async def test_a_stages_unmatched_requests_keep_their_series_across_a_reload(start_gateway):
    first = c.config(c.stage([("GET /x", c.mock())]))
    gw = await start_gateway(first)
    urls = gw.addresses.urls()
    unmatched = {"api": "shop/api-prod", "stage": "shop/prod", "route": "", "code_class": "4xx"}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(urls["public"] + "/prod/nope") as resp:
                assert resp.status == 404
        gw.swap(c.config(c.stage([("GET /x", c.mock()), ("GET /y", c.mock())])))  # the Stage stays
        async with session.get(urls["public"] + "/prod/nope") as resp:
            assert resp.status == 404
    text = await _metrics(gw)
    assert scrape.value(text, "propylon_requests_total", **unmatched) == 4
    assert scrape.value(text, "propylon_request_duration_seconds_count", **unmatched) == 4


def _keyed_by_authorizer(backend_url: str, authorizer_url: str) -> model.GatewayConfig:
    """keyed_config with ``apiKeySource: AUTHORIZER`` and a REQUEST authorizer on every route."""
    config = keyed.keyed_config(backend_url)
    authorizer = model.Authorizer(
        id="shop/fn",
        namespace="shop",
        name="fn",
        type=model.AuthorizerType.REQUEST,
        identity_source=("$request.header.X-User",),
        function=model.AuthorizerFunction(url=authorizer_url, result_ttl_seconds=0),
    )
    stage = config.stages[0]
    routes = tuple(dataclasses.replace(r, authorizer=authorizer.id) for r in stage.routes)
    api = dataclasses.replace(config.apis[0], api_key_source="AUTHORIZER")
    return dataclasses.replace(
        config, apis=(api,), stages=(dataclasses.replace(stage, routes=routes),), authorizers=(authorizer,)
    )


def _allow(usage_identifier_key: str) -> bytes:
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}
    answer = {
        "principalId": "u",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "usageIdentifierKey": usage_identifier_key,
    }
    return json.dumps(answer).encode()  # ensure_ascii: a lone surrogate goes as the escape \ud800


async def test_a_usage_identifier_key_that_is_not_text_is_an_invalid_key_not_a_500(start_gateway, backend):
    """JSON lets an authorizer answer ``"usageIdentifierKey": "\\ud800"`` (a lone surrogate, no
    character of any key a Secret can hold): that is an unknown key, 403 INVALID_API_KEY."""
    with backends.Backend(backends.fixed(_allow("\ud800"), content_type="application/json")) as authorizer:
        config = _keyed_by_authorizer(backend.url, authorizer.url)
        gw = await start_gateway(config, api_key_secret=keyed.SECRET)
        url = gw.addresses.urls()["public"] + "/prod/keyed"
        async with aiohttp.ClientSession() as session, session.get(url, headers={"X-User": "u"}) as resp:
            assert resp.status == 403, await resp.text()
            assert resp.headers["x-propylon-error-type"] == "INVALID_API_KEY"
            assert await resp.json() == {"message": "Forbidden"}
        authorizer.respond = backends.fixed(_allow(keyed.ALICE), content_type="application/json")
        async with aiohttp.ClientSession() as session, session.get(url, headers={"X-User": "u"}) as resp:
            assert resp.status == 200  # the same route with a real key: the authorizer path works
    assert len(backend.received) == 1


async def test_the_cache_familys_help_names_every_result_it_counts(start_gateway):
    """propylon_cache_total counts bypass too (DESIGN.md section 8): its HELP says so."""
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock())])))
    help_lines = [line for line in (await _metrics(gw)).splitlines() if line.startswith("# HELP propylon_cache_total ")]
    assert len(help_lines) == 1 and all(result in help_lines[0] for result in ("hit", "miss", "bypass"))
