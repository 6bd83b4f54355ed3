"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from the intended time.

wrk is closed-loop: a connection sends its next request only when the previous answer came, so
a slow answer delays the requests behind it and they are never measured as late ("coordinated
omission"). Here, as in wrk2, each of ``--connections`` keep-alive connections has a schedule of
intended send times (``rate / connections`` apart, the connections staggered); a request that
goes out late because the one before it was slow still has its latency measured from the time it
was meant to be sent. wrk2 does not install from a registry here, so this is a small Python one.

The event loop runs on ``select()``, whose timeout has microsecond resolution; epoll (asyncio's
default) takes milliseconds, rounded up, so each timed send would wake up to 1 ms late. (Side by
side at 1,000 requests/s against nginx, load average 8 on 2 cores, neither was steady enough to
tell apart: the machine's load swamps both.) The generator's remaining timing error (the load
core is shared with the backend, and here with other work) is in every figure it prints, so
compare two targets measured by it side by side (bench/run.py subtracts the direct backend's
p99 from the gateway's), and read ``send_lag_p99_ms``: how late the sends went out.

On a shared machine a late answer is as often the machine's as the server's, so beside the
percentiles it reports what tells them apart: ``achieved_per_s`` (below ``rate``: the server
fell behind and the figures are its queue's), ``generator_lag_*`` (a send's lateness after its
connection was free: the generator's own, apart from waiting for a late answer), the run-queue
wait (schedstat) of itself and of every ``--pid`` over the window, the hypervisor's steal per
vCPU, and the worst latency per 100 ms (one pause and a growing queue have different shapes).

Prints one JSON object. Run: ``python bench/open_loop.py --port 8080 --path /bench/hello --rate 3000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import selectors
import time
from pathlib import Path
from typing import Any

import httptools


class _Response:
    """Feeds bytes to httptools until one whole response has been read."""

    def __init__(self) -> None:
        self.done = False
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.done = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()


async def _connection(
    host: str,
    port: int,
    request: bytes,
    schedule: tuple[float, float, float, float],  # (first send, interval, measure from, stop)
    records: list[tuple[float, float, float, float]],
    errors: list[int],
) -> None:
    """Send on one keep-alive connection at its intended times; record, for each measured request,
    (intended, ready, sent, done): ``ready`` is when this connection could send it (the intended
    time, or later when the answer before it came late), so ``sent - ready`` is the generator's
    own lateness and ``ready - intended`` the server's."""
    first, interval, measure_from, stop = schedule
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        intended = first
        free = loop.time()  # when the previous answer had come
        while intended < stop:
            wait = intended - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = loop.time()
            writer.write(request)
            response = _Response()
            while not response.done:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                response.parser.feed_data(chunk)
            done = loop.time()
            if intended >= measure_from:
                records.append((intended, max(intended, free), sent, done))
                if not 200 <= response.status < 300:
                    errors[0] += 1
            free = done
            intended += interval
    finally:
        writer.close()


async def _lag_probe(stop: float, lags: list[float]) -> None:
    """The generator's own event-loop lag: how late a 2 ms sleep wakes up, until ``stop``."""
    loop = asyncio.get_running_loop()
    while loop.time() < stop:
        due = loop.time() + 0.002
        await asyncio.sleep(0.002)
        lags.append(loop.time() - due)


def steal_ticks() -> list[int]:
    """Per CPU, clock ticks the hypervisor ran something else while this guest's vCPU wanted to
    run (``/proc/stat``'s steal column): time no process here can see as run-queue wait."""
    rows = [line.split() for line in Path("/proc/stat").read_text().splitlines() if line.startswith("cpu")]
    return [int(row[8]) for row in rows[1:] if len(row) > 8]


def schedstat(pid: int | str) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for a CPU) summed over the threads of ``pid``."""
    on_cpu = waiting = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            fields = task.read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        on_cpu, waiting = on_cpu + int(fields[0]), waiting + int(fields[1])
    return on_cpu, waiting


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def measure(
    host: str,
    port: int,
    path: str,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    connections: int,
    headers: tuple[str, ...] = (),
    pids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Run the schedule; figures in ms. ``pids``: processes (the target's) whose run-queue wait
    (schedstat) over the measured window is reported beside the latencies."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    request = "\r\n".join(lines).encode("latin-1")
    loop = asyncio.get_running_loop()
    interval = connections / rate
    start = loop.time() + 0.2  # time to open the connections
    measure_from = start + warmup
    stop = measure_from + seconds
    records: list[tuple[float, float, float, float]] = []
    lags: list[float] = []
    errors = [0]
    cpu = time.process_time()

    async def window() -> dict[str, Any]:
        """schedstat of the generator and of ``pids`` across the measured window, in ms."""
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        mine, theirs, wall, steal = schedstat("self"), [schedstat(p) for p in pids], time.time(), steal_ticks()
        probe = asyncio.ensure_future(_lag_probe(stop, lags))
        await asyncio.sleep(max(0.0, stop - loop.time()))
        await probe
        mine_after, theirs_after = schedstat("self"), [schedstat(p) for p in pids]
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        return {
            "steal_ms_per_cpu": [(a - b) * tick_ms for a, b in zip(steal_ticks(), steal, strict=True)],
            "generator_runqueue_wait_ms": (mine_after[1] - mine[1]) / 1e6,
            "generator_cpu_window_ms": (mine_after[0] - mine[0]) / 1e6,
            "target_runqueue_wait_ms": sum(a[1] - b[1] for a, b in zip(theirs_after, theirs, strict=True)) / 1e6,
            "target_cpu_window_ms": sum(a[0] - b[0] for a, b in zip(theirs_after, theirs, strict=True)) / 1e6,
            "window_wall_from": wall,
        }

    watching = asyncio.ensure_future(window())
    await asyncio.gather(
        *(
            _connection(
                host,
                port,
                request,
                (start + i * interval / connections, interval, measure_from, stop),
                records,
                errors,
            )
            for i in range(connections)
        )
    )
    watched = await watching
    latencies = [done - intended for intended, _, _, done in records]
    own_lag = [sent - ready for _, ready, sent, _ in records]  # the generator's lateness alone
    served_by = max((done for *_, done in records), default=stop)
    # Worst latency per 100 ms of intended send time: a stall (one pause) and an overload (a
    # queue that grows all along) have different shapes here.
    bins = [0.0] * max(1, math.ceil(seconds * 10))
    for intended, _, _, done in records:
        slot = min(len(bins) - 1, int((intended - measure_from) * 10))
        bins[slot] = max(bins[slot], (done - intended) * 1000)
    return {
        "rate": rate,
        "requests": float(len(records)),
        # Answers per second from the window's start until the last one came: below ``rate``
        # when the target could not keep up (its queue grew: every latency figure is then the
        # queue's, not the target's).
        "achieved_per_s": len(records) / max(seconds, served_by - measure_from),
        "p50_ms": _percentile(latencies, 0.50),
        "p90_ms": _percentile(latencies, 0.90),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": _percentile(latencies, 1.0),
        "send_lag_p99_ms": _percentile([sent - intended for intended, _, sent, _ in records], 0.99),
        "generator_lag_p99_ms": _percentile(own_lag, 0.99),
        "generator_lag_max_ms": _percentile(own_lag, 1.0),
        "generator_loop_lag_p99_ms": _percentile(lags, 0.99),
        "generator_loop_lag_max_ms": _percentile(lags, 1.0),
        **watched,
        "window_seconds": seconds,
        "worst_ms_per_100ms": [round(b, 2) for b in bins],
        "non_2xx": float(errors[0]),
        "generator_cpu_s": time.process_time() - cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--rate", type=float, required=True, help="requests per second, in total")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("-H", "--header", action="append", default=[], help='"Name: value", repeatable')
    parser.add_argument(
        "--pid", action="append", type=int, default=[], help="a target process whose run-queue wait to report"
    )
    args = parser.parse_args()
    # A few connections only, so select()'s cost per wake-up is nothing next to its precision.
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    result = loop.run_until_complete(
        measure(
            args.host,
            args.port,
            args.path,
            rate=args.rate,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            headers=tuple(args.header),
            pids=tuple(args.pid),
        )
    )
    loop.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
