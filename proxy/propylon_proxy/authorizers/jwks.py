"""An issuer's JSON Web Key Set: fetched off the request path's critical section, cached, refreshed.

One ``KeySet`` per key source (issuer + jwksUri, or issuer + discovery), claimed from the
runtime's resources by that stable id, so it survives plan swaps and is shared by every
Authorizer that trusts the same keys. The rules (DESIGN.md sections 1 and 8, issue 9):

- fetched with aiohttp (never blocking the loop) from ``jwksUri``, or from the ``jwks_uri`` of
  ``<issuer>/.well-known/openid-configuration`` (whose ``issuer`` must match); every fetch,
  discovery included, times out after 1,500 ms;
- refreshed when ``Cache-Control: max-age`` says so (clamped to ``MIN_AGE``..``MAX_AGE``,
  ``DEFAULT_AGE`` without one), in the background: requests keep using the current keys;
- an unknown ``kid`` refetches at once, then at most once per ``KID_REFETCH_SECONDS``; the
  first fetch does not count; concurrent misses share one fetch;
- a failed fetch (or one that suddenly has no usable key) keeps the last good keys; an empty
  first set counts as fetched (tokens are refused with 401); with none ever fetched, ``KeysUnavailable`` (the
  authorizer answers 500 AUTHORIZER_FAILURE), and fetches are retried at most every
  ``RETRY_WITHOUT_KEYS`` seconds so a dead JWKS is not hammered by every request.

``generation`` counts the fetches that changed the keys. The verifier's token cache records it
with each token and re-verifies a cached token once it moved, so a revoked or rotated key is
never honoured from the cache past the refresh that drops it (``due`` starts that refresh
even when only cached tokens arrive).

Keys come only from here: a token's own ``jku``, ``x5u`` and ``jwk`` headers are never read.
Symmetric (``oct``) keys in a JWKS are ignored: HS* needs a ``secretRef``. Time is the
runtime's injected clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization

from propylon_proxy.authorizers import trust

log = logging.getLogger("propylon.proxy.jwks")

FETCH_TIMEOUT_SECONDS = 1.5
KID_REFETCH_SECONDS = 30.0
MIN_AGE = 60.0
MAX_AGE = 86400.0
DEFAULT_AGE = 300.0
RETRY_WITH_KEYS = 30.0  # a failed refresh, while the last good keys keep serving
RETRY_WITHOUT_KEYS = 2.0
MAX_DOCUMENT_BYTES = 1024 * 1024
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)")
# Which JWK key type can verify which algorithm family.
_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_SELECTIONS = 256  # (kid, alg) pairs remembered per key tuple; unknown kids past it are scanned


class KeysUnavailable(Exception):
    """No key set has ever been fetched for this source."""


class FetchError(Exception):
    """A fetch that produced no usable key set (the message names the URL, never a key)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    kid: str | None
    kty: str
    alg: str | None  # the JWK's own "alg", when it declares one
    key: Any  # the cryptography public key object pyjwt verifies with

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        return _FAMILY.get(alg[:2]) == self.kty


def parse_keys(document: Any) -> tuple[Key, ...]:
    """The usable signature keys of a JWKS document; unusable members are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("not a JWKS document (no keys list)")
    out: list[Key] = []
    for member in document["keys"]:
        if not isinstance(member, dict) or member.get("use", "sig") != "sig":
            continue
        kty = member.get("kty")
        if kty not in ("RSA", "EC", "OKP"):
            continue
        kid = member.get("kid")
        alg = member.get("alg")
        try:
            parsed = jwt.PyJWK(member)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        out.append(
            Key(
                kid=kid if isinstance(kid, str) else None,
                kty=str(kty),
                alg=alg if isinstance(alg, str) else None,
                key=parsed.key,
            )
        )
    return tuple(out)


def max_age(cache_control: str | None) -> float:
    if not cache_control:
        return DEFAULT_AGE
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return MIN_AGE
    found = _MAX_AGE.search(lowered)
    if found is None:
        return DEFAULT_AGE
    return min(MAX_AGE, max(MIN_AGE, float(found.group(1))))


class KeySet:
    """The keys of one source, and the fetches that keep them current."""

    def __init__(self, *, issuer: str, jwks_uri: str | None, clock: Callable[[], float]) -> None:
        self.issuer = issuer
        self._jwks_uri = jwks_uri  # None until discovered
        self._discovering = jwks_uri is None
        self._clock = clock
        self._keys: tuple[Key, ...] | None = None
        self._expires_at = 0.0
        self._last_kid_refetch = -math.inf
        self._retry_at = -math.inf
        self._inflight: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetch_count = 0  # attempts, discovery not counted: for tests and logs
        self.generation = 0  # +1 for each fetch whose keys differ from the ones before it
        # (kid, alg) -> the keys that fit, for the key tuple ``_selected_from`` (any fetch resets
        # it): a cold token's key lookup is one dict hit, not a scan (1.1 us of ~60 in profile).
        self._selected: dict[tuple[str | None, str], tuple[Key, ...]] = {}
        self._selected_from: tuple[Key, ...] | None = None

    @property
    def fetched(self) -> bool:
        return self._keys is not None

    def prefetch(self) -> None:
        """Start the first fetch now (when a plan is built), so early requests find keys."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._keys is None and self._inflight is None:
            self._start()

    def due(self) -> int:
        """The current ``generation``, first starting a background refresh when the keys have
        expired (what ``keys_for`` does): a cached token checks this instead of asking for keys."""
        self._refresh_if_expired(self._clock())
        return self.generation

    def ready(self, kid: str | None, alg: str) -> tuple[Key, ...] | None:
        """``keys_for``'s answer when it needs no waiting (keys fetched, and the ``kid`` among
        them or no ``kid``), starting the same background refresh when they expired; None when
        only ``keys_for`` can answer (no keys yet, or an unknown ``kid`` that may refetch)."""
        if self._keys is None:
            return None
        self._refresh_if_expired(self._clock())
        found = self._select(kid, alg)
        return found if found or kid is None else None

    async def keys_for(self, kid: str | None, alg: str) -> tuple[Key, ...]:
        """Keys that may have signed a token with this ``kid`` and ``alg``; empty means none
        does (the token is refused). Raises ``KeysUnavailable`` when no set was ever fetched."""
        now = self._clock()
        if self._keys is None:
            if self._inflight is None and now >= self._retry_at:
                self._start()
            if self._inflight is not None:
                await asyncio.shield(self._inflight)
            if self._keys is None:
                raise KeysUnavailable(self.issuer)
        else:
            self._refresh_if_expired(now)
        found = self._select(kid, alg)
        if found or kid is None:
            return found
        if self._inflight is None and now - self._last_kid_refetch >= KID_REFETCH_SECONDS:
            self._last_kid_refetch = now
            self._start()
        if self._inflight is not None:
            # A fetch is under way (ours, or one another unknown kid or an expiry started): share it.
            await asyncio.shield(self._inflight)
            found = self._select(kid, alg)
        return found

    def _refresh_if_expired(self, now: float) -> None:
        """Start a background refresh when fetched keys have expired (none under way, and not
        within a failed fetch's retry delay); requests meanwhile use the keys there are."""
        if self._keys is not None and now >= self._expires_at and self._inflight is None and now >= self._retry_at:
            self._start()

    def _select(self, kid: str | None, alg: str) -> tuple[Key, ...]:
        keys = self._keys or ()
        if self._selected_from is not keys:
            self._selected, self._selected_from = {}, keys
        found = self._selected.get((kid, alg))
        if found is None:
            if kid is None:
                found = tuple(k for k in keys if k.fits(alg))[:4]
            else:
                found = tuple(k for k in keys if k.kid == kid and k.fits(alg))
            if len(self._selected) < _SELECTIONS:  # kids come from tokens: bounded
                self._selected[(kid, alg)] = found
        return found

    def _start(self) -> None:
        self._inflight = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            self.fetch_count += 1
            keys, age = await self._fetch()
        except Exception as exc:  # an outage: keep what we have, retry later
            now = self._clock()
            self._retry_at = now + (RETRY_WITH_KEYS if self._keys is not None else RETRY_WITHOUT_KEYS)
            kept = "keeping the last good keys" if self._keys is not None else "no keys yet"
            log.warning("JWKS fetch for issuer %s failed (%s); %s", self.issuer, _describe(exc), kept)
        else:
            if self._keys is None or _material(keys) != _material(self._keys):
                self.generation += 1
            self._keys = keys
            self._expires_at = self._clock() + age
            self._retry_at = -math.inf
        finally:
            self._inflight = None

    async def _fetch(self) -> tuple[tuple[Key, ...], float]:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
                auto_decompress=True,
                connector=aiohttp.TCPConnector(ssl=trust.ssl_context()),
            )
        uri = self._jwks_uri
        if uri is None:
            uri = self._jwks_uri = await self._discover(session)
        document, cache_control = await _get_json(session, uri)
        keys = parse_keys(document)
        if not keys and self._keys:
            # A set that suddenly has no usable key looks like a broken publish, not a rotation:
            # keep the last good keys, as for any other outage.
            raise FetchError(f"{uri} has no usable signature keys")
        return keys, max_age(cache_control)

    async def _discover(self, session: aiohttp.ClientSession) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document, _ = await _get_json(session, url)
        if not isinstance(document, dict):
            raise FetchError(f"{url} is not a discovery document")
        if document.get("issuer") != self.issuer:
            raise FetchError(f"{url} names another issuer")
        found = document.get("jwks_uri")
        if not isinstance(found, str) or not found.startswith(("https://", "http://")):
            raise FetchError(f"{url} has no jwks_uri")
        return found

    async def close(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()


def _material(keys: tuple[Key, ...]) -> frozenset[tuple[str | None, str, str | None, bytes]]:
    """What a key set verifies with: a refresh that publishes the same keys changes nothing."""
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return frozenset((k.kid, k.kty, k.alg, k.key.public_bytes(der, spki)) for k in keys)


_ACCEPT = "application/json, application/jwk-set+json"


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[Any, str | None]:
    # A JWKS is application/jwk-set+json (RFC 7517); the Kubernetes API server refuses (406)
    # an Accept that does not allow it.
    async with session.get(url, headers={"Accept": _ACCEPT}) as response:
        if response.status != 200:
            raise FetchError(f"{url} answered {response.status}")
        body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise FetchError(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            return json.loads(body), response.headers.get("Cache-Control")
        except ValueError as exc:
            raise FetchError(f"{url} did not send JSON") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timed out after {FETCH_TIMEOUT_SECONDS} s"
    return str(exc) or type(exc).__name__
