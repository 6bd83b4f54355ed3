"""loop_watch: what it writes when the loop is held by the process's own work and when the
collector runs, on a real event loop (the probe measures wall time: that is what it is for)."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path

import pytest

from propylon_proxy import loop_watch


async def test_a_held_loop_and_a_collection_are_reported_in_the_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loop_watch, "WINDOW", 0.1)
    out = tmp_path / "watch.jsonl"
    monkeypatch.setenv(loop_watch.ENV, str(out))
    watch = loop_watch.start_from_env()
    assert watch is not None
    try:
        await asyncio.sleep(0.02)
        time.sleep(0.08)  # the loop's own work holds it: not runnable-and-waiting, so "held"
        gc.collect()
        while not out.exists() or len(out.read_text().splitlines()) < 2:
            await asyncio.sleep(0.02)
    finally:
        watch.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert max(w["held_max_ms"] for w in lines) >= 60
    assert max(w["lag_max_ms"] for w in lines) >= 60
    assert sum(w["gc"]["2"][0] for w in lines) >= 1  # the full collection, timed
    assert sum(w["held_over_5ms"] for w in lines) >= 1
    assert all(w["runqueue_wait_ms"] >= 0 and w["cpu_ms"] >= 0 for w in lines)
    assert watch._on_gc not in gc.callbacks  # closed: no callback left behind


def test_off_without_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(loop_watch.ENV, raising=False)
    assert loop_watch.start_from_env() is None
