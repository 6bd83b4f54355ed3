"""``python -m propylon.function``: timed-out invocations and handlers that exit the runtime."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from pathlib import Path

import harness

INVOKE = "/2015-03-31/functions/function/invocations"
HANDLER = """
import sys, time
from pathlib import Path

def handler(event, context):
    if "exit" in event:
        sys.exit(event["exit"])
    Path(event["mark"]).write_text("ran")
    time.sleep(event.get("t", 0))
    return {"done": event["name"]}
"""


def _invoke(port: int, event: dict[str, object], timeout: float = 30) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", INVOKE, body=json.dumps(event).encode())
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _start(tmp_path: Path, *extra: str) -> harness.Process:
    (tmp_path / "ghost.py").write_text(HANDLER)
    return harness.function("ghost.handler", tmp_path, *extra, path=tmp_path).wait()


def test_a_timed_out_handler_keeps_its_slot_so_the_next_one_is_not_answered_then_run(tmp_path: Path) -> None:
    process = _start(tmp_path, "--timeout", "1")
    first: list[dict[str, object]] = []
    try:
        slow = threading.Thread(
            target=lambda: first.append(_invoke(process.port, {"name": "A", "t": 3, "mark": str(tmp_path / "a")})[1])
        )
        slow.start()
        time.sleep(1.3)  # A has been answered Sandbox.Timedout and still runs
        _, second = _invoke(process.port, {"name": "B", "mark": str(tmp_path / "b")})
        slow.join()
    finally:
        process.stop()
    assert first[0]["errorType"] == "Sandbox.Timedout"
    assert second == {"done": "B"}  # B waited for A's thread, then ran with its own deadline


def test_an_invocation_whose_caller_left_before_it_started_never_runs(tmp_path: Path) -> None:
    process = _start(tmp_path, "--timeout", "1")
    try:
        slow = threading.Thread(
            target=lambda: _invoke(process.port, {"name": "A", "t": 3, "mark": str(tmp_path / "a")})
        )
        slow.start()
        time.sleep(1.3)
        with contextlib.suppress(TimeoutError):
            _invoke(process.port, {"name": "B", "mark": str(tmp_path / "b")}, timeout=0.8)
        slow.join()
        time.sleep(1.0)
        alive = _invoke(process.port, {"name": "C", "mark": str(tmp_path / "c")})
    finally:
        process.stop()
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert alive == (200, {"done": "C"})


def test_sys_exit_is_a_runtime_exit_error_and_the_server_keeps_serving(tmp_path: Path) -> None:
    process = _start(tmp_path)
    try:
        status, answer = _invoke(process.port, {"exit": 3})
        no_reason = _invoke(process.port, {"exit": None})[1]
        alive = _invoke(process.port, {"name": "C", "mark": str(tmp_path / "c")})
    finally:
        process.stop()
    assert status == 502 and answer["errorType"] == "Runtime.ExitError"
    assert str(answer["errorMessage"]).endswith(" Error: Runtime exited with error: exit status 3")
    assert str(answer["errorMessage"]).startswith("RequestId: ")
    assert str(no_reason["errorMessage"]).endswith(" Error: Runtime exited without providing a reason")
    assert alive == (200, {"done": "C"})
