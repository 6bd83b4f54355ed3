"""Sealing the few secrets a proxy must hold in clear (a JWT Authorizer's HS* shared secret).

An API key can be stored as a keyed hash because the proxy only compares; an HS* secret must be
used to compute signatures, so the proxy needs its value. It travels in the snapshot sealed:
deterministic authenticated encryption (AES-SIV, from ``cryptography``) under a key derived from
the install's sealing secret, with the owning object's id as associated data. Deterministic, so
the compiler stays pure (same inputs, same snapshot, same version); authenticated, so a changed
or transplanted value is refused rather than used. The sealing secret itself is never in the
snapshot. ``propylon_proxy.authorizers.sealing`` is the other half and must agree with the
constants below (tests/compiler/test_sealing.py checks the two against each other).
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "aes-siv:"
_INFO = b"propylon.dev secret sealing v1"
MIN_SECRET_BYTES = 16


def _key(secret: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"a sealing secret needs at least {MIN_SECRET_BYTES} bytes")
    return HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_INFO).derive(secret)


def seal(secret: bytes, value: bytes, owner: str) -> str:
    """``value`` sealed for ``owner`` (an object id such as ``shop/cognito``)."""
    sealed = AESSIV(_key(secret)).encrypt(value, [owner.encode()])
    return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")
