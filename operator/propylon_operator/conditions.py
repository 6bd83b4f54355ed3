"""Status conditions, Kubernetes style: what the operator wants to say merged with what is there.

``lastTransitionTime`` only moves when a condition's status flips; a new reason or message on
the same status keeps the old time, as ``kubectl wait`` and dashboards expect. Pure: the clock
is passed in.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    type: str
    status: str  # TRUE | FALSE | UNKNOWN
    reason: str
    message: str = ""


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    existing: Sequence[dict[str, Any]] | None,
    desired: Sequence[Condition],
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """The conditions list to write: ``desired`` in order, keeping transition times that still hold."""
    previous = {str(c.get("type")): c for c in existing or () if isinstance(c, dict)}
    merged: list[dict[str, Any]] = []
    for condition in desired:
        before = previous.get(condition.type)
        if before is not None and before.get("status") == condition.status and before.get("lastTransitionTime"):
            since = str(before["lastTransitionTime"])
        else:
            since = now
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    return merged


def find(conditions: Sequence[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for condition in conditions or ():
        if isinstance(condition, dict) and condition.get("type") == type_:
            return condition
    return None
