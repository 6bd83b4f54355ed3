"""JWT expiry at its exact instant, in an in-process gateway with an injected clock and a real
issuer on loopback: RFC 7519 (4.1.4) makes a token valid only *before* ``exp`` (plus the
``clockSkewSeconds`` leeway), so at ``exp + skew`` itself it is refused, cold or cached, as
pyjwt and other verifiers a user's suite may compare with refuse it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import issuers
from tests.proxy import test_jwt as j


@pytest.fixture
def issuer() -> Iterator[issuers.Issuer]:
    server = issuers.Issuer()
    yield server
    server.stop()


@pytest.mark.parametrize("skew", [0, 30])
async def test_a_token_is_refused_at_the_instant_of_exp_plus_skew(
    start_gateway: Any, backend: Any, issuer: issuers.Issuer, skew: int
) -> None:
    kid = issuer.add_key("RSA")
    clock = j.Clock()
    gw = await j._started(start_gateway, j._config(backend, j._authorizer(issuer, skew=skew)), clock)
    t = int(clock.now)
    cached = issuer.token(kid, claims=issuer.claims(iat=t, exp=t + 100))
    clock.now = t + 100 + skew - 1  # one second before: good, and now in the token cache
    assert (await j._get(gw, cached))[0] == 200
    clock.now = t + 100 + skew  # the instant itself: no longer before exp (+ leeway)
    status, headers, body = await j._get(gw, cached)
    assert (status, headers["x-propylon-error-type"], body) == (401, "UNAUTHORIZED", {"message": "Unauthorized"})
    cold = issuer.token(kid, claims=issuer.claims(iat=t, exp=t + 100, sub="someone-else"))
    status, headers, body = await j._get(gw, cold)  # never seen: refused by the full check too
    assert (status, headers["x-propylon-error-type"], body) == (401, "UNAUTHORIZED", {"message": "Unauthorized"})
