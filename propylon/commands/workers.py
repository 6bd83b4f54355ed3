"""``serve --workers N``: N forked worker processes under one supervising parent.

Each worker is a full gateway with its own event loop, forked after the parent compiled the
files, so every worker serves the same snapshot with the same sealing and key-hashing secrets
(they never leave these processes). The public and internal ports are shared by SO_REUSEPORT:
the kernel spreads new connections over the workers. Limits are exact because the workers share
one store (``--redis``, or the private ``redis-server`` ``serve`` starts).

The parent only supervises, with no event loop (forking from a running loop is unsafe):

- it reports ready once every worker listens;
- SIGTERM or SIGINT: every worker gets SIGTERM and drains (``--drain-seconds``); one still
  running 10 s after that is killed;
- a worker that exits on its own is logged and the others are stopped, and the parent exits 1:
  no restart here, because a restarted worker could not know the reloads its siblings made;
  the process supervisor (Kubernetes, systemd) restarts the whole ``serve``;
- workers die with the parent: on Linux the kernel sends them SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable

from propylon.commands import private_redis

KILL_AFTER_DRAIN = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

RunWorker = Callable[[int, Callable[[], None]], int]


def _child(index: int, parent: int, ready_r: int, ready_w: int, run_worker: RunWorker) -> None:
    """In the forked worker: never returns, so no parent code runs twice."""
    code = 1
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        private_redis.die_with_parent(signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)
        os.close(ready_r)

        def ready() -> None:
            os.write(ready_w, bytes([index % 256]))

        code = run_worker(index, ready)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Supervisor:
    def __init__(self, count: int, run_worker: RunWorker, drain_seconds: float, say: Callable[[str], None]) -> None:
        self.count, self.run_worker, self.drain_seconds, self.say = count, run_worker, drain_seconds, say
        self.pids: dict[int, int] = {}  # pid -> worker index, while running
        self.stop_requested = False

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def run(self, on_ready: Callable[[], None]) -> int:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        ready_r, ready_w = os.pipe()
        try:
            parent = os.getpid()
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # no parent handler runs in a fresh child
            try:
                for index in range(self.count):
                    pid = os.fork()
                    if pid == 0:
                        _child(index, parent, ready_r, ready_w, self.run_worker)
                    self.pids[pid] = index
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            os.close(ready_w)
            return self._supervise(ready_r, on_ready)
        finally:
            os.close(ready_r)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _reap(self) -> list[tuple[int, int, int]]:
        """Workers that exited since the last call: (index, pid, exit code)."""
        gone = []
        for pid, index in list(self.pids.items()):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
                gone.append((index, pid, os.waitstatus_to_exitcode(status)))
            self.pids.pop(pid, None)
        return gone

    def _supervise(self, ready_r: int, on_ready: Callable[[], None]) -> int:
        waiting = self.count
        failed = False
        while not self.stop_requested:
            readable, _, _ = select.select([ready_r], [], [], 0.2) if waiting else ([], [], [])
            if readable:
                waiting -= len(os.read(ready_r, waiting))
                if waiting == 0:
                    on_ready()
            elif not waiting:
                time.sleep(0.2)
            gone = self._reap()
            if self.stop_requested:  # a signal to the whole group (Ctrl-C, timeout) also stops workers
                break
            for index, pid, code in gone:
                self.say(
                    f"propylon: worker {index} (pid {pid}) exited with {_describe_exit(code)}; stopping the others"
                )
            if gone:
                failed = True
                break
        self._stop_all()
        return 1 if failed else 0

    def _stop_all(self) -> None:
        if self.stop_requested:
            self.say(
                f"propylon: stopping {len(self.pids)} workers (running requests get up to {self.drain_seconds:g} s)"
            )
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds + KILL_AFTER_DRAIN
        while self.pids and time.monotonic() < deadline:
            for index, pid, code in self._reap():
                if code != 0:
                    self.say(f"propylon: worker {index} (pid {pid}) exited with {_describe_exit(code)}")
            time.sleep(0.05)
        for pid, index in list(self.pids.items()):
            self.say(f"propylon: worker {index} (pid {pid}) still running after the drain; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.pids.pop(pid, None)


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
