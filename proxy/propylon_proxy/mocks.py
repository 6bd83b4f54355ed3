"""MOCK integrations (DESIGN.md §2.4): the configured response, with two substitutions."""

from __future__ import annotations

import re
from collections.abc import Mapping

_STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_.-]+)\}")


def render_body(body: str, *, variables: Mapping[str, str], request_id: str) -> str:
    """Substitute ``${stageVariables.x}`` (unknown -> empty) and ``$context.requestId``."""
    body = _STAGE_VARIABLE.sub(lambda m: variables.get(m.group(1), ""), body)
    return body.replace("$context.requestId", request_id)
