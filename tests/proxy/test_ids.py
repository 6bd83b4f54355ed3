"""The gateway's random ids: well-formed, never repeated, different in a forked child."""

from __future__ import annotations

import os
import re
import uuid

from propylon_proxy import ids

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_request_ids_are_version_4_uuids_and_never_repeat():
    # Enough ids to go through the random buffer many times over.
    made = [ids.request_id() for _ in range(20_000)]
    assert all(UUID4.fullmatch(x) for x in made)
    assert all(uuid.UUID(x).version == 4 for x in made[:100])
    assert len(set(made)) == len(made)


def test_trace_and_span_ids_are_hex_of_the_w3c_lengths():
    traces = [ids.trace_id() for _ in range(5_000)]
    spans = [ids.span_id() for _ in range(5_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces)
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in spans)
    assert len(set(traces)) == len(traces)
    assert len(set(spans)) == len(spans)


def test_a_forked_child_does_not_repeat_the_parents_ids():
    ids.request_id()  # the buffer now holds unused random bytes the child must not reuse
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, ids.request_id().encode())
        os._exit(0)
    os.close(write_end)
    try:
        child_id = os.read(read_end, 100).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    parent_id = ids.request_id()
    assert UUID4.fullmatch(child_id)
    assert child_id != parent_id
