"""The StateStore's one-call admission decision, and the runtime's keyed resource lifecycle."""

from __future__ import annotations

import asyncio

from propylon_proxy import runtime, state


def bucket(key: str, rate: float, burst: int, reason: str = "stage") -> state.Bucket:
    return state.Bucket(key=key, rate=rate, burst=burst, reason=reason)


async def test_a_full_bucket_admits_its_burst_then_refills_at_its_rate():
    store = state.MemoryStore()
    b = bucket("stage:shop/prod/GET /x", rate=2.0, burst=3)
    assert [(await store.admit([b], None, 100.0)).admitted for _ in range(4)] == [True, True, True, False]
    refused = await store.admit([b], None, 100.0)
    assert (refused.reason, refused.retry_after) == ("stage", 1)
    assert (await store.admit([b], None, 100.5)).admitted  # half a second at 2/s: one token
    assert not (await store.admit([b], None, 100.5)).admitted
    assert [(await store.admit([b], None, 1000.0)).admitted for _ in range(4)] == [True, True, True, False]


async def test_buckets_are_checked_in_order_and_a_refusal_consumes_nothing():
    store = state.MemoryStore()
    plan = bucket("plan:k", rate=1.0, burst=5, reason="plan")
    stage = bucket("stage:s", rate=1.0, burst=1, reason="stage")
    quota = state.Quota(key="shop/basic:alice", limit=10, period_start=0.0, period_end=86400.0)
    assert (await store.admit([plan, stage], quota, 10.0)).quota_remaining == 9
    refused = await store.admit([plan, stage], quota, 10.0)
    assert (refused.admitted, refused.reason) == (False, "stage")
    # Neither the plan's bucket nor the quota paid for the refused request.
    assert (await store.used(["shop/basic:alice"], 0.0)) == {"shop/basic:alice": 1}
    assert [(await store.admit([plan], None, 10.0)).admitted for _ in range(5)] == [True] * 4 + [False]


async def test_a_quota_refuses_until_its_next_period_and_says_when():
    store = state.MemoryStore()
    quota = state.Quota(key="q", limit=2, period_start=0.0, period_end=100.0)
    assert (await store.admit([], quota, 1.0)).admitted
    assert (await store.admit([], quota, 2.0)).admitted
    refused = await store.admit([], quota, 40.5)
    assert (refused.admitted, refused.reason, refused.retry_after, refused.quota_remaining) == (False, "quota", 60, 0)
    following = state.Quota(key="q", limit=2, period_start=100.0, period_end=200.0)
    assert (await store.admit([], following, 100.0)).quota_remaining == 1
    assert await store.used(["q", "never"], 100.0) == {"q": 1, "never": 0}


class Thing:
    def __init__(self, name: str, closed: list[str]) -> None:
        self.name, self._closed = name, closed

    async def close(self) -> None:
        self._closed.append(self.name)


async def test_resources_survive_a_round_that_claims_them_and_retire_when_none_does():
    closed: list[str] = []
    resources = runtime.Resources(retire_seconds=0.05)
    resources.begin()
    first = resources.claim("shop/cognito", lambda: Thing("cognito", closed))
    resources.claim("shop/old", lambda: Thing("old", closed))
    resources.settle()
    resources.begin()
    assert resources.claim("shop/cognito", lambda: Thing("new", closed)) is first  # kept across the swap
    resources.settle()
    assert closed == []  # "old" retires after the grace period, not at once
    for _ in range(100):
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == ["old"]
    assert resources.keys() == frozenset({"shop/cognito"})
    await resources.close()
    assert closed == ["old", "cognito"]


async def test_a_resource_claimed_again_during_its_grace_period_is_not_closed():
    closed: list[str] = []
    resources = runtime.Resources(retire_seconds=0.05)
    resources.begin()
    resources.claim("k", lambda: Thing("k", closed))
    resources.settle()
    resources.begin()
    resources.settle()  # unclaimed: retiring
    resources.begin()
    resources.claim("k", lambda: Thing("other", closed))
    resources.settle()
    await asyncio.sleep(0.1)
    assert closed == []
    await resources.close()
    assert closed == ["k"]
