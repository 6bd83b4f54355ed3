"""Issue 15's targets: each one a figure computed from one run of bench/run.py, its bar, PASS/FAIL.

A goal reads the run's ``Figures``: the per-target summary of the interleaved wrk rounds (see
run.py's ``summarize``) and ``extra``, what the run measured besides (latency at one connection
and open loop, compile time, RSS). Ratios of two targets are per core (the inverse of CPU time
per request of the target's own processes): on a shared machine requests/s moves with whatever
else runs, CPU per request much less; the requests/s ratio is shown beside it. The verdict reads
the ratio of the two targets' medians; beside it, the median of the per-round ratios (both
measured in the same round, seconds apart) with its range: on 2026-12-04 one 4-second window
moved ±30 % even on a quiet machine, and the same-round figure drifts less from run to run
(bench/RESULTS.md). When those per-round ratios fall on both sides of the bar (or all on the
other side of the verdict), the verdict says so ("unsettled"): that run alone does not decide
the target. A goal whose
inputs were not measured (a target not asked for, or skipped) reads "n/a", never PASS.

Adding a target is one entry in ``GOALS``.
"""

from __future__ import annotations

import dataclasses
import operator
import statistics
from collections.abc import Callable
from typing import Any

Summary = dict[str, dict[str, float]]


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    summary: Summary
    extra: dict[str, float]
    rounds: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)  # target -> round -> CPU µs/req


SameRound = tuple[float, float, float, int]  # median, lowest, highest, rounds


@dataclasses.dataclass(frozen=True, slots=True)
class Goal:
    name: str
    figure: Callable[[Figures], float | None]
    bar: float | None  # None: reported, no target
    compare: str = ">="  # how the figure must stand to the bar: ">=", "<=" or "<"
    unit: str = "x"
    rps_ratio: Callable[[Figures], float | None] | None = None  # the requests/s twin of a ratio
    # Why the figure may not be the target's own (a starved or overloaded measurement): shown
    # beside the verdict, so a machine's stall is not read as the gateway's.
    caveat: Callable[[Figures], str | None] | None = None
    pair: tuple[str, str] | None = None  # a ratio's (target, reference): what a baseline twin swaps in
    same_round: Callable[[Figures], SameRound | None] | None = None  # a ratio's per-round figure


def per_core(target: str, reference: str) -> Callable[[Figures], float | None]:
    """How many requests ``target`` serves per core for each one ``reference`` does."""

    def figure(f: Figures) -> float | None:
        a, b = f.summary.get(target, {}), f.summary.get(reference, {})
        if "cpu_us_per_request" not in a or "cpu_us_per_request" not in b:
            return None
        return b["cpu_us_per_request"] / a["cpu_us_per_request"]

    return figure


def per_round(target: str, reference: str) -> Callable[[Figures], SameRound | None]:
    """``per_core`` of each round that measured both, as (median, lowest, highest, rounds)."""

    def figure(f: Figures) -> SameRound | None:
        a, b = f.rounds.get(target, {}), f.rounds.get(reference, {})
        ratios = [b[n] / a[n] for n in sorted(a.keys() & b.keys()) if a[n] and b[n]]
        if not ratios:
            return None
        return statistics.median(ratios), min(ratios), max(ratios), len(ratios)

    return figure


def rps(target: str, reference: str) -> Callable[[Figures], float | None]:
    def figure(f: Figures) -> float | None:
        a, b = f.summary.get(target), f.summary.get(reference)
        return a["requests_per_s"] / b["requests_per_s"] if a and b and b["requests_per_s"] else None

    return figure


def extra(key: str) -> Callable[[Figures], float | None]:
    return lambda f: f.extra.get(key)


def open_loop_caveat(f: Figures) -> str | None:
    """The open-loop rounds nobody can blame on the gateway, and what the clean ones say."""
    rounds = f.extra.get("open_loop_rounds")
    if not rounds:
        return None
    starved = int(f.extra.get("open_loop_starved_rounds", 0))
    overloaded = int(f.extra.get("open_loop_overloaded_rounds", 0))
    late = f.extra.get("open_loop_generator_lag_p99_ms", 0.0)
    if not starved and not overloaded and late <= 1.0:
        return None
    notes = []
    if starved:
        share = f.extra.get("open_loop_runqueue_share", 0.0) * 100
        notes.append(f"{starved}/{rounds:.0f} rounds starved: the gateway waited {share:.0f}% of the window for a CPU")
    if overloaded:
        notes.append(f"{overloaded}/{rounds:.0f} overloaded: the rate was above what the core gave")
    if late > 1.0:  # in both figures of a round, but not equally: the difference carries it
        notes.append(f"the generator itself sent late by {late:.1f} ms at p99")
    clean = f.extra.get("added_p99_open_loop_clean_ms")
    notes.append(f"clean rounds: {clean:.2f} ms" if clean is not None else "no clean round")
    return "; ".join(notes)


def _ratio_fields(target: str, reference: str) -> dict[str, Any]:
    """What a ratio goal reads of its pair: one place for ``ratio`` and its baseline twin."""
    return {
        "figure": per_core(target, reference),
        "rps_ratio": rps(target, reference),
        "pair": (target, reference),
        "same_round": per_round(target, reference),
    }


def ratio(name: str, target: str, reference: str, bar: float | None) -> Goal:
    return Goal(name=name, bar=bar, **_ratio_fields(target, reference))


def twin_goal(goal: Goal, figures: Figures, rev: str) -> Goal | None:
    """``goal`` on ``--baseline REV``'s twins (``name@REV`` where the run has one; a reference
    without a twin, such as aiohttp-hello, stays itself), or None when neither side has a twin."""
    if goal.pair is None:
        return None
    target, reference = (f"{n}@{rev}" if f"{n}@{rev}" in figures.summary else n for n in goal.pair)
    if (target, reference) == goal.pair:
        return None
    return dataclasses.replace(goal, name=f"{goal.name} @{rev}", **_ratio_fields(target, reference))


GOALS: list[Goal] = [
    ratio("plain route vs aiohttp hello-world, per core", "propylon-pool", "aiohttp-hello", 0.6),
    ratio("plain route vs nginx reverse proxy, per core", "propylon-pool", "nginx-proxy", 0.2),
    ratio(
        "full policy (key+plan throttles+quota+JWT warm+validation+access log) vs the same POST plain",
        "propylon-full",
        "propylon-posted",
        0.85,
    ),
    ratio("JWT cold (a new RS256 token per request) vs plain", "propylon-jwt-cold", "propylon-pool", 0.45),
    ratio("cache hit vs aiohttp hello-world, per core", "propylon-cached", "aiohttp-hello", 0.8),
    ratio("limits on Redis (keyed-redis) vs plain", "propylon-keyed-redis", "propylon-pool", 0.6),
    Goal("added latency p50 at one connection, over the direct backend", extra("added_p50_1conn_ms"), 0.5, "<=", "ms"),
    Goal(
        "added latency p99, open loop at 50% of the plain route's peak (measured just before each round),"
        " over the direct backend",
        extra("added_p99_open_loop_ms"),
        2.0,
        "<=",
        "ms",
        caveat=open_loop_caveat,
    ),
    Goal(
        "open loop: the gateway's run-queue wait (runnable, no CPU), share of the window, median",
        lambda f: None if "open_loop_runqueue_share" not in f.extra else f.extra["open_loop_runqueue_share"] * 100,
        None,
        unit="%",
    ),
    Goal(
        "open loop: the gateway's worst loop lag less its run-queue wait (its own work, queued requests)",
        extra("open_loop_held_max_ms"),
        None,
        unit="ms",
    ),
    ratio("10,000 routes (1,000 Stages) vs 10 routes", "propylon-routes10k", "propylon-routes10", 0.95),
    Goal("compile 1,000 Apis x 10 routes (in process, CPU s)", extra("compile_1000x10_s"), 3.0, "<", "s"),
    Goal("RSS per worker with 10,000 routes", extra("rss_10k_mib"), 150.0, "<", "MiB"),
    Goal(
        "--workers 2 vs 1, requests/s (both cores for 2, shared with wrk)",
        rps("propylon-workers2", "propylon-pool"),
        None,
    ),
    ratio("catch-all ANY /{proxy+} vs literal GET /hello", "propylon-catchall", "propylon-pool", None),
]

_COMPARE = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def evaluate(figures: Figures, baseline: str | None = None) -> list[dict[str, Any]]:
    """One row per goal: name, figure, the requests/s ratio (ratios only), bar, verdict; with
    ``baseline``, the ratio goals on that revision's twins instead (those the run measured)."""
    rows = []
    chosen = GOALS if baseline is None else [g for g in (twin_goal(g, figures, baseline) for g in GOALS) if g]
    for goal in chosen:
        value = goal.figure(figures)
        same_round = goal.same_round(figures) if goal.same_round else None
        unsettled = None
        if value is None:
            verdict = "n/a"
        elif goal.bar is None:
            verdict = "reported"
        else:
            passes = _COMPARE[goal.compare]
            passed = passes(value, goal.bar)
            verdict = "PASS" if passed else "FAIL"
            if same_round is not None:
                unsettled = _unsettled(passes, goal.bar, passed, same_round)
        caveat = goal.caveat(figures) if goal.caveat and value is not None else None
        rows.append(
            {
                "caveat": "; ".join(note for note in (caveat, unsettled) if note) or None,
                "goal": goal.name,
                "figure": value,
                "unit": goal.unit,
                "rps_ratio": goal.rps_ratio(figures) if goal.rps_ratio else None,
                "same_round": same_round,
                "target": None if goal.bar is None else f"{goal.compare} {goal.bar:g}{goal.unit}",
                "verdict": verdict,
            }
        )
    return rows


def _unsettled(passes: Callable[[float, float], bool], bar: float, passed: bool, same_round: SameRound) -> str | None:
    """Said beside a verdict when this run's own rounds do not agree with it: they fall on both
    sides of the bar, or all on the other side (the verdict reads the ratio of medians, which
    pairs no round with its own). One run then does not decide the target: on 2026-12-06 four
    default runs of the same code read the plain route 0.62, 0.51, 0.52 and 0.61x against its
    0.6x bar (bench/RESULTS.md)."""
    _, lowest, highest, _ = same_round
    low, high = passes(lowest, bar), passes(highest, bar)
    if low != high:
        return f"unsettled: the same-round ratios {lowest:.2f}-{highest:.2f} fall on both sides of the bar"
    if low != passed:
        return f"unsettled: every same-round ratio ({lowest:.2f}-{highest:.2f}) says the opposite"
    return None


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if unit == "x" else f"{value:.2f} {unit}"


def _same_round(value: SameRound | None) -> str:
    if value is None:
        return "-"
    median, lowest, highest, rounds = value
    return f"{median:.2f}x ({lowest:.2f}-{highest:.2f}, {rounds})"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | figure | req/s ratio | same-round median (range, rounds) | bar | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio_cell = _number(row["rps_ratio"], "x") if row["unit"] == "x" else ""
        same_cell = _same_round(row.get("same_round")) if row["unit"] == "x" else ""
        verdict = row["verdict"] + (f" ({row['caveat']})" if row.get("caveat") else "")
        cells = [row["goal"], _number(row["figure"], row["unit"]), ratio_cell, same_cell, row["target"] or "-", verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
