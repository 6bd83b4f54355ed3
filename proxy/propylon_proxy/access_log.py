"""Access-log lines: one JSON object per request on stdout, fields named as DESIGN.md §4.

Only stages with ``accessLog.enabled`` log. Values are ints, booleans, strings or null; nothing
secret (no API key values, no Authorization, no bodies) is ever a field.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any, TextIO

FIELDS = (
    "requestId",
    "ip",
    "requestTime",
    "httpMethod",
    "routeKey",
    "path",
    "status",
    "protocol",
    "responseLength",
    "responseLatencyMs",
    "integrationLatencyMs",
    "integrationStatus",
    "apiId",
    "stage",
    "apiKeyId",
    "principalId",
    "userAgent",
    "canary",
    "cache",
    "errorType",
    "stalled",  # "backend" or "client": a relay cut for no progress (issue 8, item 6)
)


def rfc3339_millis(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# One encoder: json.dumps with any non-default option builds a new JSONEncoder per call
# (line() 6.2-7.1 -> 5.2-5.4 us in process; the same text).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def line(values: dict[str, Any]) -> str:
    """A log line with every field present (absent ones null), in a stable order."""
    return _ENCODE({name: values.get(name) for name in FIELDS})


def write(values: dict[str, Any], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(line(values) + "\n")
    out.flush()
