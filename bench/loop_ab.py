"""asyncio against uvloop under the same ``propylon serve``, interleaved (issue 15, perf-loop).

Two serves of bench/manifests from this tree, one per loop (``PROPYLON_LOOP``), one at a time on
the target core, the order alternating per round; per round and loop, on the plain proxied route
(GET /bench/hello over the pool):

- saturated: wrk (32 connections, 2 threads) and the serve's CPU µs per request (/proc);
- one connection: wrk -c1's p50 and CPU µs per request (each request alone: its own wake-ups);
- open loop: bench/open_loop.py at half of asyncio's saturated rate *of that round* (the same
  rate for both loops), its p99, the serve's busy share and CPU µs per request, with
  bench/run.py's flags (starved, overloaded, generator late);
- the direct backend's open-loop p99 at the same rate, for the added p99.

Prints one line per measurement, then medians; writes bench/out/loop-ab-*.json. Reuses
bench/run.py's process, wrk and open-loop helpers. ``--fifo`` runs the open-loop rounds under
SCHED_FIFO as run.py's ``--latency-fifo`` does. Run: ``python bench/loop_ab.py --rounds 5``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import run  # bench/ is on sys.path when run as a script

LOOPS = ("asyncio", "uvloop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--fifo", action="store_true", help="open-loop rounds under SCHED_FIFO")
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}
    direct: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="loop-ab-") as tmp:
        work = Path(tmp)
        procs = run.Processes(work)
        try:
            backend_port = run.free_port()
            procs.port_of_backend = backend_port
            run.start_nginx(procs, "upstream-backend", work, backend_port, run.LOAD_CPU)
            backend_url = f"http://127.0.0.1:{backend_port}/hello"
            problem = run.wait_ready(backend_url, procs, "upstream-backend")
            if problem:
                raise RuntimeError(problem)
            urls = {}
            for loop in LOOPS:
                port = run.free_port()
                os.environ["PROPYLON_LOOP"] = loop
                run.start_propylon(procs, f"serve-{loop}", work, port, backend_port)
                urls[loop] = f"http://127.0.0.1:{port}/bench/hello"
                problem = run.wait_ready(urls[loop], procs, f"serve-{loop}")
                if problem:
                    raise RuntimeError(f"serve-{loop}: {problem}")
            os.environ.pop("PROPYLON_LOOP", None)
            prefix = ["chrt", "-f", "1"] if args.fifo else []
            for r in range(args.rounds):
                order = LOOPS if r % 2 == 0 else LOOPS[::-1]
                saturated: dict[str, dict[str, float]] = {}
                for loop in order:
                    name = f"serve-{loop}"
                    run.run_wrk(urls[loop], seconds=1, connections=32, threads=2)  # warm
                    before = procs.cpu_seconds(name)
                    w = run.run_wrk(urls[loop], seconds=args.seconds, connections=32, threads=2)
                    w["cpu_us"] = (procs.cpu_seconds(name) - before) * 1e6 / max(1, w["requests"])
                    saturated[loop] = w
                rate = round(saturated["asyncio"]["requests_per_s"] * 0.5)
                if args.fifo:
                    for loop in LOOPS:
                        procs.set_fifo(f"serve-{loop}")
                    procs.set_fifo("upstream-backend")
                d = run.open_loop_round(backend_url, procs.pids("upstream-backend"), rate, args.seconds, prefix)
                direct.append(d)
                for loop in order:
                    name = f"serve-{loop}"
                    before = procs.cpu_seconds(name)
                    one = run.run_wrk(urls[loop], seconds=args.seconds, connections=1, threads=1, prefix=prefix)
                    one_cpu = (procs.cpu_seconds(name) - before) * 1e6 / max(1, one["requests"])
                    o = run.open_loop_round(urls[loop], procs.pids(name), rate, args.seconds, prefix)
                    row = {
                        "round": r + 1,
                        "saturated_per_s": saturated[loop]["requests_per_s"],
                        "saturated_cpu_us": saturated[loop]["cpu_us"],
                        "one_conn_p50_ms": one["p50_ms"],
                        "one_conn_cpu_us": one_cpu,
                        "open_rate": rate,
                        "open_achieved": o["achieved_per_s"],
                        "open_p99_ms": o["p99_ms"],
                        "open_added_p99_ms": o["p99_ms"] - d["p99_ms"],
                        "open_cpu_us": o["cpu_us_per_request"],
                        "open_busy": o["busy_share"],
                        "open_runqueue": o["runqueue_share"],
                        "flags": o["flags"] + [f"direct {f}" for f in d["flags"] if f == "generator late"],
                    }
                    results[loop].append(row)
                    print(
                        f"round {r + 1} {loop:7} saturated {row['saturated_per_s']:7,.0f}/s"
                        f" {row['saturated_cpu_us']:6.1f} us/req | 1 conn p50 {row['one_conn_p50_ms']:.3f} ms"
                        f" {one_cpu:6.1f} us/req | open {rate}/s achieved {row['open_achieved']:,.0f}:"
                        f" p99 {row['open_p99_ms']:.2f} ms (direct {d['p99_ms']:.2f}, added"
                        f" {row['open_added_p99_ms']:+.2f}) {row['open_cpu_us']:6.1f} us/req busy"
                        f" {row['open_busy'] * 100:.0f}% rq {row['open_runqueue'] * 100:.0f}%"
                        + (f" [{', '.join(row['flags'])}]" if row["flags"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            procs.stop_all()
    keys = ["saturated_cpu_us", "one_conn_cpu_us", "open_cpu_us", "one_conn_p50_ms", "open_added_p99_ms", "open_busy"]
    medians = {loop: {k: statistics.median(row[k] for row in rows) for k in keys} for loop, rows in results.items()}
    print(f"medians of {args.rounds} rounds ({'FIFO' if args.fifo else 'shared'}):")
    for k in keys:
        a, u = medians["asyncio"][k], medians["uvloop"][k]
        ratio = f"uvloop/asyncio {u / a:.3f}" if a else ""
        print(f"  {k:18} asyncio {a:9.3f}  uvloop {u:9.3f}  {ratio}")
    run.OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = run.OUT / f"loop-ab-{stamp}.json"
    out.write_text(json.dumps({"rounds": results, "direct": direct, "medians": medians, "fifo": args.fifo}, indent=1))
    print(f"  raw: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
