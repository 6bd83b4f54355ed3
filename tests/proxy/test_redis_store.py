"""The Redis StateStore against real redis-server processes: one server, and a 3-node Redis
Cluster. The same decisions as the in-memory store, exact under concurrency from several
clients (as several gateway replicas would be), and ``StoreUnavailable`` (never a hang) when
Redis is down or frozen. Bucket time is injected (``server_time=False``), never slept on."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from propylon_proxy import limiter, redis_store, state
from tests import redis_servers

_ids = itertools.count()


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with redis_servers.redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with redis_servers.redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as nodes:
        yield nodes


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_store(request):
    made = []

    def factory():
        if request.param == "memory":
            store = state.MemoryStore()
            if not made:
                made.append(store)
            return made[0]  # one process: every "replica" shares the store
        url = request.getfixturevalue("redis" if request.param == "redis" else "cluster").url
        store = redis_store.RedisStore(url, cluster=request.param == "cluster", server_time=False, timeout=2.0)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


def _unique(name: str) -> str:
    """Keys no other test (or parametrisation) has used on the shared server."""
    return f"{name}-{next(_ids)}"


def per_key(tag: str, name: str, rate: float, burst: int, reason: str) -> state.Bucket:
    return state.Bucket(key=f"{name}:{{{tag}}}", rate=rate, burst=burst, reason=reason)


async def test_buckets_refill_at_their_rate_and_refusals_consume_nothing(make_store):
    store = make_store()
    tag = _unique("shop/basic:alice")
    plan = per_key(tag, "plan", 1.0, 5, "plan")
    stage = state.Bucket(key=f"stage:{{{_unique('shop/users/prod/GET /x')}}}", rate=2.0, burst=1, reason="stage")
    quota = state.Quota(key=f"quota:{{{tag}}}", limit=10, period_start=1000.0, period_end=2000.0)
    first = await store.admit([plan, stage], quota, 1000.0)
    assert (first.admitted, first.quota_remaining) == (True, 9)
    refused = await store.admit([plan, stage], quota, 1000.0)
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, "stage", 1)
    assert await store.used([quota.key], 1000.0) == {quota.key: 1}  # the refused one did not count
    later = await store.admit([plan, stage], quota, 1000.5)  # half a second at 2/s: one token
    assert (later.admitted, later.quota_remaining) == (True, 8)
    # The plan bucket paid for two requests only: three tokens left of five.
    outcomes = [(await store.admit([plan], None, 1000.5)).admitted for _ in range(4)]
    assert outcomes == [True, True, True, False]


async def test_a_quota_refuses_until_the_next_period(make_store):
    store = make_store()
    name = f"quota:{{{_unique('shop/basic:bob')}}}"
    this = state.Quota(key=name, limit=2, period_start=0.0, period_end=100.0)
    assert [(await store.admit([], this, 10.0)).admitted for _ in range(3)] == [True, True, False]
    refused = await store.admit([], this, 10.0)
    assert (refused.reason, refused.retry_after, refused.quota_remaining) == ("quota", 90, 0)
    following = state.Quota(key=name, limit=2, period_start=100.0, period_end=200.0)
    assert (await store.admit([], following, 100.0)).admitted
    assert await store.used([name], 100.0) == {name: 1}


async def test_many_clients_at_once_never_admit_more_than_the_quota(make_store):
    """Two clients (two replicas' connections), 400 concurrent requests, quota 100: exactly
    100 admitted, five times over; the per-key bucket (burst 150) is shared the same way."""
    stores = [make_store(), make_store()]
    for _ in range(5):
        tag = _unique("shop/basic:carol")
        bucket = per_key(tag, "plan", 0.0, 150, "plan")
        quota = state.Quota(key=f"quota:{{{tag}}}", limit=100, period_start=0.0, period_end=1e12)
        decisions = await asyncio.gather(*(stores[i % 2].admit([bucket], quota, 50.0) for i in range(400)))
        assert sum(d.admitted for d in decisions) == 100
        assert {d.reason for d in decisions if not d.admitted} == {"quota"}
        tokens = per_key(_unique("t"), "plan", 0.0, 150, "plan")
        decisions = await asyncio.gather(*(stores[i % 2].admit([tokens], None, 50.0) for i in range(400)))
        assert sum(d.admitted for d in decisions) == 150


async def test_a_refusal_in_one_cluster_slot_gives_back_what_another_slot_took(cluster):
    store = redis_store.RedisStore(cluster.url, cluster=True, server_time=False, timeout=2.0)
    try:
        tag = _unique("shop/basic:erin")
        plan = per_key(tag, "plan", 0.0, 3, "plan")
        stage = state.Bucket(key=f"stage:{{{_unique('route')}}}", rate=0.0, burst=1, reason="stage")
        quota = state.Quota(key=f"quota:{{{tag}}}", limit=10, period_start=0.0, period_end=1e12)
        assert (await store.admit([plan, stage], quota, 1.0)).admitted
        refused = await store.admit([plan, stage], quota, 1.0)
        assert (refused.admitted, refused.reason) == (False, "stage")
        assert await store.used([quota.key], 0.0) == {quota.key: 1}
        assert [(await store.admit([plan], None, 1.0)).admitted for _ in range(3)] == [True, True, False]
    finally:
        await store.close()


async def test_server_time_drives_the_buckets_when_no_clock_is_injected(redis):
    store = redis_store.RedisStore(redis.url)
    try:
        bucket = per_key(_unique("k"), "plan", 0.001, 2, "plan")
        # ``now`` is ignored: the server's TIME says how much has refilled.
        outcomes = [(await store.admit([bucket], None, 0.0)).admitted for _ in range(3)]
        assert outcomes == [True, True, False]
    finally:
        await store.close()


async def test_a_stopped_or_frozen_redis_is_unavailable_within_the_timeout_never_a_hang(tmp_path):
    with redis_servers.redis_server(tmp_path) as server:
        store = redis_store.RedisStore(server.url, server_time=False)
        bucket = per_key(_unique("k"), "plan", 1.0, 5, "plan")
        try:
            assert (await store.admit([bucket], None, 1.0)).admitted
            server.freeze()  # accepts connections, never answers
            with pytest.raises(state.StoreUnavailable):
                await asyncio.wait_for(store.admit([bucket], None, 1.0), 2.0)
            server.thaw()
            server.stop()
            with pytest.raises(state.StoreUnavailable):
                await asyncio.wait_for(store.admit([bucket], None, 1.0), 2.0)
            server.start()  # empty again: a fresh bucket
            assert (await store.admit([bucket], None, 1.0)).admitted
        finally:
            await store.close()


async def test_the_limiter_falls_back_to_local_limits_open_or_refuses_closed(tmp_path):
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    with redis_servers.redis_server(tmp_path) as server:
        for mode in ("open", "closed"):
            clock = Clock()
            store = redis_store.RedisStore(server.url, server_time=False)
            gate = limiter.Limiter(store, failure=mode, monotonic=clock)
            bucket = per_key(_unique("k"), "plan", 0.0, 2, "plan")
            try:
                assert (await gate.admit([bucket], None, None, 1.0)).admitted
                server.freeze()
                # A slow call or two is decided without Redis, request by request; the third in
                # a row makes it an outage: from then on nobody waits for Redis.
                decisions = [await gate.admit([bucket], None, None, 1.0) for _ in range(3)]
                assert gate.down
                if mode == "open":
                    # Local limits meanwhile: a fresh local bucket of burst 2.
                    assert [d.admitted for d in decisions] == [True, True, False]
                else:
                    assert decisions == [limiter.UNAVAILABLE] * 3
                    assert (await gate.admit([bucket], None, None, 1.0)) is limiter.UNAVAILABLE
                server.thaw()
                # A bucket another replica emptied in Redis: local limits would not know.
                emptied = per_key(_unique("k"), "plan", 0.0, 1, "plan")
                assert (await store.admit([emptied], None, 1.0)).admitted
                # Until the backoff passes, Redis is not asked again; then it is, and it is back.
                clock.now += limiter.MAX_BACKOFF
                back = await gate.admit([emptied], None, None, 1.0)
                assert (back.admitted, back.reason, gate.down) == (False, "plan", False)
            finally:
                server.thaw()
                await store.close()


async def test_rate_accuracy_a_50_per_second_limit_driven_at_200_per_second_for_5_seconds(make_store):
    """The clock is moved 5 ms per request (200 req/s) for 5 s: the bucket admits its burst
    plus 50 per second, 250, not a request more (a token is only whole once fully refilled)."""
    store = make_store()
    bucket = per_key(_unique("rate"), "plan", 50.0, 20, "plan")
    start = 10_000.0
    admitted = 0
    for i in range(1000):
        admitted += (await store.admit([bucket], None, start + i * 0.005)).admitted
    assert admitted == 20 + 250 - 1  # the last refill (at t = 5 s) lands after the last request


async def test_a_server_that_lost_the_script_still_decides_after_one_reload(redis):
    """The pipe sends the admit script by SHA alone; a server without it (restarted, or
    SCRIPT FLUSH) answers NOSCRIPT, and the store loads the script and decides, still exactly."""
    store = redis_store.RedisStore(redis.url, server_time=False, timeout=2.0)
    try:
        bucket = state.Bucket(key=f"flush:{{{_unique('flush')}}}", rate=0.001, burst=2, reason="stage")
        assert (await store.admit([bucket], None, 1000.0)).admitted
        assert store._pipe is not None
        assert await store._pipe.call("SCRIPT", "FLUSH") == "OK"
        second = await store.admit([bucket], None, 1000.0)
        third = await store.admit([bucket], None, 1000.0)
        assert (second.admitted, third.admitted, third.reason) == (True, False, "stage")
    finally:
        await store.close()


async def test_kept_admit_commands_follow_their_buckets_quota_and_period(redis):
    """With the server's clock the packed EVALSHA is kept per (bucket tuple, Quota object): the
    quota still counts every request, a new period's Quota starts from zero with its own expiry,
    and a bucket list (which could change) is packed afresh each time."""
    store = redis_store.RedisStore(redis.url, timeout=2.0)
    try:
        tag = _unique("kept")
        buckets = (per_key(tag, "plan", 1000.0, 1000, "plan"),)
        now = 1_000_000.0
        first = state.Quota(key=f"{{{tag}}}:q", limit=3, period_start=now - 10, period_end=now + 50)
        remaining = [(await store.admit(buckets, first, now)).quota_remaining for _ in range(3)]
        refused = await store.admit(buckets, first, now)
        assert remaining == [2, 1, 0] and (refused.admitted, refused.reason) == (False, "quota")
        assert store._pipe is not None
        ttl = await store._pipe.call("TTL", redis_store.quota_key(first.key, first.period_start))
        assert 50 <= ttl <= 51 + redis_store.QUOTA_GRACE_SECONDS
        assert len(store._commands) == 1
        later = state.Quota(key=first.key, limit=3, period_start=now + 50, period_end=now + 110)
        assert (await store.admit(buckets, later, now + 60)).quota_remaining == 2  # a new period's count
        ttl = await store._pipe.call("TTL", redis_store.quota_key(later.key, later.period_start))
        assert ttl <= 50 + redis_store.QUOTA_GRACE_SECONDS  # its own seconds, not the first period's
        listed = [per_key(tag, "tight", 0.001, 1, "stage")]
        assert (await store.admit(listed, None, now)).admitted
        listed[0] = per_key(_unique("other"), "tight", 0.001, 1, "stage")  # the list changed
        assert (await store.admit(listed, None, now)).admitted  # a fresh bucket, not the kept one
        assert (await store.admit(listed, None, now)).reason == "stage"
    finally:
        await store.close()
