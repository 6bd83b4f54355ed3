"""Opening secrets the compiler sealed into the snapshot (``propylon_compiler.sealing``).

The proxy holds the install's sealing secret (``ProxySettings.sealing_secret``), never the
snapshot. A value that is empty, was sealed under another secret, was changed, or belongs to
another object does not open: the caller treats its Authorizer as unusable and fails closed.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "aes-siv:"
_INFO = b"propylon.dev secret sealing v1"
MIN_SECRET_BYTES = 16


class Unopenable(Exception):
    """The sealed value cannot be opened here; the message never contains secret material."""


def open_sealed(secret: bytes | None, sealed: str, owner: str) -> bytes:
    if not sealed:
        raise Unopenable("no sealed value (compiled without a sealing secret)")
    if secret is None or len(secret) < MIN_SECRET_BYTES:
        raise Unopenable("this proxy has no sealing secret")
    if not sealed.startswith(PREFIX):
        raise Unopenable("unknown sealing format")
    text = sealed[len(PREFIX) :]
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Unopenable("sealed value is not base64url") from exc
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_INFO).derive(secret)
    try:
        return AESSIV(key).decrypt(data, [owner.encode()])
    except InvalidTag as exc:
        raise Unopenable("sealed under another secret, altered, or for another object") from exc
