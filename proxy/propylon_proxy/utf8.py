"""Text to the bytes a client, backend or function receives, as Java (AWS's runtime) writes them.

Python's strings can hold a lone surrogate (a client's ``"\\ud800"`` JSON escape, read by json
or a template's ``$util.parseJson``), which strict UTF-8 cannot encode: the request failed with
500. Java's encoder writes ``?`` for it; so does this, and everything else is plain UTF-8.
"""

from __future__ import annotations

import json
from typing import Any


def encode(text: str) -> bytes:
    return text.encode("utf-8", "replace")


def json_bytes(value: Any) -> bytes:
    """Compact JSON with non-ASCII as UTF-8 (as the events and answers AWS sends)."""
    return encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
