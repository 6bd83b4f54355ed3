"""The JWT verifier on its own: limits no network request can reach (a token over 16 KiB does
not fit the 16 KiB header block, so the listener answers 431 first) and claim shapes."""

from __future__ import annotations

import hashlib
import time

from propylon_config import model
from propylon_proxy.authorizers import jwt as verifying
from tests import issuers

SECRET = b"unit-test-shared-secret-32-bytes"


def _verifier(**overrides: object) -> verifying.Verifier:
    settings = model.JwtSettings(issuer="internal", algorithms=("HS256",), **overrides)  # type: ignore[arg-type]
    return verifying.Verifier(settings, keys=None, secret=SECRET, clock=time.time)


def _claims(**extra: object) -> dict[str, object]:
    return {"iss": "internal", "sub": "s", "exp": int(time.time()) + 60, **extra}


def _padded(size: int) -> str:
    """A correctly signed token of exactly ``size`` characters."""
    base = len(issuers.hs_token(SECRET, _claims(pad="")))
    pad = "x" * (size - base)
    while True:  # base64 grows in steps of four: adjust until the length is exact
        token = issuers.hs_token(SECRET, _claims(pad=pad))
        if len(token) == size:
            return token
        pad = pad[:-1] if len(token) > size else pad + "x"


async def test_a_token_over_16_kib_is_refused_before_parsing_and_one_at_the_limit_is_not() -> None:
    verifier = _verifier()
    at_limit = _padded(verifying.MAX_TOKEN_BYTES)
    assert isinstance(await verifier.verify(at_limit), verifying.Verified)
    assert await verifier.verify(_padded(verifying.MAX_TOKEN_BYTES + 4)) == "UNAUTHORIZED"


async def test_claim_shapes() -> None:
    verifier = _verifier(audience=("a",))
    ok = await verifier.verify(issuers.hs_token(SECRET, _claims(aud="a", scp="x y")))
    assert isinstance(ok, verifying.Verified) and ok.scopes == ("x", "y") and ok.principal == "s"
    for bad in (
        _claims(aud="a", exp="tomorrow"),  # exp must be a number
        _claims(aud="a", exp=True),
        _claims(aud="a", sub=42),  # a principal is a string
        _claims(aud="a", scope=7),  # scopes are a string or a list of strings
        _claims(aud=["b", 3]),
        _claims(aud="a", iss="internal/"),  # iss must match exactly
    ):
        assert await verifier.verify(issuers.hs_token(SECRET, bad)) == "UNAUTHORIZED", bad
    crit = issuers.hs_token(SECRET, _claims(aud="a"), headers={"crit": ["b64"], "b64": False})
    assert await verifier.verify(crit) == "UNAUTHORIZED"
    assert await verifier.verify(issuers.hs_token(SECRET, _claims(aud="a"), alg="HS512")) == "UNAUTHORIZED"


def test_bearer_prefix() -> None:
    assert verifying.bearer_token("Bearer abc") == "abc"
    assert verifying.bearer_token("bearer  abc ") == "abc"
    assert verifying.bearer_token("abc") == "abc"


async def test_the_cache_holds_digests_and_rechecks_nbf() -> None:
    clock = [time.time()]
    settings = model.JwtSettings(issuer="internal", algorithms=("HS256",), clock_skew_seconds=0)
    verifier = verifying.Verifier(settings, keys=None, secret=SECRET, clock=lambda: clock[0])
    now = int(clock[0])
    token = issuers.hs_token(SECRET, _claims(nbf=now, exp=now + 60))
    assert isinstance(await verifier.verify(token), verifying.Verified)
    keys = list(verifier._cache.keys())
    assert keys and all(isinstance(k, bytes) and len(k) == 32 for k in keys)  # SHA-256, not the token
    assert token not in repr(list(verifier._cache.items()))
    clock[0] = now - 5  # before nbf: refused even though it is cached
    assert await verifier.verify(token) == "UNAUTHORIZED"


async def test_the_cache_is_bounded_and_evicts_the_least_recently_used(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(verifying, "CACHE_ENTRIES", 3)
    verifier = _verifier()
    tokens = [issuers.hs_token(SECRET, _claims(jti=str(i))) for i in range(4)]
    digests = [hashlib.sha256(t.encode()).digest() for t in tokens]
    for token in tokens[:3]:
        assert isinstance(await verifier.verify(token), verifying.Verified)
    assert isinstance(await verifier.verify(tokens[0]), verifying.Verified)  # a hit: now the most recent
    assert isinstance(await verifier.verify(tokens[3]), verifying.Verified)  # full: evicts tokens[1]
    assert list(verifier._cache) == [digests[2], digests[0], digests[3]]


async def test_a_header_verdict_is_kept_and_a_refused_header_stays_refused() -> None:
    """The header cache (one JSON parse per header segment) decides exactly as a fresh parse."""
    verifier = _verifier()
    refused = [
        issuers.hs_token(SECRET, _claims(), headers={"crit": ["exp"]}),
        issuers.hs_token(SECRET, _claims(), alg="HS512"),  # not this Authorizer's algorithm
        issuers.none_token(_claims()),
        issuers.hs_token(SECRET, _claims(), headers={"kid": 7}),
    ]
    for _ in range(2):  # the second pass is answered from the kept verdicts
        for token in refused:
            assert await verifier.verify(token) == "UNAUTHORIZED", token
        for i in range(3):
            assert isinstance(await verifier.verify(issuers.hs_token(SECRET, _claims(jti=str(i)))), verifying.Verified)
    assert len(verifier._headers) == 5  # four refused headers and the good one, each parsed once
    # A kept header does not vouch for the rest of the token: a bad signature or payload fails.
    good = issuers.hs_token(SECRET, _claims(jti="x"))
    assert await verifier.verify(good[:-4] + "AAAA") == "UNAUTHORIZED"
    head, _, signature = good.split(".")
    assert await verifier.verify(f"{head}.!!!!.{signature}") == "UNAUTHORIZED"
    for broken in ("", "a", "a.b", "é.b.c", "..", good + ".x"):
        assert await verifier.verify(broken) == "UNAUTHORIZED", broken


async def test_the_header_table_is_bounded() -> None:
    verifier = _verifier()
    for i in range(verifying._HEADER_ENTRIES * 3):  # an attacker's distinct headers
        token = issuers.hs_token(SECRET, _claims(), headers={"x": i})
        assert isinstance(await verifier.verify(token), verifying.Verified)
        assert len(verifier._headers) <= verifying._HEADER_ENTRIES
