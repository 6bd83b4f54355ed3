"""With ``--redis-cluster``, one API key's excess must not refuse another key's requests.

A key's plan buckets and quota live in one cluster slot, the route's stage bucket in another.
When both slots were asked at once, a hot key's refused requests took stage tokens before
their refusal gave them back, so a second key was refused (``reason="stage"``) by a stage
bucket that had tokens for it, and a quota refusal came back THROTTLED with the stage's
Retry-After. Real ``propylon serve`` processes against a real three-node Redis Cluster on
loopback (``redis_servers.redis_cluster``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pathlib
from collections.abc import Iterator

import aiohttp
import pytest

from propylon_proxy import redis_store, state
from tests import redis_servers
from tests.serve.test_usage_plans import PATIENT, serving


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_servers.RedisCluster]:
    with redis_servers.redis_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


KEYS = {"a1": "value-for-key-a1-0123456789", "a2": "value-for-key-a2-0123456789"}


def _manifests(folder: pathlib.Path, plan_limits: str, stage_burst: int) -> pathlib.Path:
    """The auditor's repro: a stage bucket with no refill to speak of, one plan, two keys."""
    folder.mkdir(parents=True, exist_ok=True)
    secrets = "".join(
        f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: demo, labels: {{plan: pc}}}}\n"
        f'stringData: {{value: "{value}"}}\n'
        for name, value in KEYS.items()
    )
    (folder / "m.yaml").write_text(
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: shop, namespace: demo}\n"
        "spec:\n  routes:\n    - routeKey: GET /q\n      apiKeyRequired: true\n"
        "      integration: {type: MOCK, mock: {statusCode: 200, body: q}}\n"
        "---\napiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: live, namespace: demo}\n"
        "spec:\n  apiRef: shop\n  throttle: {rateLimit: 0.001, burstLimit: "
        f"{stage_burst}}}\n"
        "---\napiVersion: propylon.dev/v1alpha1\nkind: UsagePlan\nmetadata: {name: pc, namespace: demo}\n"
        f"spec:\n  stages: [{{stageRef: live}}]\n{plan_limits}\n  apiKeySelector: {{matchLabels: {{plan: pc}}}}\n"
        + secrets
    )
    return folder


async def _fire(url: str) -> list[tuple[str, int, str | None, str | None]]:
    """a1 sends 40 requests while a2 sends 5, interleaved, all at once: (key, status, error type,
    Retry-After) of each."""

    async with aiohttp.ClientSession() as session:

        async def one(key: str) -> tuple[str, int, str | None, str | None]:
            async with session.get(url, headers={"x-api-key": KEYS[key]}) as response:
                await response.read()
                headers = response.headers
                return key, response.status, headers.get("x-propylon-error-type"), headers.get("Retry-After")

        jobs = [one("a1") for _ in range(40)]
        for i in range(5):
            jobs.insert(8 * i + 4, one("a2"))
        return list(await asyncio.gather(*jobs))


@pytest.mark.parametrize(
    ("plan_limits", "stage_burst", "refusal"),
    [
        ("  throttle: {rateLimit: 0.001, burstLimit: 5}", 10, ("THROTTLED", "plan")),
        # One stage token to spare: a request that finds the stage empty AND the quota spent
        # is THROTTLED by the stage (checked first, DESIGN §4), on one Redis as on a cluster.
        ("  quota: {limit: 5, period: MONTH}", 11, ("QUOTA_EXCEEDED", "quota")),
    ],
    ids=["plan-bucket", "quota"],
)
@pytest.mark.parametrize("store", ["cluster", "redis"])
def test_one_keys_excess_never_refuses_another_key_on_a_redis_cluster(
    tmp_path: pathlib.Path,
    cluster: redis_servers.RedisCluster,
    store: str,
    plan_limits: str,
    stage_burst: int,
    refusal: tuple[str, str],
) -> None:
    """The same answers as one Redis (``store="redis"``, the reference) gives."""
    for node in cluster.nodes:
        node.cli("FLUSHALL")
    folder = _manifests(tmp_path / "manifests", plan_limits, stage_burst)
    with contextlib.ExitStack() as stack:
        if store == "cluster":
            flags: tuple[str, ...] = ("--redis", cluster.url, "--redis-cluster", *PATIENT)
        else:
            single = redis_servers.RedisServer(tmp_path / "redis")
            stack.callback(single.stop)
            flags = ("--redis", single.start().url, *PATIENT)
        _assert_a2_gets_all(folder, tmp_path, flags, refusal)


def _assert_a2_gets_all(
    folder: pathlib.Path, tmp_path: pathlib.Path, flags: tuple[str, ...], refusal: tuple[str, str]
) -> None:
    with serving(folder, tmp_path, ("gw", flags)) as (gateway,):
        answers = asyncio.run(_fire(gateway.url("/q")))
        metrics = _text(gateway.admin_url("/metrics"))
    counted = collections.Counter((key, status) for key, status, _, _ in answers)
    assert counted == {("a1", 200): 5, ("a1", 429): 35, ("a2", 200): 5}  # a2 was owed all 5 stage tokens
    error_type, reason = refusal
    assert {(kind, key) for key, status, kind, _ in answers if status == 429} == {(error_type, "a1")}
    if reason == "quota":  # until the next month, not the stage bucket's 1000 s
        assert all(int(after or 0) > 1000 for _, status, _, after in answers if status == 429)
    throttled = [line for line in metrics.splitlines() if line.startswith("propylon_throttled_total")]
    assert len(throttled) == 1 and f'reason="{reason}"' in throttled[0] and throttled[0].endswith(" 35.0"), throttled


def _text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def test_a_request_the_stage_and_the_quota_both_refuse_is_throttled_by_the_stage(
    cluster: redis_servers.RedisCluster,
) -> None:
    """The key's slot now answers first; when it refuses on the quota, the stage bucket (before
    the quota in DESIGN §4's order) is looked at without taking, so the answer is the one a
    single Redis gives: THROTTLED by the stage when it is empty too, the quota when it is not."""
    store = redis_store.RedisStore(cluster.url, cluster=True, server_time=False, timeout=2.0)
    try:
        plan = state.Bucket(key="plan:{pc:both}", rate=0.0, burst=100, reason="plan")
        stage = state.Bucket(key="stage:{route-both}", rate=0.5, burst=1, reason="stage")
        quota = state.Quota(key="quota:{pc:both}", limit=1, period_start=0.0, period_end=1e6)
        assert (await store.admit([plan, stage], quota, 10.0)).admitted
        both = await store.admit([plan, stage], quota, 10.0)  # stage empty, quota spent
        assert (both.admitted, both.reason, both.retry_after) == (False, "stage", 2)
        quota_only = await store.admit([plan, stage], quota, 20.0)  # the stage has refilled
        assert (quota_only.admitted, quota_only.reason, quota_only.quota_remaining) == (False, "quota", 0)
        assert (await store.admit([stage], None, 20.0)).admitted  # the peek took no stage token
        assert await store.used([quota.key], 0.0) == {quota.key: 1}
    finally:
        await store.close()
