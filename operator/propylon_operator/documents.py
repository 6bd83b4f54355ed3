"""Stored cluster objects turned into the compiler's input documents.

The compiler was written for files; in the cluster each object becomes one document whose
origin reads ``<Kind>/<namespace>/<name>``, document 1, so diagnostics still name their object.
Server-owned bookkeeping (status, managedFields, resourceVersion, ...) is stripped: it is not
configuration, and leaving it in would make every status write look like a change.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from propylon_compiler import diagnostics, manifests

# creationTimestamp stays: conflicts between Stages are settled by age.
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "selfLink",
    "uid",
    "generation",
    "deletionGracePeriodSeconds",
)
_BOOKKEEPING_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kopf.zalando.org/last-handled-configuration",
)


def origin_file(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` holding only what a person configured (plus creationTimestamp)."""
    out = copy.deepcopy(dict(body))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for field in _SERVER_METADATA:
            meta.pop(field, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for name in _BOOKKEEPING_ANNOTATIONS:
                annotations.pop(name, None)
            if not annotations:
                meta.pop("annotations", None)
    return out


def to_document(body: dict[str, Any]) -> manifests.Document:
    meta = body.get("metadata") or {}
    file = origin_file(str(body.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    return manifests.Document(origin=diagnostics.Origin(file=file, document=1), body=clean(body))


def secret_references(body: dict[str, Any]) -> list[str]:
    """Names of Secrets (in the object's namespace) an object needs besides labelled API keys.

    Today an Authorizer's ``spec.jwt.secretRef`` (shared-secret JWTs). Such Secrets carry no
    label to watch for, so the operator fetches exactly these by name.
    """
    spec = body.get("spec")
    if body.get("kind") != "Authorizer" or not isinstance(spec, dict):
        return []
    jwt = spec.get("jwt")
    ref = jwt.get("secretRef") if isinstance(jwt, dict) else None
    name = ref.get("name") if isinstance(ref, dict) else None
    return [name] if isinstance(name, str) and name else []


def fingerprint(documents: Iterable[manifests.Document]) -> str:
    """A hash of the compiler's whole input: equal fingerprints compile to equal snapshots."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(json.dumps(document.body, sort_keys=True, separators=(",", ":"), default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()
