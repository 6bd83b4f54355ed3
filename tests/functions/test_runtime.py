"""``python -m propylon.function`` on its own: the RIE protocol as the emulator answers it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import harness

INVOKE = "/2015-03-31/functions/function/invocations"


def test_a_raise_is_the_emulator_error_answer(tmp_path: Path) -> None:
    process = harness.function("plain.boom", tmp_path).wait()
    try:
        status, headers, body = harness.request(process.port, "POST", INVOKE, b"{}")
    finally:
        process.stop()
    answer = json.loads(body)
    assert status == 200 and harness.header(headers, "x-amz-function-error") == ["Unhandled"]
    assert (answer["errorMessage"], answer["errorType"]) == ("boom", "ValueError")
    assert any("raise ValueError" in frame for frame in answer["stackTrace"]) and answer["requestId"]
    assert "ValueError: boom" in process.output()  # and it is logged


def test_an_event_that_is_not_json_is_an_unmarshal_error(tmp_path: Path) -> None:
    process = harness.function("plain.echo", tmp_path).wait()
    try:
        status, _, body = harness.request(process.port, "POST", INVOKE, b"{nope")
        ok_status, _, ok_body = harness.request(process.port, "POST", INVOKE, b'{"rawPath": "/x"}')
    finally:
        process.stop()
    assert status == 200 and json.loads(body)["errorType"] == "Runtime.UnmarshalError"
    context = json.loads(json.loads(ok_body)["body"])["context"]
    assert context["function_name"] == "plain"
    assert context["invoked_function_arn"].endswith(":function:plain")
    assert ok_status == 200


def test_a_coroutine_handler_is_refused_with_a_message() -> None:
    argv = [sys.executable, "-m", "propylon.function", "coroutine.handler", "--path", str(harness.HANDLERS)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "coroutine function" in done.stderr


def test_a_missing_handler_is_refused_with_a_message() -> None:
    argv = [sys.executable, "-m", "propylon.function", "plain.nothing", "--path", str(harness.HANDLERS)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no handler function 'nothing'" in done.stderr
