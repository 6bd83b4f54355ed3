"""Reading a snapshot out of the operator's Secret. Pure: no I/O, no Kubernetes client.

The operator stores the canonical JSON of ``propylon_config.codec`` under ``snapshot.json``, or,
when a snapshot grows past what a Secret holds comfortably, gzip-compressed under
``snapshot.json.gz``. Secret ``data`` values are base64 on the wire, so both arrive base64-encoded.
Beside it, under ``api-key-hashing``, the install's key-hashing secret: the snapshot's API-key
digests are HMACs under it (``propylon_config.key_hashing``). It is never part of the snapshot
itself, and it arrives in the same object, so a proxy never holds a snapshot without its secret.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Mapping
from typing import Any

from propylon_config import codec, model

SNAPSHOT_KEY = "snapshot.json"
SNAPSHOT_GZIP_KEY = "snapshot.json.gz"
HASHING_KEY = "api-key-hashing"
SEALING_KEY = "authorizer-sealing"  # the install's sealing secret: opens HS* Authorizer secrets
_GZIP_MAGIC = b"\x1f\x8b"


class SnapshotError(ValueError):
    """The Secret holds no usable snapshot; the message says why, for a log line."""


def decode(secret: Mapping[str, Any]) -> model.GatewayConfig:
    """The config inside a Secret (as the API server returns it, ``data`` base64-encoded)."""
    data = secret.get("data") or {}
    if SNAPSHOT_KEY in data:
        raw = _b64(data[SNAPSHOT_KEY], SNAPSHOT_KEY)
    elif SNAPSHOT_GZIP_KEY in data:
        raw = _gunzip(_b64(data[SNAPSHOT_GZIP_KEY], SNAPSHOT_GZIP_KEY))
    else:
        raise SnapshotError(f"no {SNAPSHOT_KEY} or {SNAPSHOT_GZIP_KEY} key")
    try:
        return codec.loads(raw)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise SnapshotError(f"unparsable snapshot: {error}") from error


def key_hashing_secret(secret: Mapping[str, Any]) -> bytes | None:
    """The key-hashing secret stored beside the snapshot; None when absent or unreadable."""
    value = (secret.get("data") or {}).get(HASHING_KEY)
    if not value:
        return None
    try:
        return _b64(value, HASHING_KEY) or None
    except SnapshotError:
        return None


def _b64(value: str, key: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SnapshotError(f"{key} is not base64: {error}") from error


def _gunzip(raw: bytes) -> bytes:
    if not raw.startswith(_GZIP_MAGIC):
        # Tolerate a writer that base64-encoded the gzip bytes once more before storing them.
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise SnapshotError(f"{SNAPSHOT_GZIP_KEY} is not gzip data") from error
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise SnapshotError(f"{SNAPSHOT_GZIP_KEY} is not gzip data: {error}") from error


def sealing_secret(secret: Mapping[str, Any]) -> bytes | None:
    """The sealing secret stored beside the snapshot; None when absent or unreadable."""
    value = (secret.get("data") or {}).get(SEALING_KEY)
    if not value:
        return None
    try:
        return _b64(value, SEALING_KEY) or None
    except SnapshotError:
        return None
