"""Why a request was late: event-loop lag, garbage collections and run-queue wait, per window.

An answer can be late for three reasons a latency figure cannot tell apart: the event loop was
busy with something else (a long callback, a collection), the process was not running at all
(the kernel gave its core to another process: on a shared machine this is the usual one), or it
was waiting on something outside (the backend). This watch measures the first two from inside
the gateway, so a tail measured from outside (bench/open_loop.py) can be attributed:

- loop lag: a timer asks to run every ``TICK`` seconds and records how late it ran (anything
  that held the loop, including the process being descheduled);
- GC: ``gc.callbacks`` times every collection, by generation;
- run-queue wait: ``/proc/thread-self/schedstat``'s second field, nanoseconds the loop's
  thread was runnable but not running (Linux schedstats), read at every probe: the part of a
  probe's lag that is not run-queue wait is ``held``, the time this process's own work (a long
  callback, a collection, or just the requests queued in the iteration in progress and the next:
  asyncio runs a due timer only in the iteration after it fell due) kept the loop from the timer.
  A tail with ``held`` small and the wait large is the machine's, not the gateway's.

Off unless ``PROPYLON_LOOP_WATCH`` names a file; then one JSON line per ``WINDOW`` seconds is
appended to it (wall-clock ``t`` at the window's end), which bench/run.py reads per round.
Started by ``gc_tuning.settle()`` (the serve and kube-proxy processes, once listening).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from typing import Any, TextIO

ENV = "PROPYLON_LOOP_WATCH"
TICK = 0.005  # s between loop-lag probes: 200 wake-ups/s, a few µs each
WINDOW = 0.5  # s per reported line


class _Schedstat:
    """This thread's schedstat, read with one pread (about 2 µs) so it can be read every probe."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None  # no schedstats (another kernel): waits read as 0

    def read(self) -> tuple[int, int]:
        """(ns on a CPU, ns runnable but waiting for one) so far; (0, 0) without schedstats."""
        if self._fd is None:
            return 0, 0
        try:
            on_cpu, waiting, _ = os.pread(self._fd, 128, 0).split()
            return int(on_cpu), int(waiting)
        except (OSError, ValueError):
            return 0, 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Watch:
    """The probes of one event loop, summed per window and written as one line each."""

    def __init__(self, loop: asyncio.AbstractEventLoop, out: TextIO) -> None:
        self._loop = loop
        self._out = out
        self._gc_started = 0.0
        self._reset()
        self._schedstat = _Schedstat()
        self._sched = self._tick_sched = self._schedstat.read()
        # Lag on time.monotonic(), not loop.time(): uvloop's clock moves in whole milliseconds.
        self._window_end = time.monotonic() + WINDOW
        self._due = time.monotonic() + TICK
        self._handle = loop.call_later(TICK, self._tick)
        gc.callbacks.append(self._on_gc)

    def _reset(self) -> None:
        self.lags: list[float] = []
        self.held: list[float] = []  # each probe's lag less the run-queue wait during it
        self.gc_ms: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_ms[info["generation"]].append((time.perf_counter() - self._gc_started) * 1000)

    def _tick(self) -> None:
        now = time.monotonic()
        sched = self._schedstat.read()
        lag = now - self._due
        self.lags.append(lag)
        self.held.append(max(0.0, lag - (sched[1] - self._tick_sched[1]) / 1e9))
        self._tick_sched = sched
        if now >= self._window_end:
            self._report()
            self._window_end = now + WINDOW
        self._due = now + TICK
        self._handle = self._loop.call_later(TICK, self._tick)

    def _report(self) -> None:
        on_cpu, waiting = self._schedstat.read()
        lags = sorted(self.lags)
        held = max(self.held, default=0.0)
        line = {
            "t": round(time.time(), 3),
            "pid": os.getpid(),
            "lag_max_ms": round(lags[-1] * 1000, 3) if lags else 0.0,
            "lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 3) if lags else 0.0,
            "lag_over_5ms": sum(1 for lag in lags if lag > 0.005),
            "held_max_ms": round(held * 1000, 3),
            "held_over_5ms": sum(1 for h in self.held if h > 0.005),
            "cpu_ms": round((on_cpu - self._sched[0]) / 1e6, 3),
            "runqueue_wait_ms": round((waiting - self._sched[1]) / 1e6, 3),
            "gc": {
                str(gen): [len(times), round(sum(times), 3), round(max(times, default=0.0), 3)]
                for gen, times in self.gc_ms.items()
            },  # generation: [collections, total ms, longest ms]
        }
        self._sched = (on_cpu, waiting)
        self._reset()
        try:
            self._out.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._out.flush()
        except (OSError, ValueError):
            self.close()  # nowhere to report to: stop probing

    def close(self) -> None:
        self._handle.cancel()
        self._schedstat.close()
        with contextlib.suppress(OSError):
            self._out.close()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)


def start_from_env() -> Watch | None:
    """A watch on the running loop if ``PROPYLON_LOOP_WATCH`` names a file, else None."""
    path = os.environ.get(ENV)
    if not path:
        return None
    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    return Watch(asyncio.get_running_loop(), out)
