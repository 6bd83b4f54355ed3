"""The access log's writer thread: lines reach stdout in order, a stalled stdout drops (and
counts) lines instead of blocking the caller, and close() writes what is still queued."""

from __future__ import annotations

import contextlib
import os
import threading

from propylon_proxy import log_writer, metrics


def test_lines_reach_the_stream_in_order_and_close_drains():
    read_fd, write_fd = os.pipe()
    out = os.fdopen(write_fd, "w")
    writer = log_writer.LineWriter(out)
    for n in range(100):
        writer.write(f'{{"n":{n}}}')
    writer.close()
    out.close()
    with os.fdopen(read_fd) as pipe:
        assert pipe.read().splitlines() == [f'{{"n":{n}}}' for n in range(100)]
    assert writer.dropped == 0


def test_a_stalled_stdout_drops_and_counts_lines_and_never_blocks():
    # Nobody reads this pipe: once its kernel buffer is full the writer thread blocks in write().
    read_fd, write_fd = os.pipe()
    out = os.fdopen(write_fd, "w")
    gateway = metrics.GatewayMetrics()
    writer = log_writer.LineWriter(out, dropped=gateway.access_log_dropped, capacity=50)
    line = "x" * 4096
    done = threading.Event()

    def flood() -> None:
        for _ in range(2_000):  # ~8 MB: far beyond a pipe buffer plus the queue
            writer.write(line)
        done.set()

    caller = threading.Thread(target=flood, daemon=True)
    caller.start()
    caller.join(60)
    assert done.is_set(), "write() blocked on a stalled stream"
    assert writer.dropped > 0
    assert gateway.access_log_dropped.value(()) == writer.dropped
    assert "propylon_access_log_dropped_total" in gateway.render()
    os.close(read_fd)  # the writer's next write fails (EPIPE) and it moves on
    writer.close(timeout=5)
    with contextlib.suppress(OSError):
        out.close()


def test_a_line_the_stream_cannot_encode_is_escaped_and_its_batch_still_written():
    # A lone surrogate (a client's undecodable byte kept by surrogateescape) cannot be written
    # to a strict UTF-8 stream; the lines queued with it must still reach the log.
    read_fd, write_fd = os.pipe()
    out = os.fdopen(write_fd, "w", encoding="utf-8", errors="strict")
    writer = log_writer.LineWriter(out, render=str)
    writer.write('{"n":0}')
    writer.write('{"ua":"bad\udcff"}')
    writer.write('{"n":2}')
    writer.close()
    out.close()
    with os.fdopen(read_fd, encoding="utf-8") as pipe:
        assert pipe.read().splitlines() == ['{"n":0}', '{"ua":"bad\\udcff"}', '{"n":2}']
