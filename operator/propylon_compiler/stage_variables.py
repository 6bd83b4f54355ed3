"""``${stageVariables.name}`` substitution, done at compile time for each Stage.

Substituting here rather than per request means a missing variable is a diagnostic the user
sees before deploying, and the proxy never parses these templates. (The run-time expression
``$stageVariables.name`` in requestParameters values is left to the proxy.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]*)\}")
NAME = re.compile(r"^[A-Za-z0-9_]+$")


def references(text: str) -> tuple[str, ...]:
    """Names of the stage variables ``text`` refers to, in order of appearance."""
    return tuple(match.group(1) for match in _REFERENCE.finditer(text))


def substitute(text: str, variables: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """Replace every reference; returns the text and the names that were not defined."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        missing.append(name)
        return match.group(0)

    return _REFERENCE.sub(replace, text), tuple(dict.fromkeys(missing))
