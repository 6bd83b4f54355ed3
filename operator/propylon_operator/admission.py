"""Admission checks: refuse at ``kubectl apply`` what can never compile, whatever else exists.

An object is checked alone: its schema, and the compiler's findings about the object itself
(bad path templates, invalid JSON Schema models, a route naming a model the Api does not
define). Findings that depend on other objects (a missing Authorizer, a host conflict) are not
refusals: the other object may be applied a second later, so they stay status conditions. The
refusal reads like ``propylon validate`` without the file part. Pure; kopf wiring is elsewhere.
"""

from __future__ import annotations

import re
from typing import Any

from propylon_compiler import diagnostics, schemas
from propylon_operator import compiling, documents

OWN_REASONS = frozenset({"Invalid"})
"""Diagnostic reasons that are about the object alone. Others (MissingReference, Conflict,
RefNotPermitted, Duplicate) depend on the rest of the cluster."""

OWN_REFERENCES = re.compile(r"^spec\.routes\[\d+\]\.requestValidation\.body$")
"""MissingReference findings that point inside the object itself: a route naming a model the
Api does not define can never be fixed by applying another object."""


def _own(diagnostic: diagnostics.Diagnostic) -> bool:
    return diagnostic.reason in OWN_REASONS or (
        diagnostic.reason == "MissingReference" and bool(OWN_REFERENCES.match(diagnostic.field))
    )


def problems(body: dict[str, Any]) -> list[diagnostics.Diagnostic]:
    document = documents.to_document(body)
    found = [d for d in schemas.validate(document) if d.severity is diagnostics.Severity.ERROR]
    if found:
        return found
    result = compiling.run_compiler([document], allow_cross_namespace=True)
    key = (document.kind, document.namespace, document.name)
    return [
        d
        for d in result.diagnostics
        if d.severity is diagnostics.Severity.ERROR and _own(d) and d.object_key in (key, ("", "", ""))
    ]


def without_file(diagnostic: diagnostics.Diagnostic) -> str:
    """``FILE: document N (Kind ns/name): field: message`` minus ``FILE: document N ``."""
    text = str(diagnostic)
    prefix = f"{diagnostic.origin.file}: document {diagnostic.origin.document}"
    text = text[len(prefix) :] if text.startswith(prefix) else text
    return text.lstrip(" :")


def refusal(body: dict[str, Any]) -> str | None:
    """The message to refuse ``body`` with, or None to admit it."""
    found = problems(body)
    if not found:
        return None
    return "; ".join(without_file(d) for d in found)
