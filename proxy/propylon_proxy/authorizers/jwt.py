"""Verifying a JWT the way DESIGN.md sections 1 and 8 ("JWT") and issue 9 fix it.

Signatures are pyjwt's (on ``cryptography``); this module decides everything around them:

- the token is the identity source value with an optional ``Bearer `` prefix; over 16 KiB it
  is refused before any parsing;
- ``alg`` must be one of the Authorizer's algorithms (``none`` never is); HS* only with a
  ``secretRef`` and then only HS*, so an RSA public key can never be used as an HMAC secret;
- any ``crit`` header is refused (no extension is implemented); ``jku``, ``x5u`` and ``jwk``
  are never read: keys come from the configured JWKS (``jwks``) or the sealed secret;
- ``iss`` must equal the issuer; ``aud`` must contain one of ``audience`` (or, without
  ``aud``, ``client_id`` must be one); ``exp`` is required; ``exp``, ``nbf`` and ``iat`` are
  checked with ``clockSkewSeconds`` against the runtime's injected clock;
- a verified token is cached until its ``exp`` (bounded LRU), so a warm token costs a
  dictionary lookup, not a signature check. Scopes are checked per route, after the cache.

Outcomes are ``Verified`` or one of the refusal types; nothing here logs a token or a secret.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from typing import Any

import cachetools
import jwt

from propylon_config import model
from propylon_proxy import gateway_responses
from propylon_proxy.authorizers import jwks

MAX_TOKEN_BYTES = 16 * 1024
CACHE_ENTRIES = 10_000
SHARED_SECRET = frozenset({"HS256", "HS384", "HS512"})
# Time and audience are checked here (with the injected clock); pyjwt checks the signature only.
_SIGNATURE_ONLY: dict[str, Any] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "require": [],
}


@dataclasses.dataclass(frozen=True, slots=True)
class Verified:
    principal: str | None  # sub
    claims: Mapping[str, Any]  # read-only: the same object is shared by every request of the token
    scopes: tuple[str, ...]
    expires: float  # exp


Outcome = Verified | str  # a Verified token, or the gateway-response type to refuse with


class Verifier:
    """One JWT Authorizer's checks and its verified-token cache."""

    def __init__(
        self,
        settings: model.JwtSettings,
        *,
        keys: jwks.KeySet | None,
        secret: bytes | None,
        clock: Callable[[], float],
    ) -> None:
        self._issuer = settings.issuer
        self._audience = frozenset(settings.audience)
        self._skew = float(settings.clock_skew_seconds)
        self._keys = keys
        self._secret = secret
        if secret is not None:
            self._algorithms = frozenset(a for a in settings.algorithms if a in SHARED_SECRET)
        else:
            self._algorithms = frozenset(a for a in settings.algorithms if a not in SHARED_SECRET and a != "none")
        self._clock = clock
        self._cache: cachetools.LRUCache[str, Verified] = cachetools.LRUCache(maxsize=CACHE_ENTRIES)

    async def verify(self, token: str) -> Outcome:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if now <= cached.expires + self._skew:
                return cached
            self._cache.pop(token, None)
            return gateway_responses.UNAUTHORIZED
        if len(token) > MAX_TOKEN_BYTES:
            return gateway_responses.UNAUTHORIZED
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            return gateway_responses.UNAUTHORIZED
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms or "crit" in header:
            return gateway_responses.UNAUTHORIZED
        if kid is not None and not isinstance(kid, str):
            return gateway_responses.UNAUTHORIZED
        candidates: tuple[Any, ...]
        if self._secret is not None:
            candidates = (self._secret,)
        else:
            assert self._keys is not None
            try:
                candidates = tuple(k.key for k in await self._keys.keys_for(kid, alg))
            except jwks.KeysUnavailable:
                return gateway_responses.AUTHORIZER_FAILURE
        claims = _signed_claims(token, candidates, alg)
        if claims is None:
            return gateway_responses.UNAUTHORIZED
        verified = self._check(claims, self._clock())
        if verified is None:
            return gateway_responses.UNAUTHORIZED
        self._cache[token] = verified
        return verified

    def _check(self, claims: dict[str, Any], now: float) -> Verified | None:
        if claims.get("iss") != self._issuer:
            return None
        exp = _number(claims.get("exp"))
        if exp is None or now > exp + self._skew:
            return None
        if "nbf" in claims:
            nbf = _number(claims["nbf"])
            if nbf is None or now + self._skew < nbf:
                return None
        if "iat" in claims:
            iat = _number(claims["iat"])
            if iat is None or iat > now + self._skew:
                return None
        if self._audience and not self._audience_matches(claims):
            return None
        sub = claims.get("sub")
        if sub is not None and not isinstance(sub, str):
            return None
        scopes = _scopes(claims)
        if scopes is None:
            return None
        return Verified(principal=sub, claims=types.MappingProxyType(claims), scopes=scopes, expires=exp)

    def _audience_matches(self, claims: dict[str, Any]) -> bool:
        if "aud" in claims:
            aud = claims["aud"]
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            return any(isinstance(v, str) and v in self._audience for v in values)
        client_id = claims.get("client_id")
        return isinstance(client_id, str) and client_id in self._audience


def _signed_claims(token: str, candidates: tuple[Any, ...], alg: str) -> dict[str, Any] | None:
    """The payload if one candidate key verifies the signature, else None."""
    for key in candidates:
        try:
            payload = jwt.decode(token, key, algorithms=[alg], options=_SIGNATURE_ONLY)  # type: ignore[arg-type]
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        return payload if isinstance(payload, dict) else None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _scopes(claims: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``scope`` (space separated) or ``scp`` (a list, or a space-separated string); None when
    malformed (the token is refused rather than read as having no scopes)."""
    raw = claims.get("scope", claims.get("scp"))
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    return None


def bearer_token(value: str) -> str:
    """The token in an identity source value: an optional ``Bearer `` prefix removed."""
    value = value.strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    return value
