"""Access-log lines leave the event loop through a bounded queue and one writer thread.

A write to stdout blocks when whatever reads it (a container runtime, a pipe, a terminal) is
slow; done on the event loop, that stall would hold every request of this worker. Here the loop
only appends to a bounded queue; a daemon thread writes and flushes. When the queue is full
(stdout has been slow for ``capacity`` lines) the line is dropped and
``propylon_access_log_dropped_total`` counts it: requests are never blocked by logging.
"""

from __future__ import annotations

import atexit
import queue
import sys
import threading
import time
from typing import TextIO

from propylon_proxy import metrics

CAPACITY = 10_000  # lines; about 5 MB of JSON at worst
BATCH_PAUSE = 0.005  # seconds the writer naps after a write: lines reach stdout at most this late
MAX_BATCH = 1_000  # lines per write
_STOP = object()


class LineWriter:
    def __init__(
        self, stream: TextIO | None = None, dropped: metrics.Counter | None = None, capacity: int = CAPACITY
    ) -> None:
        self._stream = stream  # None = sys.stdout as it is when the line is written
        self._dropped = dropped
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def write(self, line: str) -> None:
        """Never blocks: the line is queued or, with the queue full, dropped and counted."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1
            if self._dropped is not None:
                self._dropped.inc(())

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="propylon-access-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        # Lines go out in batches: whatever is queued is written and flushed at once, then the
        # thread naps for BATCH_PAUSE so the next lines gather while no one waits on the queue
        # (a put then wakes no thread). One line per write cost the loop a thread wake-up per
        # request and the writer a write and a flush each (perf-policy, docs/performance.md).
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            batch = [get()]
            while batch[-1] is not _STOP and len(batch) < MAX_BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            lines = batch[:-1] if stop else batch
            if lines:
                out = self._stream or sys.stdout
                try:
                    out.write("".join([f"{item}\n" for item in lines]))
                    out.flush()
                except (OSError, ValueError):
                    pass  # stdout closed or broken: nothing to log to, and nothing to raise into
            if stop:
                return
            time.sleep(BATCH_PAUSE)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (up to ``timeout`` seconds), then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)
