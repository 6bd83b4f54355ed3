"""Routes whose security settings this version cannot enforce fail closed, never open.

An Authorizer (not built yet) answers 500; a route that requires an API key in a snapshot
with no usage plans has no key that could be valid: 403 whatever is sent. The authorizer
check comes first."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from tests.proxy import conftest as c


@pytest.mark.parametrize(
    ("settings", "status", "error_type"),
    [
        ({"authorizer": "shop/cognito"}, 500, "AUTHORIZER_CONFIGURATION_ERROR"),
        ({"api_key_required": True}, 403, "INVALID_API_KEY"),
        ({"authorizer": "shop/cognito", "api_key_required": True}, 500, "AUTHORIZER_CONFIGURATION_ERROR"),
    ],
)
async def test_unenforceable_security_refuses_every_request(start_gateway, backend, settings, status, error_type):
    open_route = c.route("GET /open", c.http_proxy(backend.url + "/open"))
    guarded = dataclasses.replace(c.route("GET /guarded", c.http_proxy(backend.url + "/guarded")), **settings)
    stage = dataclasses.replace(c.stage([]), routes=(guarded, open_route))
    gw = await start_gateway(c.config(stage))
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"x-api-key": "k" * 40, "Authorization": "Bearer whatever"}):
            async with session.get(base + "/guarded", headers=headers) as resp:
                assert resp.status == status
                assert resp.headers["x-propylon-error-type"] == error_type
        async with session.get(base + "/open") as resp:
            assert resp.status == 200
    assert [r["target"] for r in backend.received] == ["/open"]
