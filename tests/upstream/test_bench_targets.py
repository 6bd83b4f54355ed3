"""bench/'s issue-15 parts: the TARGETS verdicts, the scale manifests, the open-loop generator.

The generator is checked against a real aiohttp server that stalls once: a closed-loop client
would see one slow request, an open-loop one must count every request whose intended send time
fell inside the stall as late (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import goals  # noqa: E402
import open_loop  # noqa: E402
import scale  # noqa: E402

from propylon_proxy import hygiene, routing  # noqa: E402


def _figures(rounds: dict[str, dict[int, float]] | None = None, **cpu: float) -> goals.Figures:
    summary = {
        name.replace("_", "-"): {"cpu_us_per_request": us, "requests_per_s": 1e6 / us} for name, us in cpu.items()
    }
    return goals.Figures(summary=summary, extra={"compile_1000x10_s": 3.5, "rss_10k_mib": 100.0}, rounds=rounds or {})


def _plain(figures: goals.Figures) -> dict[str, object]:
    """The plain-route goal's row of ``figures``."""
    return {r["goal"]: r for r in goals.evaluate(figures)}["plain route vs aiohttp hello-world, per core"]


def test_verdicts_follow_the_bars_and_missing_inputs_are_not_a_pass():
    rows = {r["goal"]: r for r in goals.evaluate(_figures(propylon_pool=100.0, aiohttp_hello=50.0))}
    plain = rows["plain route vs aiohttp hello-world, per core"]
    assert (round(plain["figure"], 2), plain["verdict"]) == (0.5, "FAIL")  # 50 / 100 < 0.6
    assert rows["compile 1,000 Apis x 10 routes (in process, CPU s)"]["verdict"] == "FAIL"  # 3.5 s, not < 3
    assert rows["RSS per worker with 10,000 routes"]["verdict"] == "PASS"
    assert rows["cache hit vs aiohttp hello-world, per core"]["verdict"] == "n/a"  # propylon-cached not measured
    rows = {r["goal"]: r for r in goals.evaluate(_figures(propylon_pool=100.0, aiohttp_hello=70.0))}
    assert rows["plain route vs aiohttp hello-world, per core"]["verdict"] == "PASS"
    table = goals.table(goals.evaluate(_figures(propylon_pool=100.0, aiohttp_hello=70.0)))
    assert "| plain route vs aiohttp hello-world, per core | 0.70x | 0.70x | - | >= 0.6x | PASS |" in table


def test_the_same_round_ratio_pairs_each_round_with_its_own_reference():
    """The verdict reads the ratio of medians; beside it, the median of per-round ratios, which
    a round where the whole machine was slow (both targets dearer) does not skew."""
    figures = goals.Figures(
        summary={
            "propylon-pool": {"cpu_us_per_request": 100.0, "requests_per_s": 1e4},
            "aiohttp-hello": {"cpu_us_per_request": 55.0, "requests_per_s": 1.8e4},
        },
        extra={},
        rounds={
            "propylon-pool": {1: 80.0, 2: 100.0, 3: 160.0, 4: 90.0},
            "aiohttp-hello": {1: 50.0, 2: 55.0, 3: 100.0},  # round 4 lost: not paired
        },
    )
    rows = {r["goal"]: r for r in goals.evaluate(figures)}
    plain = rows["plain route vs aiohttp hello-world, per core"]
    assert plain["verdict"] == "FAIL"  # 55 / 100 = 0.55x: the verdict is still the medians' ratio
    median, lowest, highest, rounds = plain["same_round"]
    assert (round(median, 3), lowest, round(highest, 3), rounds) == (0.625, 0.55, 0.625, 3)
    # Its rounds read 0.55x to 0.625x: on both sides of the 0.6x bar, which the verdict says.
    unsettled = "unsettled: the same-round ratios 0.55-0.62 fall on both sides of the bar"
    assert plain["caveat"] == unsettled
    assert f"| 0.55x | 0.56x | 0.62x (0.55-0.62, 3) | >= 0.6x | FAIL ({unsettled}) |" in goals.table([plain])
    assert rows["cache hit vs aiohttp hello-world, per core"]["same_round"] is None  # not measured


def test_a_verdict_whose_rounds_all_agree_is_not_called_unsettled():
    rounds = {"propylon-pool": {1: 100.0, 2: 100.0, 3: 100.0}, "aiohttp-hello": {1: 50.0, 2: 52.0, 3: 59.0}}
    plain = _plain(_figures(rounds, propylon_pool=100.0, aiohttp_hello=52.0))
    assert (plain["verdict"], plain["caveat"]) == ("FAIL", None)  # 0.50x-0.59x: every round under 0.6x
    one = {"propylon-pool": {1: 100.0}, "aiohttp-hello": {1: 61.0}}
    plain = _plain(_figures(one, propylon_pool=100.0, aiohttp_hello=61.0))
    assert (plain["verdict"], plain["caveat"]) == ("PASS", None)  # one round: the verdict is its own


def test_a_verdict_that_every_round_contradicts_is_unsettled():
    """With rounds lost on one side, the ratio of medians can pass while no paired round does."""
    rounds = {
        "propylon-pool": {1: 100.0, 2: 100.0, 3: 60.0, 4: 60.0, 5: 60.0},  # median 60
        "aiohttp-hello": {1: 55.0, 2: 58.0},  # rounds 3 to 5 lost: median 56.5
    }
    plain = _plain(_figures(rounds, propylon_pool=60.0, aiohttp_hello=56.5))
    assert plain["verdict"] == "PASS"  # 56.5 / 60
    assert plain["caveat"] == "unsettled: every same-round ratio (0.55-0.58) says the opposite"


def test_scale_manifests_compile_and_the_probe_reaches_the_last_stage():
    timed = scale.compile_seconds(30, 10, repeats=1)  # raises on any diagnostic
    assert timed["routes"] == 300
    from propylon_compiler import compiler, diagnostics, manifests

    docs = [
        manifests.Document(origin=diagnostics.Origin(file="s", document=i), body=b)
        for i, b in enumerate(scale.documents(30, 10, 8081))
    ]
    snapshot = compiler.compile(docs).snapshot
    stage, match, _ = routing.StageTable(snapshot.stages).find("GET", "h", hygiene.split_target(scale.probe_path(30)))
    assert stage is not None and stage.name == "s29"
    assert match is not None and match.route.route_key == "GET /r0"


async def test_open_loop_counts_the_requests_a_stall_delayed():
    served = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        if served == 50:  # one stall of 300 ms, well inside the measured second
            await asyncio.sleep(0.3)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/hello", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        result = await open_loop.measure("127.0.0.1", port, "/hello", rate=200, seconds=1.0, warmup=0.1, connections=1)
    finally:
        await runner.cleanup()
    # Every scheduled request was sent and measured, late or not ...
    assert result["requests"] == pytest.approx(200, abs=2)
    # ... and the ~60 scheduled during the stall (5 ms apart on one connection) count as late:
    # a closed loop would have shown one slow request, under its 99th percentile.
    assert result["p90_ms"] >= 20
    assert result["p99_ms"] >= 150
    assert result["non_2xx"] == 0


async def _serve(handler: object) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/hello", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_open_loop_blames_a_stall_on_the_server_not_on_itself():
    served = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        if served == 50:
            await asyncio.sleep(0.3)
        return web.Response(text="ok")

    runner, port = await _serve(handler)
    try:
        result = await open_loop.measure("127.0.0.1", port, "/hello", rate=200, seconds=1.0, warmup=0.1, connections=1)
    finally:
        await runner.cleanup()
    # The sends behind the stall went out late (they waited for the stalled answer) ...
    assert result["send_lag_p99_ms"] >= 150
    # ... but each went out as soon as its connection was free: the lateness is the server's.
    assert result["generator_lag_p99_ms"] < result["send_lag_p99_ms"] / 2
    assert len(result["worst_ms_per_100ms"]) == 10
    assert max(result["worst_ms_per_100ms"]) >= 250  # the stall's 100 ms slot
    assert result["generator_cpu_window_ms"] > 0


async def test_open_loop_reports_an_achieved_rate_below_the_asked_one_when_the_server_cannot_keep_up():
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)  # one connection: at most 50 answers/s
        return web.Response(text="ok")

    runner, port = await _serve(handler)
    try:
        result = await open_loop.measure("127.0.0.1", port, "/hello", rate=200, seconds=0.5, warmup=0.0, connections=1)
    finally:
        await runner.cleanup()
    assert result["requests"] == pytest.approx(100, abs=2)  # every scheduled request is still measured
    assert result["achieved_per_s"] < 0.97 * 200  # what run.py flags "overloaded"
    assert result["p99_ms"] >= 1000  # the queue's latency, not the server's 20 ms


def test_schedstat_reads_a_process_and_its_threads():
    on_cpu, waiting = open_loop.schedstat("self")
    sum(range(3_000_000))  # ~50 ms of CPU: several scheduler ticks
    assert open_loop.schedstat("self")[0] > on_cpu >= 0 and waiting >= 0


def _open_loop_figures(**extra: float) -> goals.Figures:
    return goals.Figures(summary={}, extra={"added_p99_open_loop_ms": 9.0, **extra})


def test_the_p99_verdict_names_starved_and_overloaded_rounds():
    def verdict(**extra: float) -> dict[str, object]:
        rows = goals.evaluate(_open_loop_figures(**extra))
        return next(r for r in rows if r["goal"].startswith("added latency p99"))

    clean = verdict(open_loop_rounds=3, open_loop_starved_rounds=0, open_loop_overloaded_rounds=0)
    assert (clean["verdict"], clean["caveat"]) == ("FAIL", None)
    starved = verdict(
        open_loop_rounds=3,
        open_loop_starved_rounds=2,
        open_loop_overloaded_rounds=1,
        open_loop_runqueue_share=0.31,
        added_p99_open_loop_clean_ms=1.5,
    )
    assert starved["verdict"] == "FAIL"
    assert starved["caveat"] == (
        "2/3 rounds starved: the gateway waited 31% of the window for a CPU; "
        "1/3 overloaded: the rate was above what the core gave; clean rounds: 1.50 ms"
    )
    assert "| FAIL (2/3 rounds starved" in goals.table([starved])
    late = verdict(open_loop_rounds=3, open_loop_generator_lag_p99_ms=4.9, added_p99_open_loop_clean_ms=1.0)
    assert late["caveat"] == "the generator itself sent late by 4.9 ms at p99; clean rounds: 1.00 ms"
    rows = {r["goal"]: r for r in goals.evaluate(_open_loop_figures(open_loop_runqueue_share=0.31))}
    share = rows["open loop: the gateway's run-queue wait (runnable, no CPU), share of the window, median"]
    assert (round(share["figure"]), share["verdict"]) == (31, "reported")
