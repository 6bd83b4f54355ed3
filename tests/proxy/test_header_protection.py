"""Issue 8, items 4 and 5: headers the gateway owns stay the gateway's, under any spelling, and
a trusted load balancer's facts survive (DESIGN.md section 8, forwarding headers)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from propylon_config import model
from propylon_proxy import mappings
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)

A, T = model.MappingAction, model.MappingTarget


def _headers(record: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in record["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


async def test_a_mapped_header_drops_the_clients_underscore_twin(start_gateway, backend):
    integration = c.http_proxy(
        backend.url + "/x",
        request_parameters=(model.ParameterMapping(action=A.OVERWRITE, target=T.HEADER, name="X-User", value="'gw'"),),
    )
    gw = await start_gateway(c.config(c.stage([("GET /x", integration)])))
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            gw.addresses.urls()["public"] + "/prod/x", headers={"X_User": "evil", "x-user": "also-evil"}
        ) as resp,
    ):
        assert resp.status == 200
    seen = _headers(backend.received[-1])
    assert seen["x-user"] == ["gw"]
    assert "x_user" not in seen  # a backend folding "_" into "-" would have read "evil"


async def test_client_forwarding_headers_of_every_name_are_dropped(start_gateway, backend):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))])))
    sent = {"X-Forwarded-Port": "1", "X-Forwarded-Prefix": "/admin", "X_Forwarded_Prefix": "/admin", "X_Real_IP": "1"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.addresses.urls()["public"] + "/prod/x", headers=sent) as resp,
    ):
        assert resp.status == 200
    seen = _headers(backend.received[-1])
    assert not {"x-forwarded-port", "x-forwarded-prefix", "x_forwarded_prefix", "x_real_ip"} & set(seen)


@pytest.mark.parametrize("name", ["X-Forwarded-Port", "X-Forwarded-Prefix", "X_Real_IP", "X_Forwarded_For", "Host"])
def test_a_mapping_cannot_set_a_gateway_owned_name_under_any_spelling(name: str) -> None:
    ctx = mappings.Context(
        headers=[], query="", path_params={}, request_id="r", stage="prod", source_ip="1.1.1.1", stage_variables={}
    )
    mapping = model.ParameterMapping(action=A.OVERWRITE, target=T.HEADER, name=name, value="'spoofed'")
    upstream = mappings.apply_request([mapping], ctx, headers=[("X-Forwarded-For", "1.2.3.4")], path="/", query="")
    assert upstream.headers == [("X-Forwarded-For", "1.2.3.4")]


async def test_a_trusted_proxys_scheme_is_kept(start_gateway, backend):
    snapshot = c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))]))
    trusting = await start_gateway(snapshot, trusted="127.0.0.0/8")
    wary = await start_gateway(snapshot)
    async with aiohttp.ClientSession() as session:
        for gw in (trusting, wary):
            url = gw.addresses.urls()["public"] + "/prod/x"
            async with session.get(url, headers={"X-Forwarded-Proto": "https"}) as resp:
                assert resp.status == 200
    trusted_seen, wary_seen = (_headers(r) for r in backend.received[-2:])
    assert trusted_seen["x-forwarded-proto"] == ["https"]
    assert wary_seen["x-forwarded-proto"] == ["http"]


async def test_a_backends_error_type_header_never_reaches_the_client(start_gateway):
    async def lying(_: web.BaseRequest) -> web.Response:
        return web.Response(status=500, text="boom", headers={"x-propylon-error-type": "THROTTLED"})

    runner = web.ServerRunner(web.Server(lying))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        gw = await start_gateway(c.config(c.stage([("GET /x", c.http_proxy(f"http://127.0.0.1:{port}/x"))])))
        async with (
            aiohttp.ClientSession() as session,
            session.get(gw.addresses.urls()["public"] + "/prod/x") as resp,
        ):
            assert resp.status == 500
            assert await resp.text() == "boom"
            assert "x-propylon-error-type" not in resp.headers
    finally:
        await runner.cleanup()


async def test_no_listener_advertises_versions(start_gateway):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock())])))
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        for url in (urls["admin"] + "/healthz", urls["admin"] + "/nope", urls["public"] + "/prod/x"):
            async with session.get(url) as resp:
                assert resp.headers["Server"] == "propylon", url
