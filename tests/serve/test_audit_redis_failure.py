"""Quotas and limit order with `serve --redis` when Redis is slow, and next to the gateway-wide
limit (audit b5 r2 and r3; DESIGN.md §4).

- Only admitted requests count toward the quota: requests answered 503 (``--redis-failure
  closed``) or decided locally (``open``) while Redis was frozen (SIGSTOP: it accepts and never
  answers) must not show up in /admin/usage once Redis answers again, although the admit
  scripts they sent do run then.
- The gateway-wide limit comes after the plan and stage limits: a request both refuse is
  refused by the plan's route limit (its Retry-After) with Redis as in memory, and a request
  only the gateway-wide limit refuses uses no quota.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests import redis_servers
from tests.serve.test_serve import _wait_for
from tests.serve.test_usage_plans import KEYS, Serve, _get, serving, write_manifests


def _used(served: Serve, key: str = "key0") -> int:
    status, _, body = _get(served.admin_url("/admin/usage/demo/gold"))
    assert status == 200, body
    return int(json.loads(body)["keys"][key]["used"])


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_requests_decided_without_a_frozen_redis_use_no_quota_once_it_answers(tmp_path: Path, mode: str) -> None:
    folder = write_manifests(tmp_path / "manifests", quota=1000, burst=1000)
    key = KEYS["key0"]
    with (
        redis_servers.redis_server(tmp_path / "redis") as redis,
        serving(folder, tmp_path, ("gw", ("--redis", redis.url, "--redis-failure", mode))) as (served,),
    ):
        assert _get(served.url("/quota"), key)[0] == 200
        assert _used(served) == 1
        redis.freeze()
        try:
            statuses = [_get(served.url("/quota"), key)[0] for _ in range(5)]
        finally:
            redis.thaw()
        assert statuses == [503] * 5 if mode == "closed" else [200] * 5
        # the scripts sent before the timeouts run now; what they took is given back
        time.sleep(1.0)
        _wait_for(lambda: _used(served) == 1, 10)
        assert _used(served) == 1
        # and the store is trusted again: the next request counts
        _wait_for(lambda: _get(served.url("/quota"), key)[0] == 200, 20)
        assert _used(served) >= 2


def test_the_gateway_wide_limit_comes_after_the_plan_limits_with_redis_as_in_memory(tmp_path: Path) -> None:
    folder = write_manifests(tmp_path / "manifests", quota=100, burst=2)
    key = KEYS["key0"]
    gateway = ("--gateway-rate", "0.01", "--gateway-burst", "4")  # Retry-After 100 when it refuses
    with (
        redis_servers.redis_server(tmp_path / "redis") as redis,
        serving(folder, tmp_path, ("memory", gateway), ("redis", (*gateway, "--redis", redis.url))) as replicas,
    ):
        for name, served in zip(("memory", "redis"), replicas, strict=True):
            assert [_get(served.url("/bucket"), key)[0] for _ in range(2)] == [200, 200]  # the plan's burst
            assert [_get(served.url("/open"))[0] for _ in range(2)] == [200, 200]  # the gateway's last tokens
            # both refuse: the plan's route limit speaks (rate 0.001: Retry-After 1000)
            status, headers, _ = _get(served.url("/bucket"), key)
            assert (status, headers.get("Retry-After")) == (429, "1000"), name
            # only the gateway-wide limit refuses (quota left): 429 from it, and no quota used
            used = _used(served)
            status, headers, _ = _get(served.url("/quota"), key)
            assert (status, headers.get("Retry-After")) == (429, "100"), name
            time.sleep(0.3)  # the give-back is in the background
            assert _used(served) == used, name
