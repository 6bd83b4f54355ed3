"""The slow-client limits are the user's to set (DESIGN.md §8: "headers must arrive within 10 s
and the body must not stall for 30 s (→ 408 and close); keep-alive idle 75 s. All
configurable"): ``propylon serve --header-timeout/--body-stall-timeout/--keepalive-timeout``,
run as a user runs it, on both public-listener servers and on the internal listener (aiohttp
always), over raw sockets. Every wait here is far below the default it would otherwise take.
``--response-stall-timeout`` is the fourth ("after the response head, a backend body that stalls
for 30 s ... ends both connections"), against a real backend that stops sending mid-body.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import processes
from tests.ports import free_port

PROPYLON = [sys.executable, "-m", "propylon"]
MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: shop, namespace: demo}
spec:
  models:
    Order: {type: object}
  routes:
    - routeKey: GET /hello
      integration: {type: MOCK, mock: {statusCode: 200, body: hello}}
    - routeKey: POST /orders
      requestValidation: {body: Order}
      integration: {type: MOCK, mock: {statusCode: 200, body: taken}}
    - routeKey: GET /stall
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:BACKEND_PORT/stall"}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: live, namespace: demo}
spec: {apiRef: shop, basePath: /live}
"""
LIMIT = 0.5  # seconds, for each of the four limits
FLAGS = ("--header-timeout", f"{LIMIT}", "--body-stall-timeout", f"{LIMIT}", "--keepalive-timeout", f"{LIMIT}")
FLAGS += ("--response-stall-timeout", f"{LIMIT}")
PROMISED, SENT = 1000, b"x" * 10  # the stalling backend's Content-Length, and all it sends of it
# Long enough for the limit and a loaded machine, far below the defaults (10, 30 and 75 s).
WAIT = 5.0


def _port() -> int:
    """A free loopback port in 10000-30000, where this suite's servers live."""
    while (port := free_port()) > 30000:
        pass
    return port


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class StallingBackend:
    """A loopback HTTP backend that answers every request with a head promising ``PROMISED``
    bytes, sends ``SENT`` of them, and then nothing; it notes each connection the peer ends."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", _port()))
        self.port = self.listener.getsockname()[1]
        self.hang_ups = threading.Semaphore(0)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # closed: the module is done
            threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        with sock:
            with contextlib.suppress(OSError):
                sock.recv(65536)
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (PROMISED, SENT))
                while sock.recv(65536):  # b"": the gateway hung up
                    pass
            self.hang_ups.release()


@pytest.fixture(scope="module")
def stalling_backend() -> Iterator[StallingBackend]:
    backend = StallingBackend()
    yield backend
    backend.listener.close()


@pytest.fixture(scope="module", params=["httptools", "aiohttp"])
def ports(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stalling_backend: StallingBackend
) -> Iterator[dict[str, int]]:
    """One ``serve`` with the four limits at 0.5 s; its public listener on the server named."""
    folder = tmp_path_factory.mktemp("slow-clients")
    (folder / "manifests.yaml").write_text(MANIFESTS.replace("BACKEND_PORT", str(stalling_backend.port)))
    public, internal, admin = _port(), _port(), _port()
    argv = ["serve", "-f", str(folder), "--port", str(public), "--internal-port", str(internal)]
    argv += ["--admin-port", str(admin), "--http-server", str(request.param), *FLAGS]
    serve = processes.PropylonProcess(argv, folder / "serve.log")
    try:
        deadline = time.monotonic() + 30
        while not (_listening(public) and _listening(internal)):
            if serve.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not start: {serve.log()}")
            time.sleep(0.05)
        yield {"public": public, "internal": internal}
    finally:
        serve.stop()


def _exchange(port: int, data: bytes, *, first_answer: bool = False) -> tuple[bytes, float, bool]:
    """Send ``data``, read until the server closes (or WAIT passes): what came back, how long
    it took, and whether the server closed. ``first_answer``: time from the first answer's
    end instead, as the keep-alive idle clock starts there."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        received = b""
        started = time.monotonic()
        deadline = started + WAIT
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, time.monotonic() - started, False
            if not chunk:
                return received, time.monotonic() - started, True
            received += chunk
            if first_answer and received.endswith(b"hello"):
                started = time.monotonic()
                deadline = started + WAIT
        return received, time.monotonic() - started, False


@pytest.mark.parametrize("listener", ["public", "internal"])
def test_a_head_slower_than_header_timeout_gets_408_and_close(ports: dict[str, int], listener: str) -> None:
    answer, took, closed = _exchange(ports[listener], b"GET /live/hello HTTP/1.1\r\nHost: a\r\n")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert answer.endswith(b'{"message": "Request Timeout"}') and closed
    assert LIMIT * 0.8 <= took < WAIT


@pytest.mark.parametrize("listener", ["public", "internal"])
def test_a_body_stalled_longer_than_body_stall_timeout_gets_408_and_close(ports: dict[str, int], listener: str) -> None:
    head = b"POST /live/orders HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    answer, took, closed = _exchange(ports[listener], head + b'{"item": ')
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert answer.endswith(b'{"message": "Request Timeout"}') and closed
    assert LIMIT * 0.8 <= took < WAIT


@pytest.mark.parametrize("listener", ["public", "internal"])
def test_an_idle_keep_alive_connection_closes_after_keepalive_timeout(ports: dict[str, int], listener: str) -> None:
    answer, idle, closed = _exchange(ports[listener], b"GET /live/hello HTTP/1.1\r\nHost: a\r\n\r\n", first_answer=True)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello"), answer
    assert closed, f"still open after {idle:.1f} s idle"
    assert idle < WAIT


@pytest.mark.parametrize("listener", ["public", "internal"])
def test_a_backend_body_stalled_longer_than_response_stall_timeout_ends_both_connections(
    ports: dict[str, int], listener: str, stalling_backend: StallingBackend
) -> None:
    answer, took, closed = _exchange(ports[listener], b"GET /live/stall HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert closed, f"still open after {took:.1f} s"  # cut, so the client knows the body is incomplete
    assert body == SENT  # nothing is made up to complete it
    assert LIMIT * 0.8 <= took < WAIT
    assert stalling_backend.hang_ups.acquire(timeout=WAIT)  # the backend's connection was ended too


def _refusal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROPYLON, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    "flag", ["--header-timeout", "--body-stall-timeout", "--keepalive-timeout", "--response-stall-timeout"]
)
@pytest.mark.parametrize(
    ("bad", "said"), [("0", "must be above 0 s"), ("-2", "must be above 0 s"), ("soon", "not a number")]
)
def test_serve_refuses_a_bad_limit_before_it_listens(tmp_path: Path, flag: str, bad: str, said: str) -> None:
    (tmp_path / "manifests.yaml").write_text(MANIFESTS)
    port = _port()
    done = _refusal(
        "serve", "-f", str(tmp_path), "--port", str(port), "--internal-port", "0", "--admin-port", "0", flag, bad
    )
    assert done.returncode == 2
    assert f"argument {flag}: {said}" in done.stderr, done.stderr
    assert not _listening(port)
