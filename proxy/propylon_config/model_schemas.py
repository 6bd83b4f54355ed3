"""Compiling an Api's request models (JSON Schema, draft 4), shared by the compiler and the proxy.

The proxy validates bodies with jsonschema-rs; the compiler checks models against the draft 4
meta-schema with ``jsonschema``. The two disagree on what compiles: a ``$ref`` to a pointer that
does not exist, or a ``pattern`` that Python's ``re`` reads but ECMA-262 does not (``(?i)x``,
``x{,3}``), passes the meta-schema and only fails when jsonschema-rs builds the validator. So the
compiler builds it here too, once, and a model the proxy could not build is a diagnostic naming
the model, never a plan that cannot be built.

A ``$ref`` is resolved only inside the model itself. jsonschema-rs would otherwise fetch any URI
a ``$ref`` names, so an Api's author could make the gateway send requests from its place in the
network, and stall a plan swap on an address that never answers. The draft 4 meta-schema, which
jsonschema-rs carries with it, is the one document outside the model a ``$ref`` may name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs

Validator = Callable[[Any], bool]


class ModelError(ValueError):
    """The model cannot be built; the message is one line, fit to follow a field path."""


def build(schema: dict[str, Any] | bool) -> Validator:
    """The model's ``is_valid``; ``ModelError`` when jsonschema-rs cannot build it."""
    refused: list[str] = []

    def no_remote(uri: str) -> Any:
        refused.append(uri)
        raise ModelError(uri)

    try:
        validator = jsonschema_rs.Draft4Validator(schema, retriever=no_remote)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        if refused:
            raise ModelError(f"$ref {refused[0]} is outside the model: the gateway never fetches one") from exc
        raise ModelError(_first_line(exc)) from exc
    is_valid: Validator = validator.is_valid
    return is_valid


def problem(schema: dict[str, Any] | bool) -> str | None:
    """Why the proxy could not build this model's validator, or None when it can."""
    try:
        build(schema)
    except ModelError as exc:
        return str(exc)
    return None


def _first_line(exc: Exception) -> str:
    """jsonschema-rs's message without its "Failed validating ... On instance" report."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
