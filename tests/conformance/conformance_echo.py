"""The conformance backend: an aiohttp server that answers with what it received, and remembers it.

``EchoBackend`` runs in the test process (its own thread and event loop), so the runner can ask
what the backend received for a given ``X-Request-Id`` without parsing anything the gateway
relayed, and can tell that a refused request never reached it. It records the request as it
arrived on the wire: the raw request target (query included), header pairs in order with their
case and duplicates, and the body. ``RemoteEcho`` runs the same server as a script inside a test
network namespace (a backend address the API server accepts in an EndpointSlice) and asks it
the same questions over a second, control port.

A request may ask for a status with ``x-echo-status: <code>``, to show that a backend's own
error passes through the gateway untouched, and for response headers with
``x-echo-headers: [["Name", "value"], ...]`` (JSON), to show which of them reach the client,
for a late answer with ``x-echo-delay-ms: <ms>``, to make an integration time out, and for no
answer at all with ``x-echo-drop: 1`` (the connection is closed), to make it fail.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http import server
from typing import Protocol

from aiohttp import web


# The public half of the key that signed the tokens in cases/jwt.yaml (the private half was
# thrown away: the tokens are fixed, and expire in 2100, or earlier where a row needs them to).
JWKS_PATH = "/.well-known/conformance-jwks.json"
_JWKS = pathlib.Path(__file__).with_name("conformance_jwks.json").read_bytes()


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One request as the backend saw it."""

    method: str
    target: str  # the raw request target: path and query exactly as sent by the gateway
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class Backend(Protocol):
    """What the runner asks of a backend, wherever it runs."""

    host: str
    port: int

    def count(self) -> int: ...

    def received(self, request_id: str) -> Received | None: ...

    def close(self) -> None: ...


class EchoBackend:
    """``start()`` binds ``host`` on an ephemeral port; ``received(request_id)`` looks a request up."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._records: dict[str, Received] = {}
        self._unlabelled: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="conformance-echo", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EchoBackend:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=20)
        return self

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=20)

    def count(self) -> int:
        """How many requests reached the backend so far (to show that one did not)."""
        with self._lock:
            return len(self._records) + len(self._unlabelled)

    def received(self, request_id: str) -> Received | None:
        with self._lock:
            return self._records.get(request_id)

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # above any limit the gateway has
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # A socket bound here rather than a TCPSite on port 0: so the port is known without
        # reaching into the site.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _echo(self, request: web.Request) -> web.Response:
        if request.path == JWKS_PATH:
            # The key set JWT cases name as their jwksUri: fetched by the gateway, not a request
            # a row sends, so it is neither recorded nor counted.
            return web.Response(body=_JWKS, content_type="application/json")
        received = Received(
            method=request.method,
            target=request.raw_path,
            headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers),
            body=await request.read(),
        )
        request_id = request.headers.get("X-Request-Id")
        with self._lock:
            if request_id:
                self._records[request_id] = received
            else:
                self._unlabelled.append(received)
        await asyncio.sleep(int(request.headers.get("x-echo-delay-ms", "0")) / 1000)
        if request.headers.get("x-echo-drop") and request.transport is not None:
            request.transport.abort()
            raise web.HTTPInternalServerError  # never sent: the connection is already gone
        status = int(request.headers.get("x-echo-status", "200"))
        description = {"echo": True, "method": received.method, "target": received.target}
        response = web.Response(status=status, body=json.dumps(description).encode(), content_type="application/json")
        response.headers["x-echo"] = "conformance"
        for name, value in json.loads(request.headers.get("x-echo-headers", "[]")):
            response.headers.add(name, value)
        return response


# ---------------------------------------------------------------- in a network namespace


def _as_json(received: Received) -> dict[str, object]:
    return {
        "method": received.method,
        "target": received.target,
        "headers": [list(pair) for pair in received.headers],
        "body": base64.b64encode(received.body).decode(),
    }


def _from_json(data: dict[str, object]) -> Received:
    headers = data["headers"]
    assert isinstance(headers, list)
    return Received(
        method=str(data["method"]),
        target=str(data["target"]),
        headers=tuple((str(n), str(v)) for n, v in headers),
        body=base64.b64decode(str(data["body"])),
    )


def _serve_control(backend: EchoBackend, host: str, port: int) -> server.ThreadingHTTPServer:
    """``GET /count`` and ``GET /received/<request id>`` on a port no case ever routes to."""

    class Control(server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/count":
                answer: object = backend.count()
            elif self.path.startswith("/received/"):
                found = backend.received(self.path.removeprefix("/received/"))
                answer = _as_json(found) if found is not None else None
            else:
                self.send_error(404)
                return
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    control = server.ThreadingHTTPServer((host, port), Control)
    threading.Thread(target=control.serve_forever, name="conformance-echo-control", daemon=True).start()
    return control


def main() -> None:
    parser = argparse.ArgumentParser(description="the conformance echo backend, standalone")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    backend = EchoBackend(args.host, args.port).start()
    _serve_control(backend, args.host, args.control_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    backend.close()


class RemoteEcho:
    """The echo backend as a process in network namespace ``namespace``, listening on ``host``."""

    READY_TIMEOUT = 20.0

    def __init__(self, namespace: str, host: str, port: int = 8090, control_port: int = 8091) -> None:
        self.namespace = namespace
        self.host = host
        self.port = port
        self.control_port = control_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RemoteEcho:
        argv = ["ip", "netns", "exec", self.namespace, sys.executable, __file__, "--host", self.host]
        argv += ["--port", str(self.port), "--control-port", str(self.control_port)]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"echo backend in {self.namespace} exited with {self.process.returncode}")
            try:
                self.count()
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"echo backend {self.host}:{self.port} in {self.namespace} not ready")

    def _ask(self, path: str) -> object:
        url = f"http://{self.host}:{self.control_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def count(self) -> int:
        answer = self._ask("/count")
        assert isinstance(answer, int)
        return answer

    def received(self, request_id: str) -> Received | None:
        answer = self._ask(f"/received/{urllib.parse.quote(request_id, safe='')}")
        return _from_json(answer) if isinstance(answer, dict) else None

    def close(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=10)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


if __name__ == "__main__":
    main()
