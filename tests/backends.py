"""Loopback HTTP backends for tests: one real server on 127.0.0.1 that records what reached it.

Gateway tests need to see what the gateway sent upstream (or that nothing was sent) and to
choose what the upstream answers. ``Backend`` is a real ``ThreadingHTTPServer`` on an ephemeral
port, serving in a daemon thread: every request is recorded as a ``Received`` (method, target,
headers, whole body) before ``respond`` turns it into an ``Answer``. ``respond`` runs on the
server's handler thread, so it may block (a slow backend) without holding up other requests.

    with backends.Backend(backends.echo_json) as backend:
        ... route to backend.url ...
        assert backend.paths() == ["/users/1"]

Use it as a context manager (or call ``close``) so that no server outlives its test.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Callable
from types import TracebackType


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One request as the backend read it; ``headers`` keeps the names as sent."""

    method: str
    path: str  # the request target: path and query, as sent
    headers: dict[str, str]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        """The value of header ``name``, matched without regard to case, as HTTP means it."""
        wanted = name.lower()
        return next((v for n, v in self.headers.items() if n.lower() == wanted), default)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Respond = Callable[[Received], Answer]


def ok(request: Received) -> Answer:
    """200 ``ok`` to everything."""
    return Answer(body=b"ok")


def echo_json(request: Received) -> Answer:
    """200 with ``{"path", "headers"}`` of the request as JSON: what the gateway sent, visible to the client."""
    body = json.dumps({"path": request.path, "headers": request.headers}).encode()
    return Answer(body=body, headers=(("Content-Type", "application/json"),))


def fixed(body: bytes, status: int = 200, content_type: str | None = None) -> Respond:
    """The same answer to every request."""
    headers = (("Content-Type", content_type),) if content_type else ()
    answer = Answer(status=status, body=body, headers=headers)
    return lambda request: answer


class Backend(http.server.ThreadingHTTPServer):
    """A real HTTP server on loopback, already serving; see the module docstring.

    ``protocol`` is the handler's HTTP version: ``HTTP/1.0`` (the standard library's default)
    closes each connection after its answer; ``HTTP/1.1`` keeps it open for the gateway's pool.
    """

    METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def __init__(self, respond: Respond = ok, *, protocol: str = "HTTP/1.0") -> None:
        self.respond = respond
        self.received: list[Received] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), self._handler_class(protocol))
        self.port = int(self.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.serve_forever, name=f"backend-{self.port}", daemon=True).start()

    def _handler_class(self, protocol: str) -> type[http.server.BaseHTTPRequestHandler]:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = protocol

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Received(self.command, self.path, dict(self.headers.items()), body)
                with backend._lock:
                    backend.received.append(request)
                answer = backend.respond(request)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # tests read ``received``, not stderr

        for method in self.METHODS:
            setattr(Handler, f"do_{method}", Handler._any)
        return Handler

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]

    def lines(self) -> list[str]:
        """``"METHOD target"`` of every request so far, in order."""
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.received]

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [r.body for r in self.received]

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
