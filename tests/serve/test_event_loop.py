"""`serve --loop auto|asyncio|uvloop` as a user runs it: the loop it says it runs, a real proxied
request on it, a clean drain on SIGTERM, and what happens without uvloop installed.

The proxy tables (tests/proxy, the modules that run on both servers) run in-process on both
loops too (tests/proxy/conftest.py); here the command itself is held to its flag.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon.commands import event_loops
from tests.ports import free_port

PROPYLON = [sys.executable, "-m", "propylon"]
# The same command with uvloop made unimportable (as on a machine where it is not installed).
WITHOUT_UVLOOP = [
    sys.executable,
    "-c",
    "import sys; sys.modules['uvloop'] = None; from propylon import cli; sys.exit(cli.main(sys.argv[1:]))",
]

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: demo}}
spec:
  routes:
    - routeKey: GET /hello
      integration: {{type: MOCK, mock: {{statusCode: 200, body: 'hello'}}}}
    - routeKey: ANY /up/{{proxy+}}
      integration: {{type: HTTP_PROXY, url: 'http://127.0.0.1:{port}/{{proxy}}'}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: demo}}
spec: {{apiRef: shop, basePath: /live}}
"""

needs_uvloop = pytest.mark.skipif(not event_loops.uvloop_installed(), reason="uvloop is not installed")


@pytest.fixture
def backend() -> Iterator[int]:
    """A real aiohttp backend on loopback, in its own process, that echoes the path and body."""
    port = free_port()
    code = (
        "import sys\nfrom aiohttp import web\n"
        "async def echo(request):\n"
        "    body = await request.read()\n"
        "    return web.Response(text=request.path + ' ' + body.decode(), headers={'x-backend': 'yes'})\n"
        "app = web.Application()\napp.router.add_route('*', '/{tail:.*}', echo)\n"
        f"web.run_app(app, host='127.0.0.1', port={port}, print=None)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_listening(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    pytest.fail("did not listen")


class Served:
    def __init__(self, command: list[str], folder: Path, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.stderr_path = tmp / "serve.stderr"
        argv = [*command, "serve", "-f", str(folder), "--port", str(self.port)]
        argv += ["--internal-port", str(free_port()), "--admin-port", str(free_port()), *extra]
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=_environ())
        try:
            _wait_listening(self.port, self.process)
        except BaseException:
            self.stop()
            raise

    def get(self, path: str, data: bytes | None = None) -> tuple[int, str, str | None]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers.get("x-backend")

    def startup_line(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.stderr_path.read_text(errors="replace").splitlines():
                if line.startswith("propylon serve: public"):
                    return line
            time.sleep(0.05)
        pytest.fail(f"no startup line: {self.stderr_path.read_text(errors='replace')}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


@pytest.fixture
def folder(tmp_path: Path, backend: int) -> Path:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "shop.yaml").write_text(MANIFESTS.format(port=backend))
    return manifests


@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_serve_proxies_on_the_loop_asked_for_and_drains(loop: str, folder: Path, tmp_path: Path) -> None:
    served = Served(PROPYLON, folder, tmp_path, "--loop", loop)
    try:
        assert f", {loop}" in served.startup_line()
        assert served.get("/live/hello")[:2] == (200, "hello")
        # A proxied GET and POST through the pool, on this loop's transports, both servers' way in.
        assert served.get("/live/up/a/b") == (200, "/a/b ", "yes")
        assert served.get("/live/up/posted", data=b"x" * 70_000) == (200, "/posted " + "x" * 70_000, "yes")
    finally:
        assert served.stop() == 0  # SIGTERM: drained and closed cleanly, the loop's executor too


@needs_uvloop
def test_auto_takes_uvloop_when_it_is_installed(folder: Path, tmp_path: Path) -> None:
    served = Served(PROPYLON, folder, tmp_path)  # --loop auto (PROPYLON_LOOP unset)
    try:
        assert ", uvloop" in served.startup_line()
        assert served.get("/live/up/x")[2] == "yes"
    finally:
        assert served.stop() == 0


def test_without_uvloop_auto_runs_asyncio(folder: Path, tmp_path: Path) -> None:
    served = Served(WITHOUT_UVLOOP, folder, tmp_path, "--loop", "auto")
    try:
        assert ", asyncio" in served.startup_line()
        assert served.get("/live/up/x")[2] == "yes"
    finally:
        assert served.stop() == 0


def test_without_uvloop_asking_for_it_is_refused(folder: Path) -> None:
    done = subprocess.run(
        [*WITHOUT_UVLOOP, "serve", "-f", str(folder), "--loop", "uvloop", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--loop uvloop: the uvloop package is not installed" in done.stderr


@pytest.mark.parametrize("command", ["serve", "proxy"])
def test_a_bad_loop_is_refused_from_the_flag_or_the_variable(command: str, folder: Path) -> None:
    required = ["-f", str(folder)] if command == "serve" else ["--config-secret", "ns/name"]
    for argv, env in ((["--loop", "trio"], {}), ([], {"PROPYLON_LOOP": "trio"})):
        done = subprocess.run(
            [*PROPYLON, command, *required, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={**_environ(), **env},
        )
        assert done.returncode == 2, (command, argv, env)
        assert "argument --loop: must be one of auto, asyncio, uvloop, got 'trio'" in done.stderr


def _environ() -> dict[str, str]:
    """This environment without PROPYLON_LOOP: each test says which loop it wants."""
    return {k: v for k, v in os.environ.items() if k != "PROPYLON_LOOP"}
