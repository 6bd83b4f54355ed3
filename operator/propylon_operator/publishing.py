"""The snapshot Secret: how a compiled snapshot reaches the proxies.

The Secret holds ``snapshot.json`` (``codec.dumps``), or, past ``GZIP_ABOVE`` bytes, the same
bytes gzip-compressed under ``snapshot.json.gz`` (a Secret holds at most 1 MiB, about 1,100
routes of plain JSON; the snapshot's repetitive JSON compresses some 60 times, and the proxy reads
either key), and repeats the version in an annotation,
so the operator can tell whether a write is needed without decoding the payload. Beside the
snapshot, under ``api-key-hashing``, it keeps the install's key-hashing secret: API keys are in
the snapshot only as HMACs under it, and proxies need it to hash the keys clients send; under
``authorizer-sealing``, the sealing secret HS* Authorizer secrets are sealed under in the
snapshot (proxies need it to open them). Both are made once (random) and read back from this
Secret on every operator start, so digests, sealed values and therefore versions, stay the same
across restarts. Writing only
when the version differs is what keeps restarts churn-free: same inputs, same version, no write,
no resourceVersion bump, no reload in any proxy. Pure builders; the reconcile does the I/O.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from typing import Any

from propylon_config import codec, model
from propylon_operator import leases, workloads
from propylon_operator import settings as settings_

DATA_KEY = "snapshot.json"
GZIP_KEY = "snapshot.json.gz"
# Below this the snapshot stays readable with `kubectl get secret -o yaml`; above it, gzip. Chosen
# well under the API server's 1 MiB for all of ``data`` (base64 adds a third).
GZIP_ABOVE = 256 * 1024
SECRET_LIMIT = 1024 * 1024  # what the API server takes for a Secret's data


class SnapshotTooLarge(ValueError):
    """Even compressed, the snapshot does not fit in a Secret: say so instead of a bare 422."""
HASHING_KEY = "api-key-hashing"
SEALING_KEY = "authorizer-sealing"


def secret(
    snapshot: model.GatewayConfig,
    settings: settings_.Settings,
    owner: dict[str, Any] | None,
    key_secret: bytes | None = None,
    sealing_secret: bytes | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": settings.snapshot_secret,
        "namespace": settings.gateway_namespace,
        "labels": {**workloads.MANAGED_BY, "app.kubernetes.io/instance": settings.gateway_name},
        "annotations": {leases.VERSION_ANNOTATION: snapshot.version},
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    payload = codec.dumps(snapshot).encode()
    key = DATA_KEY
    if len(payload) > GZIP_ABOVE:
        # mtime=0: the same snapshot gives the same bytes, so a restart writes nothing new.
        payload, key = gzip.compress(payload, compresslevel=6, mtime=0), GZIP_KEY
        if len(payload) > SECRET_LIMIT * 3 // 4 - 4096:
            raise SnapshotTooLarge(
                f"config version {snapshot.version} is {len(payload)} bytes even compressed; a Secret holds 1 MiB"
            )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "data": {
            key: base64.b64encode(payload).decode(),
            **({HASHING_KEY: base64.b64encode(key_secret).decode()} if key_secret else {}),
            **({SEALING_KEY: base64.b64encode(sealing_secret).decode()} if sealing_secret else {}),
        },
    }


def key_secret(body: dict[str, Any] | None) -> bytes | None:
    """The key-hashing secret a snapshot Secret holds (None when it has none)."""
    return _stored(body, HASHING_KEY)


def sealing_secret(body: dict[str, Any] | None) -> bytes | None:
    """The sealing secret a snapshot Secret holds (None when it has none)."""
    return _stored(body, SEALING_KEY)


def _stored(body: dict[str, Any] | None, data_key: str) -> bytes | None:
    encoded = ((body or {}).get("data") or {}).get(data_key)
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def stored_version(body: dict[str, Any] | None) -> str | None:
    """The version a snapshot Secret holds: the annotation, checked against the payload itself."""
    if not body:
        return None
    annotated = ((body.get("metadata") or {}).get("annotations") or {}).get(leases.VERSION_ANNOTATION)
    data = body.get("data") or {}
    plain, compressed = data.get(DATA_KEY), data.get(GZIP_KEY)
    if not plain and not compressed:
        return None
    try:
        raw = base64.b64decode(plain) if plain else gzip.decompress(base64.b64decode(str(compressed)))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, OSError, EOFError, zlib.error):
        return None
    version = payload.get("version") if isinstance(payload, dict) else None
    # A hand-edited payload whose annotation disagrees is rewritten: trust neither alone.
    return str(version) if version and version == annotated else None
