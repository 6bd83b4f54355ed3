"""Validation of documents against the CRD schemas in crds/ (placeholder until the CRDs land)."""

from __future__ import annotations

from typing import Any

from propylon_compiler import diagnostics, manifests

KINDS = ("Api", "Stage", "UsagePlan", "Authorizer")


def validate(document: manifests.Document) -> list[diagnostics.Diagnostic]:
    """Schema problems of one propylon.dev document; [] when it conforms."""
    return []


def with_defaults(document: manifests.Document) -> dict[str, Any]:
    """The document body with the CRD schema's defaults filled in, as the API server would."""
    return document.body
