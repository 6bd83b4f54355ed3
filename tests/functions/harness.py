"""Processes for the function tests: ``python -m propylon.function`` handlers and ``propylon serve``."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port

HANDLERS = Path(__file__).parent / "handlers"


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited {process.returncode}: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"{process.args} did not listen: {log.read_text(errors='replace')}")


class Process:
    def __init__(self, argv: list[str], log: Path, port: int, cwd: Path | None = None) -> None:
        self.port, self.log = port, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)

    def wait(self) -> Process:
        wait_listening(self.process, self.port, self.log)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def function(spec: str, tmp: Path, *extra: str, path: Path = HANDLERS) -> Process:
    port = free_port()
    argv = [sys.executable, "-m", "propylon.function", spec, "--host", "127.0.0.1", "--port", str(port)]
    return Process([*argv, "--path", str(path), *extra], tmp / f"fn-{spec}-{port}.log", port)


def serve(folder: Path, tmp: Path) -> Process:
    port, internal, admin = free_port(), free_port(), free_port()
    argv = [sys.executable, "-m", "propylon", "serve", "-f", str(folder), "--port", str(port)]
    argv += ["--internal-port", str(internal), "--admin-port", str(admin)]
    return Process(argv, tmp / "serve.log", port)


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]
