"""First contact: a mock route, a proxied route and a 404, through a real listener."""

from __future__ import annotations

import dataclasses

import aiohttp

from propylon_proxy import replies, steps
from tests.proxy import conftest as c


async def test_mock_proxy_and_not_found(start_gateway, backend):
    snapshot = c.config(
        c.stage(
            [
                ("GET /hello", c.mock(body='{"id":"$context.requestId","v":"${stageVariables.color}"}')),
                ("ANY /echo/{proxy+}", c.http_proxy(backend.url + "/up/{proxy}")),
            ],
            variables=(("color", "blue"),),
        )
    )
    gw = await start_gateway(snapshot)
    base = gw.addresses.urls()["public"]
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/prod/hello") as resp:
            body = await resp.json()
            assert resp.status == 200
            assert body == {"id": resp.headers["x-request-id"], "v": "blue"}
        async with session.post(base + "/prod/echo/a/b?x=1", data=b"payload") as resp:
            assert resp.status == 200
            seen = await resp.json()
            assert seen["target"] == "/up/a/b?x=1"
            assert seen["body"] == "payload"
        async with session.get(base + "/prod/nothing") as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "Not Found"}
            assert resp.headers["x-propylon-error-type"] == "RESOURCE_NOT_FOUND"
            assert resp.headers["x-request-id"]


async def test_a_chain_step_can_refuse_before_the_integration(start_gateway, backend):
    """The slot later features (authorizers, keys, throttling, validation) plug into."""
    gw = await start_gateway(c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))])))
    seen = []

    async def throttle(ctx):
        seen.append((ctx.match.route.route_key, ctx.request_id))
        return replies.refuse("THROTTLED")

    plan = gw.holder.current
    route_plan = plan.routes["shop/prod/GET /x"]
    plan.routes[route_plan.route.id] = dataclasses.replace(
        route_plan, chain=dataclasses.replace(route_plan.chain, steps=(steps.BeforeOnly(name="t", check=throttle),))
    )
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["public"] + "/prod/x") as resp:
        assert resp.status == 429
        assert await resp.json() == {"message": "Too Many Requests"}
        assert resp.headers["Retry-After"] == "1"
        assert seen == [("GET /x", resp.headers["x-request-id"])]
    assert backend.received == []
