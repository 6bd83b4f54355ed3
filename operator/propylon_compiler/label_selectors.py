"""Kubernetes label selectors (``matchLabels`` and ``matchExpressions``), as pure functions.

The compiler uses them to find a UsagePlan's API-key Secrets; the operator to decide which
Secrets are inputs at all. One reading of the rules for both, so they never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` meet every requirement of ``selector``.

    An empty selector selects nothing (Kubernetes would select everything): a plan must say
    which keys are its own, so a forgotten selector never turns every Secret into a key.
    """
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or ()
    if not match_labels and not expressions:
        return False
    for key, value in match_labels.items():
        if labels.get(key) != value:
            return False
    for expression in expressions:
        if not isinstance(expression, Mapping):
            return False
        key = expression.get("key")
        operator = expression.get("operator")
        values = expression.get("values") or ()
        present = isinstance(key, str) and key in labels
        if operator == "In" and not (present and labels[str(key)] in values):
            return False
        if operator == "NotIn" and present and labels[str(key)] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True
