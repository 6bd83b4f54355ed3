"""Diagnostics: compile errors as data, each naming file, document and field.

A diagnostic prints as ``FILE: document N (Kind ns/name): field.path: message`` (DESIGN.md
section 8). The compiler never raises for bad input; it returns these.
"""

from __future__ import annotations

import dataclasses
import enum


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where a document came from: the path as given and its 1-based index in that file."""

    file: str
    document: int  # 1-based, as diagnostics print it; 0 = the file as a whole
    item: int | None = None
    """The 0-based index in the ``items`` of a ``kind: List`` document (what ``kubectl get -o
    yaml`` writes), None for a document of its own. Field paths then start ``items[N].``."""

    def __str__(self) -> str:
        """``FILE document N`` (``... items[i]`` for an item of a List), as other messages cite it."""
        where = f"{self.file} document {self.document}"
        return where if self.item is None else f"{where} items[{self.item}]"

    def rooted(self, path: str) -> str:
        """``path`` from the document's root: under ``items[i]`` for an item of a List."""
        if self.item is None:
            return path
        return f"items[{self.item}].{path}" if path else f"items[{self.item}]"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    origin: Origin
    kind: str = ""  # "" when the document has no usable kind
    namespace: str = ""
    name: str = ""
    field: str = ""  # dotted with indexes: "spec.routes[0].integration.type"; "" for the whole document
    message: str
    severity: Severity = Severity.ERROR
    reason: str = "Invalid"  # CamelCase status-condition reason: Invalid, Conflict, MissingReference, ...

    @property
    def object_key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        who = ""
        if self.kind:
            ident = f"{self.namespace}/{self.name}" if self.namespace else self.name
            who = f" ({self.kind} {ident})" if ident else f" ({self.kind})"
        field = self.origin.rooted(self.field)
        where = f"{field}: " if field else ""
        if self.origin.document == 0:  # the file as a whole (unreadable): there is no document to name
            return f"{self.origin.file}: {where}{self.message}"
        return f"{self.origin.file}: document {self.origin.document}{who}: {where}{self.message}"


def field_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """Render ``("spec", "routes", 0, "integration")`` as ``spec.routes[0].integration``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out
