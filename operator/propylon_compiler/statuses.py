"""Object statuses: what the operator writes into each object's conditions.

Derived from the diagnostics alone, so the status a user reads in ``kubectl`` and the line
``propylon validate`` prints always agree. ``Accepted`` says the object is in the snapshot;
``Ready`` says it is in the snapshot with nothing left out (no dropped route, no missing
reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from propylon_compiler import diagnostics, objects


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ObjectStatus:
    kind: str
    namespace: str
    name: str
    generation: int | None
    accepted: bool
    ready: bool
    reason: str  # CamelCase, for the Ready condition: "Compiled", "Invalid", "Conflict", ...
    message: str


def derive(
    index: objects.Index, reporter: objects.Reporter, found: Sequence[diagnostics.Diagnostic]
) -> tuple[ObjectStatus, ...]:
    by_object: dict[objects.ObjectKey, list[diagnostics.Diagnostic]] = {}
    for diagnostic in found:
        by_object.setdefault(diagnostic.object_key, []).append(diagnostic)
    out: list[ObjectStatus] = []
    for obj in index.all:
        problems = by_object.get(obj.key, [])
        generation = obj.metadata.get("generation")
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            where = f"{first.field}: " if first.field else ""
            reason, message = first.reason, f"{where}{first.message}{more}"
        else:
            reason, message = "Compiled", "compiled into the gateway snapshot"
        out.append(
            ObjectStatus(
                kind=obj.kind,
                namespace=obj.namespace,
                name=obj.name,
                generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None,
                accepted=not reporter.is_broken(obj),
                ready=not problems,
                reason=reason,
                message=message,
            )
        )
    return tuple(sorted(out, key=lambda s: (s.kind, s.namespace, s.name)))
