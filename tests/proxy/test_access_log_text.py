"""The access-log line the writer thread builds from an entry is, byte for byte, the line
json.dumps made of the fields before (issue 15, perf-policy2 moved the formatting off the loop
and replaced the dict + encoder by one template): every field, every kind of value, strings
that need escaping, and the millisecond of requestTime at its rounding edges."""

from __future__ import annotations

import datetime
import json
import random
from typing import Any

import pytest

from propylon_proxy import access_log


def reference(entry: access_log.Entry) -> str:
    """The line as recording._fields + access_log.line made it before the change."""
    (rid, ip, wall, method, route_key, target, status, version, length, duration, latency) = entry[:11]
    (istatus, api, stage, key_id, principal, agent, canary, cache, error_type, stalled) = entry[11:]
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    values: dict[str, Any] = {
        "requestId": rid,
        "ip": ip,
        "requestTime": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "httpMethod": method,
        "routeKey": route_key,
        "path": target.partition("?")[0],
        "status": status,
        "protocol": f"HTTP/{version[0]}.{version[1]}",
        "responseLength": length,
        "responseLatencyMs": round(duration * 1000),
        "integrationLatencyMs": round(latency * 1000) if latency is not None else None,
        "integrationStatus": istatus,
        "apiId": api,
        "stage": stage,
        "apiKeyId": key_id,
        "principalId": principal,
        "userAgent": agent,
        "canary": canary,
        "cache": cache,
        "errorType": error_type,
        "stalled": stalled,
    }
    return json.dumps({name: values.get(name) for name in access_log.FIELDS}, separators=(",", ":"), ensure_ascii=False)


def entry(**changes: Any) -> access_log.Entry:
    values: dict[str, Any] = {
        "rid": "b7c1e2f0-5d1a-4c1e-9a57-0f2d3c4b5a69",
        "ip": "10.0.0.7",
        "wall": 1796322033.123456,
        "method": "POST",
        "route_key": "POST /full/order",
        "target": "/prod/full/order?x=1",
        "status": 200,
        "version": (1, 1),
        "length": 2,
        "duration": 0.0012,
        "latency": 0.0004,
        "istatus": 200,
        "api": "bench/bench",
        "stage": "prod",
        "key_id": "bench/key",
        "principal": "user-1",
        "agent": "wrk",
        "canary": False,
        "cache": None,
        "error_type": None,
        "stalled": None,
    }
    values.update(changes)
    return tuple(values.values())


NASTY = ['a"b\\c', "tab\there\nnew", "\x00\x1f\x7f", "ünïcødé ✓ 🚀", "\udcff\udc80", "", "</script>", "%s %d"]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"route_key": None, "latency": None, "istatus": None, "key_id": None, "principal": None, "agent": None},
        {"status": 429, "error_type": "THROTTLED", "canary": True, "cache": "hit", "stalled": "backend"},
        {"version": (1, 0), "target": "/a%2Fb/c?", "duration": 0.0025, "latency": 0.0035},  # round half even
        {"version": (2, 0)},
        {"target": "/only-a-path", "length": 0, "duration": 12.3456},
        *({"agent": text, "principal": text, "ip": text, "target": "/" + text} for text in NASTY),
    ],
)
def test_the_line_is_what_json_dumps_made(changes: dict[str, Any]) -> None:
    item = entry(**changes)
    assert access_log.text(item) == reference(item)
    json.loads(access_log.text(item))  # and it is JSON


def test_request_time_rounds_as_datetime_does_at_every_edge() -> None:
    rng = random.Random(15)
    walls = [1796322033.0, 1796322033.9995, 1796322033.0005, 1796322033.9999995, 1796322033.9999996]
    walls += [1796322033.0000005, 1796322034 - 1e-7, 0.0, 0.9999999]
    walls += [rng.uniform(1.7e9, 1.9e9) for _ in range(5000)]
    walls += [round(rng.uniform(1.7e9, 1.9e9), 3) + rng.choice((-5e-7, 0.0, 5e-7)) for _ in range(5000)]
    for wall in walls:
        item = entry(wall=wall)
        assert access_log.text(item) == reference(item), wall


def test_a_line_already_made_passes_through() -> None:
    assert access_log.text('{"n":1}') == '{"n":1}'


def test_remembered_values_give_the_same_line_and_the_memo_stays_bounded() -> None:
    # The same values again come from the memo; past its bound it starts again, and every line
    # is still the one json.dumps makes (a remembered escape is never another value's).
    for i in range(access_log._MEMO_ENTRIES * 2 + 7):
        item = entry(agent=f"agent-{i}\t", target=f'/p/{i % 50}"?q', principal=NASTY[i % len(NASTY)])
        assert access_log.text(item) == reference(item)
        assert len(access_log._memo) <= access_log._MEMO_ENTRIES
    assert access_log.text(entry(canary=None, status=None)) == reference(entry(canary=None, status=None))
