"""The JWT authorizer in an in-process gateway with an injected clock, against a real issuer
(keys generated here, a JWKS served over HTTP on loopback): time rules, key rotation and the
refetch limit, bursts of unknown kids, JWKS outages and stalls, Cache-Control refresh, swaps."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from propylon_config import model
from propylon_proxy.authorizers import jwks
from tests import issuers
from tests.proxy import conftest as c


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[issuers.Issuer]:
    server = issuers.Issuer()
    yield server
    server.stop()


def _authorizer(issuer: issuers.Issuer, *, discovered: bool = False, skew: int = 60) -> model.Authorizer:
    return model.Authorizer(
        id="shop/idp",
        namespace="shop",
        name="idp",
        type=model.AuthorizerType.JWT,
        jwt=model.JwtSettings(
            issuer=issuer.issuer,
            audience=("my-client",),
            jwks_uri=None if discovered else issuer.url + "/jwks.json",
            algorithms=("RS256", "ES256", "EdDSA"),
            clock_skew_seconds=skew,
        ),
    )


def _config(backend: c.Backend, authorizer: model.Authorizer, version: str = "v1") -> model.GatewayConfig:
    mappings = (
        model.ParameterMapping(
            action=model.MappingAction.OVERWRITE,
            target=model.MappingTarget.HEADER,
            name="X-User",
            value="$context.authorizer.claims.sub",
        ),
    )
    guarded = dataclasses.replace(
        c.route("GET /me", c.http_proxy(backend.url + "/me", request_parameters=mappings)),
        authorizer=authorizer.id,
    )
    stage = dataclasses.replace(c.stage([]), routes=(guarded,))
    return dataclasses.replace(c.config(stage, authorizers=(authorizer,)), version=version)


async def _started(start_gateway: Any, config: model.GatewayConfig, clock: Clock) -> Any:
    gw = await start_gateway(None)
    gw.runtime.clock = clock
    gw.swap(config)
    return gw


async def _get(gw: Any, token: str | None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = gw.addresses.urls()["public"] + "/prod/me"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_exp_nbf_and_iat_follow_the_injected_clock_with_skew(start_gateway, backend, issuer):
    kid = issuer.add_key("EC")
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer, skew=60)), clock)
    t = int(clock.now)
    token = issuer.token(kid, claims=issuer.claims(iat=t, exp=t + 100))
    status, _, body = await _get(gw, token)
    assert status == 200
    assert dict(body["headers"])["X-User"] == "user-42"
    clock.now = t + 100 + 59  # inside the skew: still good (from the token cache)
    assert (await _get(gw, token))[0] == 200
    clock.now = t + 100 + 61  # past exp + skew: refused, cached or not
    status, headers, body = await _get(gw, token)
    assert (status, headers["x-propylon-error-type"], body) == (401, "UNAUTHORIZED", {"message": "Unauthorized"})
    clock.now = t
    later = issuer.token(kid, claims=issuer.claims(iat=t, nbf=t + 500, exp=t + 3600))
    assert (await _get(gw, later))[0] == 401  # not yet valid, and a refusal is never cached
    clock.now = t + 500 - 59
    assert (await _get(gw, later))[0] == 200
    clock.now = t
    future = issuer.token(kid, claims=issuer.claims(iat=t + 120, exp=t + 3600))
    assert (await _get(gw, future))[0] == 401  # issued in the future, past the skew


async def test_a_rotated_key_is_fetched_once_then_unknown_kids_wait_30_seconds(start_gateway, backend, issuer):
    first = issuer.add_key("RSA")
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    assert (await _get(gw, issuer.token(first)))[0] == 200
    assert issuer.fetches == 1
    rotated = issuer.add_key("EC")  # published later: the first unknown kid refetches at once
    assert (await _get(gw, issuer.token(rotated)))[0] == 200
    assert issuer.fetches == 2
    again = issuer.add_key("OKP")  # within 30 s of that refetch: no fetch, refused
    assert (await _get(gw, issuer.token(again)))[0] == 401
    assert issuer.fetches == 2
    clock.now += 31
    assert (await _get(gw, issuer.token(again)))[0] == 200
    assert issuer.fetches == 3


async def test_a_burst_of_unknown_kids_shares_one_fetch(start_gateway, backend, issuer):
    kid = issuer.add_key("EC")
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    assert (await _get(gw, issuer.token(kid)))[0] == 200
    key = issuer.keys[kid][1]
    tokens = [issuers.jwt.encode(issuer.claims(), key, algorithm="ES256", headers={"kid": f"random-{i}"})
              for i in range(1000)]
    url = gw.addresses.urls()["public"] + "/prod/me"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

        async def one(token: str) -> int:
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(t) for t in tokens))
    assert set(statuses) == {401}
    assert issuer.fetches <= 2  # the first fetch, and at most one refetch for the whole burst


async def test_an_outage_after_the_first_fetch_keeps_the_keys(start_gateway, backend, issuer):
    kid = issuer.add_key("RSA")
    issuer.cache_control = "max-age=120"
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    assert (await _get(gw, issuer.token(kid)))[0] == 200
    fetched = issuer.fetches
    issuer.mode = "down"
    clock.now += 121  # the key set has expired: a refresh is tried in the background and fails
    for _ in range(3):
        fresh = issuer.token(kid, claims=issuer.claims(jti=str(clock.now), exp=int(clock.now) + 60))
        assert (await _get(gw, fresh))[0] == 200
        await asyncio.sleep(0)  # let the background refresh run
    key_set = gw.runtime.resources._items[f"jwks {issuer.issuer} {issuer.url}/jwks.json"]
    for _ in range(100):
        if key_set._inflight is None:
            break
        await asyncio.sleep(0.01)
    assert issuer.fetches == fetched  # 503s are not counted by the issuer: only answered JWKS
    issuer.mode = "up"
    clock.now += jwks.RETRY_WITH_KEYS + 1
    assert (await _get(gw, issuer.token(kid, claims=issuer.claims(exp=int(clock.now) + 60))))[0] == 200
    for _ in range(100):
        if issuer.fetches > fetched:
            break
        await asyncio.sleep(0.01)
    assert issuer.fetches == fetched + 1  # max-age honoured: refreshed once the outage is over


async def test_never_fetched_is_a_500_authorizer_failure_until_the_jwks_answers(start_gateway, backend, issuer):
    kid = issuer.add_key("RSA")
    issuer.mode = "down"
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    status, headers, body = await _get(gw, issuer.token(kid))
    assert (status, headers["x-propylon-error-type"], body) == (
        500,
        "AUTHORIZER_FAILURE",
        {"message": "Internal Server Error"},
    )
    issuer.mode = "up"
    clock.now += jwks.RETRY_WITHOUT_KEYS + 0.1
    assert (await _get(gw, issuer.token(kid)))[0] == 200
    assert backend.received and len(backend.received) == 1


async def test_a_stalled_jwks_fails_the_request_at_its_timeout_instead_of_hanging(start_gateway, backend, issuer):
    kid = issuer.add_key("RSA")
    issuer.mode = "stall"
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    # The client gives up long after the gateway's 1.5 s fetch timeout; the answer comes first.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        url = gw.addresses.urls()["public"] + "/prod/me"
        async with session.get(url, headers={"Authorization": f"Bearer {issuer.token(kid)}"}) as resp:
            assert resp.status == 500
            assert resp.headers["x-propylon-error-type"] == "AUTHORIZER_FAILURE"


async def test_discovery_finds_the_jwks_and_a_foreign_issuer_in_it_is_refused(start_gateway, backend, issuer):
    kid = issuer.add_key("OKP")
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer, discovered=True)), clock)
    assert (await _get(gw, issuer.token(kid)))[0] == 200
    assert issuer.discoveries == 1 and issuer.fetches == 1

    impostor = issuers.Issuer(issuer="https://someone-else.example")
    try:
        # Its discovery document names another issuer than the one the Authorizer trusts.
        settings = dataclasses.replace(_authorizer(impostor, discovered=True).jwt, issuer=impostor.url)
        authorizer = dataclasses.replace(_authorizer(impostor, discovered=True), id="shop/other", jwt=settings)
        gw2 = await _started(start_gateway, _config(backend, authorizer), Clock())
        other = impostor.add_key("RSA")
        status, headers, _ = await _get(gw2, impostor.token(other, claims=impostor.claims(iss=impostor.url)))
        assert (status, headers["x-propylon-error-type"]) == (500, "AUTHORIZER_FAILURE")
        assert impostor.fetches == 0
    finally:
        impostor.stop()


async def test_a_plan_swap_keeps_the_key_set_and_the_warm_tokens(start_gateway, backend, issuer):
    kid = issuer.add_key("RSA")
    clock = Clock()
    authorizer = _authorizer(issuer)
    gw = await _started(start_gateway, _config(backend, authorizer), clock)
    token = issuer.token(kid)
    assert (await _get(gw, token))[0] == 200
    gw.swap(_config(backend, authorizer, version="v2"))
    issuer.mode = "down"  # nothing may need the JWKS now: keys and the verified token survived
    assert (await _get(gw, token))[0] == 200
    assert issuer.fetches == 1


async def _refreshed(gw: Any, issuer: issuers.Issuer) -> jwks.KeySet:
    """The route's key set, once any background refresh it started has landed."""
    key_set: jwks.KeySet = gw.runtime.resources._items[f"jwks {issuer.issuer} {issuer.url}/jwks.json"]
    for _ in range(200):
        if key_set._inflight is None:
            break
        await asyncio.sleep(0.01)
    return key_set


async def test_a_cached_token_is_refused_once_a_refresh_drops_its_key(start_gateway, backend, issuer):
    revoked = issuer.add_key("RSA")
    issuer.cache_control = "max-age=60"
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    token = issuer.token(revoked, claims=issuer.claims(exp=int(clock.now) + 3600))
    assert (await _get(gw, token))[0] == 200
    assert (await _get(gw, token))[0] == 200  # warm: from the cache, no fetch
    assert issuer.fetches == 1
    # The issuer revokes the key and publishes another; only cached tokens arrive meanwhile.
    issuer.published.remove(revoked)
    successor = issuer.add_key("EC")
    clock.now += 61  # past max-age: the cached token's lookup starts the refresh
    assert (await _get(gw, token))[0] == 200  # decided on the keys in force until it lands
    key_set = await _refreshed(gw, issuer)
    assert issuer.fetches == 2 and key_set.generation == 2
    status, headers, _ = await _get(gw, token)  # verified again: its kid is no longer published
    assert (status, headers["x-propylon-error-type"]) == (401, "UNAUTHORIZED")
    assert (await _get(gw, token))[0] == 401  # and the refusal is not cached as a success
    assert (await _get(gw, issuer.token(successor)))[0] == 200


async def test_a_refresh_with_the_same_keys_keeps_cached_tokens_warm(start_gateway, backend, issuer):
    kid = issuer.add_key("RSA")
    issuer.cache_control = "max-age=60"
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer)), clock)
    token = issuer.token(kid)
    assert (await _get(gw, token))[0] == 200
    clock.now += 61
    assert (await _get(gw, token))[0] == 200
    key_set = await _refreshed(gw, issuer)
    assert issuer.fetches == 2 and key_set.generation == 1  # the same keys: nothing to re-verify
    issuer.mode = "down"  # a re-verification would still pass (keys kept), but none is needed
    assert (await _get(gw, token))[0] == 200


async def test_an_expired_token_is_refused_while_cached_and_never_re_cached(start_gateway, backend, issuer):
    kid = issuer.add_key("EC")
    clock = Clock()
    gw = await _started(start_gateway, _config(backend, _authorizer(issuer, skew=0)), clock)
    t = int(clock.now)
    token = issuer.token(kid, claims=issuer.claims(iat=t, exp=t + 30))
    assert (await _get(gw, token))[0] == 200
    clock.now = t + 31
    assert (await _get(gw, token))[0] == 401  # cached, but expired
    clock.now = t + 10  # the clock going back does not revive it from the cache: verified again
    assert (await _get(gw, token))[0] == 200
