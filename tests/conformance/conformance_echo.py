"""The conformance backend: an aiohttp server that answers with what it received, and remembers it.

It runs in the test process (its own thread and event loop), so the runner can ask what the
backend received for a given ``X-Request-Id`` without parsing anything the gateway relayed, and
can tell that a refused request never reached it. It records the request as it arrived on the
wire: the raw request target (query included), header pairs in order with their case and
duplicates, and the body.

A request may ask for a status with ``x-echo-status: <code>``, to show that a backend's own
error passes through the gateway untouched, and for response headers with
``x-echo-headers: [["Name", "value"], ...]`` (JSON), to show which of them reach the client,
and for a late answer with ``x-echo-delay-ms: <ms>``, to make an integration time out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading

from aiohttp import web


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One request as the backend saw it."""

    method: str
    target: str  # the raw request target: path and query exactly as sent by the gateway
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class EchoBackend:
    """``start()`` binds ``host`` on an ephemeral port; ``received(request_id)`` looks a request up."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
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
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _echo(self, request: web.Request) -> web.Response:
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
        status = int(request.headers.get("x-echo-status", "200"))
        description = {"echo": True, "method": received.method, "target": received.target}
        response = web.Response(status=status, body=json.dumps(description).encode(), content_type="application/json")
        response.headers["x-echo"] = "conformance"
        for name, value in json.loads(request.headers.get("x-echo-headers", "[]")):
            response.headers.add(name, value)
        return response
