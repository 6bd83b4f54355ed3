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
from typing import TextIO

from propylon_proxy import metrics

CAPACITY = 10_000  # lines; about 5 MB of JSON at worst
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
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            out = self._stream or sys.stdout
            try:
                out.write(f"{item}\n")
                out.flush()
            except (OSError, ValueError):
                pass  # stdout closed or broken: nothing to log to, and nothing to raise into

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
