"""Throttles and quotas through a real gateway and backend, with a clock the tests move.

Buckets are Amazon API Gateway's: ``rateLimit`` tokens per second refill a bucket of
``burstLimit``; checked plan-per-route, plan, stage-per-route or stage, gateway; then the quota.
"""

from __future__ import annotations

import datetime
import json

import aiohttp
import pytest

from propylon_config import model
from tests.proxy import keyed, scrape


def T(rate: float, burst: int) -> model.Throttle:
    return model.Throttle(rate_limit=rate, burst_limit=burst)


async def _statuses(session, url, key, n):
    out = []
    for _ in range(n):
        async with session.get(url, headers={"x-api-key": key} if key else {}) as resp:
            out.append((resp.status, resp.headers.get("x-propylon-error-type"), resp.headers.get("Retry-After")))
            await resp.read()
    return out


async def _metrics(gw) -> str:
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["admin"] + "/metrics") as resp:
        return await resp.text()


def _throttled(text: str, route: str, reason: str) -> int:
    labels = {"api": "shop/api-prod", "stage": "shop/prod", "route": route, "reason": reason}
    return int(scrape.value(text, "propylon_throttled_total", **labels))


OK = (200, None, None)


async def test_a_plan_throttles_each_key_on_its_own_and_refills_at_its_rate(start_gateway, backend):
    clock = keyed.Clock()
    config = keyed.keyed_config(backend.url, plan={"throttle": T(2, 3)})
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        assert await _statuses(session, url, keyed.ALICE, 4) == [OK, OK, OK, (429, "THROTTLED", "1")]
        assert await _statuses(session, url, keyed.BOB, 3) == [OK] * 3  # bob has his own bucket
        clock.advance(0.5)  # one token back at 2/s
        assert await _statuses(session, url, keyed.ALICE, 2) == [OK, (429, "THROTTLED", "1")]
        clock.advance(10)  # refills up to the burst, never beyond
        assert await _statuses(session, url, keyed.ALICE, 4) == [OK, OK, OK, (429, "THROTTLED", "1")]
        async with session.get(url, headers={"x-api-key": keyed.ALICE}) as resp:
            assert await resp.json() == {"message": "Too Many Requests"}
    assert _throttled(await _metrics(gw), "GET /keyed", "plan") == 4
    assert len(backend.received) == 3 + 3 + 1 + 3


async def test_a_per_route_per_key_limit_is_checked_before_the_plan_limit(start_gateway, backend):
    clock = keyed.Clock()
    plan = {
        "stages": (model.PlanStage(stage="shop/prod", route_throttles=(("GET /keyed", T(1, 1)),)),),
        "throttle": T(1, 3),
    }
    gw = await start_gateway(keyed.keyed_config(backend.url, plan=plan), api_key_secret=keyed.SECRET, clock=clock)
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        assert await _statuses(session, base + "/keyed", keyed.ALICE, 2) == [OK, (429, "THROTTLED", "1")]
        # The refused request took nothing from the plan bucket: two tokens are left there.
        assert await _statuses(session, base + "/other", keyed.ALICE, 3) == [OK, OK, (429, "THROTTLED", "1")]
    text = await _metrics(gw)
    assert (_throttled(text, "GET /keyed", "plan_route"), _throttled(text, "GET /other", "plan")) == (1, 1)


async def test_stage_route_settings_and_the_stage_default_limit_each_route(start_gateway, backend):
    clock = keyed.Clock()
    config = keyed.keyed_config(
        backend.url, stage_kwargs={"throttle": T(1, 2)}, route_settings={"GET /open": T(0.5, 1)}
    )
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        assert await _statuses(session, base + "/open", None, 2) == [OK, (429, "THROTTLED", "2")]
        # The stage default is one bucket per route, shared by every key.
        assert await _statuses(session, base + "/keyed", keyed.ALICE, 1) == [OK]
        assert await _statuses(session, base + "/keyed", keyed.BOB, 2) == [OK, (429, "THROTTLED", "1")]
        assert await _statuses(session, base + "/other", keyed.BOB, 2) == [OK, OK]
    text = await _metrics(gw)
    assert (_throttled(text, "GET /open", "route"), _throttled(text, "GET /keyed", "stage")) == (1, 1)


async def test_the_gateway_wide_limit_applies_to_every_request(start_gateway, backend):
    clock = keyed.Clock()
    config = keyed.keyed_config(backend.url, gateway_throttle=T(1, 2))
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        assert await _statuses(session, base + "/open", None, 1) == [OK]
        assert await _statuses(session, base + "/keyed", keyed.ALICE, 2) == [OK, (429, "THROTTLED", "1")]
    assert _throttled(await _metrics(gw), "GET /keyed", "gateway") == 1


async def test_a_quota_counts_only_admitted_requests_and_says_when_the_period_ends(start_gateway, backend):
    clock = keyed.Clock()
    quota = model.Quota(limit=3, period=model.QuotaPeriod.DAY)
    config = keyed.keyed_config(backend.url, plan={"throttle": T(1, 1), "quota": quota})
    gw = await start_gateway(config, api_key_secret=keyed.SECRET, clock=clock)
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            # Each second: one admitted, then one throttled that must not count toward the quota.
            assert await _statuses(session, url, keyed.ALICE, 2) == [OK, (429, "THROTTLED", "1")]
            clock.advance(1)
        seconds_left = 14 * 3600 - 3  # START is 10:00 UTC; the day ends at midnight
        assert await _statuses(session, url, keyed.ALICE, 1) == [(429, "QUOTA_EXCEEDED", str(seconds_left))]
        async with session.get(url, headers={"x-api-key": keyed.ALICE}) as resp:
            assert (resp.status, await resp.json()) == (429, {"message": "Limit Exceeded"})
        assert await _statuses(session, url, keyed.BOB, 1) == [OK]
        async with session.get(gw.addresses.urls()["admin"] + "/admin/usage/shop/basic") as resp:
            report = await resp.json()
        assert report == {
            "plan": "shop/basic",
            "period": {"start": "2026-03-11T00:00:00Z", "end": "2026-03-12T00:00:00Z"},
            "keys": {
                "alice": {"used": 3, "remaining": 0},
                "bob": {"used": 1, "remaining": 2},
                "carol": {"used": 0, "remaining": 3},
            },
        }
        assert keyed.ALICE not in json.dumps(report)
        clock.now = datetime.datetime(2026, 3, 12, 0, 0, tzinfo=datetime.UTC).timestamp()  # the next day
        assert await _statuses(session, url, keyed.ALICE, 1) == [OK]
    assert _throttled(await _metrics(gw), "GET /keyed", "quota") == 2


@pytest.mark.parametrize(
    ("period", "offset", "before", "boundary"),
    [
        # Wednesday 2026-03-11; a WEEK starting on Thursday (4) turns over on the 12th.
        (model.QuotaPeriod.WEEK, 4, (2026, 3, 11, 23, 59, 59), (2026, 3, 12)),
        (model.QuotaPeriod.WEEK, 0, (2026, 3, 14, 23, 59, 59), (2026, 3, 15)),  # Sunday
        # MONTH offset 14: periods start on the 15th.
        (model.QuotaPeriod.MONTH, 14, (2026, 3, 14, 23, 59, 59), (2026, 3, 15)),
        (model.QuotaPeriod.MONTH, 0, (2026, 3, 31, 23, 59, 59), (2026, 4, 1)),
    ],
)
async def test_quotas_reset_at_the_period_boundary(start_gateway, backend, period, offset, before, boundary):
    moment = datetime.datetime(*before, tzinfo=datetime.UTC).timestamp()
    clock = keyed.Clock(moment)
    quota = model.Quota(limit=1, period=period, offset=offset)
    gw = await start_gateway(
        keyed.keyed_config(backend.url, plan={"quota": quota}), api_key_secret=keyed.SECRET, clock=clock
    )
    url = gw.addresses.urls()["public"] + "/prod/keyed"
    async with aiohttp.ClientSession() as session:
        assert await _statuses(session, url, keyed.ALICE, 2) == [OK, (429, "QUOTA_EXCEEDED", "1")]
        clock.now = datetime.datetime(*boundary, tzinfo=datetime.UTC).timestamp()
        assert await _statuses(session, url, keyed.ALICE, 2) == [OK, (429, "QUOTA_EXCEEDED", _retry(period, boundary))]


def _retry(period: model.QuotaPeriod, boundary: tuple[int, ...]) -> str:
    start = datetime.datetime(*boundary, tzinfo=datetime.UTC)
    if period is model.QuotaPeriod.WEEK:
        end = start + datetime.timedelta(days=7)
    else:
        end = start.replace(month=start.month % 12 + 1, year=start.year + (start.month == 12))
    return str(int((end - start).total_seconds()))
