"""Digests that tell one authorized caller from another, for the response cache's key.

An authorizer function that names no principal (a 2.0 simple answer, a policy without
``principalId``) is told apart by what proved the caller, its identity-source values; one that
answers the same ``principalId`` to everyone, by the ``context`` mappings and templates read
(DESIGN.md section 4, cache keys). Both are digests, so no token is kept with a cached response.

The authorizer step computes them once per authorizer answer and keeps them with the answer in
its own cache (``authorizers.functions``): a request answered from that cache reads them instead
of hashing again (2.1 and 3.3 us a request before, timeit, with one token and a four-key
context; issue 15, seventh pass).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any


def identity_digest(values: Sequence[str]) -> bytes:
    """The SHA-256 of the identity-source values (in the Authorizer's order)."""
    return hashlib.sha256(json.dumps(list(values)).encode("utf-8", "surrogatepass")).digest()


def context_digest(found: Mapping[str, Any] | None) -> str | None:
    """``x:`` and the SHA-256 of the authorizer context as canonical JSON; None without one."""
    if not found:
        return None
    text = json.dumps(found, sort_keys=True, separators=(",", ":"), default=repr)
    return "x:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
