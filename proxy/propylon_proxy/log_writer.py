"""Access-log lines leave the event loop through a bounded queue and one writer thread.

A write to stdout blocks when whatever reads it (a container runtime, a pipe, a terminal) is
slow; done on the event loop, that stall would hold every request of this worker. Here the loop
only appends an item (an ``access_log.Entry``, or a line already made) to a bounded deque; a
daemon thread turns items into lines (``render``), writes and flushes. When the queue is full
(stdout has been slow for ``capacity`` lines) the item is dropped and
``propylon_access_log_dropped_total`` counts it: requests are never blocked by logging.

The queue is a ``collections.deque`` (append and popleft are atomic in CPython) rather than a
``queue.Queue``: a put then takes no lock and notifies no condition. The thread is woken by an
event only when it went idle on an empty queue; under load it naps ``BATCH_PAUSE`` between
batches and never needs waking. Measured in process (issue 15, perf-policy2): the loop's side
of a line 1.1 us (``Queue.put_nowait``) -> 0.1 us.

Under ``serve --workers N`` every worker inherits the one stdout. When that is a pipe (a
container runtime, ``| tee``), a write over ``PIPE_BUF`` (4 KiB) is not atomic, so two workers'
batches interleaved mid-line (44 of 4,000 lines unparseable with 6 KB User-Agents). The
workers then share one lock (``share_stream_lock``, a semaphore made before the fork) and hold
it for each batch's write and flush: a batch leaves whole. Off the loop; one acquire per batch.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from propylon_proxy import access_log, metrics

CAPACITY = 10_000  # lines; about 5 MB of JSON at worst
BATCH_PAUSE = 0.005  # seconds the writer naps after a write: lines reach stdout at most this late
MAX_BATCH = 1_000  # lines per write

# A lock shared with sibling processes writing to the same stdout (``share_stream_lock``), or
# None for a process of its own. Anything with acquire/release (multiprocessing's Lock).
_stream_lock: Any = None


def share_stream_lock(lock: Any) -> None:
    """Serialise this process's batches with its siblings' on the stdout they share: called in
    each ``serve --workers`` worker with one lock its parent made before forking."""
    global _stream_lock
    _stream_lock = lock


class LineWriter:
    def __init__(
        self,
        stream: TextIO | None = None,
        dropped: metrics.Counter | None = None,
        capacity: int = CAPACITY,
        render: Callable[[Any], str] = access_log.text,
    ) -> None:
        self._stream = stream  # None = sys.stdout as it is when the line is written
        self._dropped = dropped
        self._capacity = capacity
        self._render = render  # item -> line (without its newline), on the writer thread
        self._pending: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._idle = False  # the thread waits on _wake: the next write must set it
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def write(self, item: Any) -> None:
        """Never blocks: the item is queued or, with the queue full, dropped and counted."""
        if self._thread is None:
            self._start()
        pending = self._pending
        if len(pending) >= self._capacity:
            self.dropped += 1
            if self._dropped is not None:
                self._dropped.inc(())
            return
        pending.append(item)
        if self._idle:
            self._wake.set()

    def _start(self) -> None:
        self._stop = stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stop,), name="propylon-access-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self, stop: threading.Event) -> None:
        # Lines go out in batches: whatever is queued is rendered, written and flushed at once,
        # then the thread naps for BATCH_PAUSE so the next lines gather while no one waits (a
        # write then wakes no thread). One line per write cost the loop a thread wake-up per
        # request and the writer a write and a flush each (perf-policy, docs/performance.md).
        pending, wake, render = self._pending, self._wake, self._render
        popleft = pending.popleft
        while True:
            if not pending:
                if stop.is_set():
                    return
                self._idle = True
                if not pending and not stop.is_set():  # a write between the two checks set _wake
                    wake.wait()
                wake.clear()
                self._idle = False
                continue
            batch = [popleft() for _ in range(min(len(pending), MAX_BATCH))]
            out = self._stream or sys.stdout
            try:
                text = "".join([f"{render(item)}\n" for item in batch])
            except ValueError:
                continue  # an item that cannot be made a line (never expected): not the thread's end
            shared = _stream_lock
            if shared is not None:
                shared.acquire()
            try:
                out.write(text)
                out.flush()
            except UnicodeEncodeError:
                # One line the stream cannot encode (a lone surrogate from a client's bytes)
                # must not cost the batch its other lines: write them one at a time, that one
                # with the unencodable characters escaped.
                self._write_each(out, text.splitlines(keepends=True))
            except (OSError, ValueError):
                pass  # stdout closed or broken: nothing to log to, and nothing to raise into
            finally:
                if shared is not None:
                    shared.release()
            if not stop.is_set():
                time.sleep(BATCH_PAUSE)

    def _write_each(self, out: TextIO, lines: list[str]) -> None:
        for line in lines:
            try:
                try:
                    out.write(line)
                except UnicodeEncodeError:
                    out.write(line.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))
            except (OSError, ValueError):
                return  # the stream is broken: the rest cannot be written either
        with contextlib.suppress(OSError, ValueError):
            out.flush()

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (up to ``timeout`` seconds), then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None or self._stop is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
