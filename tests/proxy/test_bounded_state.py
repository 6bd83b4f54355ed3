"""Issue 8, item 9: state that is keyed by what the gateway has seen stays bounded."""

from __future__ import annotations

import dataclasses

import aiohttp

from propylon_config import model
from propylon_proxy import endpoints
from tests.proxy import conftest as c


def test_failed_endpoint_marks_expire_instead_of_piling_up() -> None:
    now = [0.0]
    balancer = endpoints.Balancer(failure_seconds=10.0, clock=lambda: now[0])
    for i in range(5000):  # pods come and go: every address fails once, a second apart
        now[0] = float(i)
        balancer.mark_failed(model.EndpointAddress(address=f"10.0.{i // 250}.{i % 250}", port=8080))
    assert len(balancer) <= 300


def test_round_robin_positions_of_removed_services_are_forgotten() -> None:
    balancer = endpoints.Balancer()
    address = (model.EndpointAddress(address="10.0.0.1", port=80),)
    for i in range(100):
        balancer.pick(f"shop/svc-{i}:80", address)
    balancer.retain({"shop/svc-7:80"})
    assert len(balancer) == 1


async def test_metric_series_of_a_removed_route_go_with_it(start_gateway):
    both = c.config(c.stage([("GET /kept", c.mock()), ("GET /gone", c.mock())]))
    gw = await start_gateway(both)
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        for path in ("/prod/kept", "/prod/gone", "/nowhere"):
            async with session.get(urls["public"] + path) as resp:
                await resp.read()
        gw.swap(c.config(c.stage([("GET /kept", c.mock())])))
        async with session.get(urls["admin"] + "/metrics") as resp:
            text = await resp.text()
    assert 'route="GET /kept"' in text
    assert 'route="GET /gone"' not in text
    assert 'route=""' in text  # unmatched requests keep their series


async def test_a_websocket_connects_series_survive_a_reload(start_gateway):
    connect = model.Route(
        id="shop/prod/$connect", route_key="$connect", method="$connect", path="", segments=(), integration=c.mock()
    )
    default = model.Route(
        id="shop/prod/$default", route_key="$default", method="$default", path="", segments=(), integration=c.mock()
    )
    ws_stage = dataclasses.replace(c.stage([]), routes=(connect, default))
    first = c.config(ws_stage)
    api = dataclasses.replace(first.apis[0], protocol=model.Protocol.WEBSOCKET)
    first = dataclasses.replace(first, apis=(api,))
    gw = await start_gateway(first)
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(urls["public"] + "/prod") as ws:
            await ws.close()
        gw.swap(dataclasses.replace(first, version="second"))  # a reload that keeps the stage
        async with session.get(urls["admin"] + "/metrics") as resp:
            text = await resp.text()
    assert 'route="$connect"' in text
