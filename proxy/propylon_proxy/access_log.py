"""Access-log lines: one JSON object per request on stdout, fields named as DESIGN.md §4.

Only stages with ``accessLog.enabled`` log. Values are ints, booleans, strings or null; nothing
secret (no API key values, no Authorization, no bodies) is ever a field.

The event loop only takes an ``Entry`` (``recording.entry``: the request's raw values, read from
its context, nothing formatted); ``text`` turns it into the line, on the writer thread
(``log_writer``). The line is the one ``json.dumps`` of the fields in ``FIELDS`` order gives
(``separators=(",", ":")``, ``ensure_ascii=False``), built by one %-format of a template with
each string escaped by json's own C escaper (tests/proxy/test_access_log_text.py holds the two
to the same bytes). Measured in process (issue 15, perf-policy2): fields + line on the loop
~10.5 us before, the entry ~1 us on the loop and ``text`` ~3.5 us on the writer thread after.
"""

from __future__ import annotations

import json
import math
import sys
import time
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

# What recording.entry puts in an entry, in this order (raw values: the wall-clock start as a
# float, the request target with its query, the HTTP version tuple, durations in seconds).
Entry = tuple[Any, ...]

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ESCAPE = json.encoder.encode_basestring  # json's C escaper without ensure_ascii: what _ENCODE uses
_LINE = "{" + ",".join(f"{_ENCODE(name)}:%s" for name in FIELDS) + "}"
_PROTOCOLS = {(1, 1): '"HTTP/1.1"', (1, 0): '"HTTP/1.0"'}


def _string(value: Any) -> Any:
    if value is None:
        return "null"
    return _ESCAPE(value) if value.__class__ is str else _ENCODE(value)


def _number(value: Any) -> Any:
    if value.__class__ is int:
        return value  # %s of an int is its JSON text
    return "null" if value is None else _ENCODE(value)


def _millis(seconds: float | None) -> Any:
    return "null" if seconds is None else round(seconds * 1000)


# requestTime's text up to the second, for the last second formatted (lines come in time order,
# so one slot is enough; a tuple is replaced whole, so a reader on another thread sees one pair).
_second: tuple[int, str] = (-1, "")


def request_time(wall: float) -> str:
    """``datetime.fromtimestamp(wall, UTC)`` as RFC 3339 with milliseconds and ``Z``, quoted.

    The microseconds are rounded as datetime rounds them (half to even), then cut to millis."""
    global _second
    fraction, whole = math.modf(wall)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    elif micros < 0:
        micros += 1_000_000
        whole -= 1.0
    second = int(whole)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime('"%Y-%m-%dT%H:%M:%S.', time.gmtime(second)))
    return f'{cached[1]}{micros // 1000:03d}Z"'


# The JSON text of each string field value seen lately (and None's): most fields repeat from line to
# line (the peer, method, route key, path, api, stage, key id, principal, user agent), so their
# escaping is one dict lookup instead of a call. Bounded: distinct values from clients (paths,
# user agents) only ever fill it, and a full memo starts again. Only ``str`` values are kept (a
# bool or int could compare equal to another key). Measured with timeit on the full-policy
# route's entry (issue 15, sixth pass), 20 alternating pairs against the code before: ``text``
# 6.35 -> 5.52 us per line at the median, 4.25 -> 3.89 at best; cheaper in 18 of 20 pairs.
_MEMO_ENTRIES = 4096
_memo: dict[Any, str] = {None: "null"}


def _remembered(value: Any) -> str:
    """``_string(value)``, kept in the memo for the next line when ``value`` is a str."""
    text: str = _string(value)
    if value.__class__ is str:
        if len(_memo) >= _MEMO_ENTRIES:
            _memo.clear()
            _memo[None] = "null"
        _memo[value] = text
    return text


def text(item: Entry | str) -> str:
    """The access-log line of an entry (a str passes through: a line already made)."""
    if isinstance(item, str):
        return item
    (
        request_id,
        ip,
        wall,
        method,
        route_key,
        target,
        status,
        version,
        length,
        duration,
        latency,
        integration_status,
        api,
        stage,
        key_id,
        principal,
        agent,
        canary,
        cache,
        error_type,
        stalled,
    ) = item
    known = _memo.get  # a hit is never "" (a JSON string is at least its two quotes)
    path = target.partition("?")[0]
    protocol = _PROTOCOLS.get(version) or _ESCAPE(f"HTTP/{version[0]}.{version[1]}")
    return _LINE % (
        _ESCAPE(request_id) if request_id.__class__ is str else _string(request_id),  # new on every line
        known(ip) or _remembered(ip),
        request_time(wall),
        known(method) or _remembered(method),
        known(route_key) or _remembered(route_key),
        known(path) or _remembered(path),
        status if status.__class__ is int else _number(status),
        protocol,
        length if length.__class__ is int else _number(length),
        round(duration * 1000),
        _millis(latency),
        integration_status if integration_status.__class__ is int else _number(integration_status),
        known(api) or _remembered(api),
        known(stage) or _remembered(stage),
        known(key_id) or _remembered(key_id),
        known(principal) or _remembered(principal),
        known(agent) or _remembered(agent),
        "true" if canary is True else "false" if canary is False else _ENCODE(canary),
        known(cache) or _remembered(cache),
        known(error_type) or _remembered(error_type),
        known(stalled) or _remembered(stalled),
    )


def write(item: Entry | str, stream: TextIO | None = None) -> None:
    """One line, written and flushed here (a runtime given its own ``log_stream``, as tests are)."""
    out = stream or sys.stdout
    out.write(text(item) + "\n")
    out.flush()
