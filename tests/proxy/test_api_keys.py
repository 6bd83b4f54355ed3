"""API keys in front of a real backend: who gets in, and what everyone else gets (403)."""

from __future__ import annotations

import dataclasses
import io
import json

import aiohttp
from aiohttp import test_utils

from propylon_proxy import api_keys, context, plans, steps
from tests.proxy import conftest as c
from tests.proxy import keyed


async def _get(session: aiohttp.ClientSession, url: str, key: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"x-api-key": key} if key is not None else {}
    async with session.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_only_a_valid_enabled_key_of_a_plan_covering_the_stage_gets_in(start_gateway, backend):
    gw = await start_gateway(keyed.keyed_config(backend.url), api_key_secret=keyed.SECRET)
    url = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        for name, value in [
            ("missing", None),
            ("empty", ""),
            ("unknown", "not-a-key-of-anyone-0123456789"),
            ("disabled", keyed.CAROL),
            ("another plan's", keyed.DAVE),
            ("a prefix", keyed.ALICE[:-1]),
        ]:
            status, headers, body = await _get(session, url + "/keyed", value)
            assert (status, headers["x-propylon-error-type"], body) == (
                403,
                "INVALID_API_KEY",
                '{"message": "Forbidden"}',
            ), name
            if value:
                assert value not in body and value not in str(headers)
        assert (await _get(session, url + "/keyed", keyed.ALICE))[0] == 200
        assert (await _get(session, url + "/other", keyed.BOB))[0] == 200
        assert (await _get(session, url + "/open"))[0] == 200  # no key needed
    assert [r["target"] for r in backend.received] == ["/keyed", "/other", "/open"]
    # The backend still gets the header (as Amazon API Gateway passes it on).
    assert ["x-api-key", keyed.ALICE] in backend.received[0]["headers"]


async def test_a_proxy_with_another_hashing_secret_accepts_no_key(start_gateway, backend):
    config = keyed.keyed_config(backend.url)
    gw = await start_gateway(config, api_key_secret=b"some-other-install-secret-012345")
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        assert (await _get(session, url, keyed.ALICE))[0] == 403
    assert backend.received == []


async def test_the_access_log_names_the_key_id_never_the_key(start_gateway, backend):
    stream = io.StringIO()
    config = keyed.keyed_config(backend.url, stage_kwargs={"access_log": True})
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, log_stream=stream)
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        await _get(session, url, keyed.ALICE)
        await _get(session, url, keyed.CAROL)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["status"], line["apiKeyId"]) for line in lines] == [(200, "alice"), (403, None)]
    assert keyed.ALICE not in stream.getvalue() and keyed.CAROL not in stream.getvalue()


def _context(plan: plans.Plan, usage_identifier_key: str | None) -> context.RequestContext:
    request = test_utils.make_mocked_request("GET", "/prod/keyed", headers={"x-api-key": keyed.BOB})
    ctx = context.RequestContext(
        request=request, plan=plan, request_id="r", peer="", source_ip="", started=0.0, started_wall=0.0
    )
    ctx.usage_identifier_key = usage_identifier_key
    return ctx


async def test_authorizer_key_source_reads_the_usage_identifier_key_not_the_header(start_gateway, backend):
    """``apiKeySource: AUTHORIZER``: the key is what the authorizer step put in
    ``ctx.usage_identifier_key``; the x-api-key header is not looked at."""
    config = keyed.keyed_config(backend.url)
    api = dataclasses.replace(config.apis[0], api_key_source="AUTHORIZER")
    config = dataclasses.replace(config, apis=(api,))
    gw = await start_gateway(None, api_key_secret=keyed.SECRET)
    plan = gw.swap(config)
    stage = config.stages[0]
    route = next(r for r in stage.routes if r.route_key == "GET /keyed")
    setup = steps.RouteSetup(route=route, stage=stage, api=api, config=config, runtime=gw.runtime)
    step = api_keys.step_for(setup)
    assert step is not None
    refused = await step.before(_context(plan, None))  # no authorizer data: the header is not a fallback
    assert refused is not None and refused.error_type == "INVALID_API_KEY"
    ctx = _context(plan, keyed.ALICE)
    assert await step.before(ctx) is None
    assert (ctx.api_key_id, ctx.usage_plan) == ("alice", "shop/basic")
    refused = await step.before(_context(plan, keyed.DAVE))
    assert refused is not None and refused.error_type == "INVALID_API_KEY"


async def test_a_route_without_api_key_required_has_no_key_step(start_gateway):
    route = c.route("GET /x", c.mock())
    stage = dataclasses.replace(c.stage([]), routes=(route,))
    config = c.config(stage)
    gw = await start_gateway(None)
    setup = steps.RouteSetup(route=route, stage=stage, api=config.apis[0], config=config, runtime=gw.runtime)
    assert api_keys.step_for(setup) is None
