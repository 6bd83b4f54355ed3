"""HTTP_PROXY audit (DESIGN.md section 2.1), through a real ``propylon serve``:

* A ``service`` target whose backend had closed a kept-alive connection the gateway then reused
  (it took the request and hung up without a byte) answered 502 INTEGRATION_FAILURE: the pool
  reports that as a connect failure so an idempotent request is retried, and the retry marked
  the endpoint failed and excluded it. A one-endpoint Service had nothing left to retry on
  (a ``url`` target retried the same backend and got 200). A stale connection says nothing
  about the endpoint: the retry may go anywhere, the endpoint is not marked failed.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.test_serve import Served


class OneAnswerPerConnection:
    """Answers the first request on each connection (keep-alive), then closes the connection
    on the next request without sending a byte: a backend that timed the connection out as
    the gateway reused it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                self.connections += 1
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            buffer, answered = b"", False
            while data := conn.recv(65536):
                buffer += data
                while b"\r\n\r\n" in buffer:
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    if answered:
                        return  # the second request: hang up without an answer
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    answered = True

    def close(self) -> None:
        self._listener.close()


MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: stale, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /svc", integration: {{type: HTTP_PROXY, service: {{name: one, port: 80}}}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: stale, basePath: /prod}}
---
apiVersion: v1
kind: Service
metadata: {{name: one, namespace: shop}}
spec: {{ports: [{{port: 80, name: http}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: one-1, namespace: shop, labels: {{kubernetes.io/service-name: one}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"""


@pytest.fixture
def backend() -> Iterator[OneAnswerPerConnection]:
    server = OneAnswerPerConnection()
    yield server
    server.close()


@pytest.mark.parametrize("http_server", ["httptools", "aiohttp"])
def test_a_stale_kept_alive_connection_to_a_one_endpoint_service_is_retried_on_it(
    tmp_path: Path, backend: OneAnswerPerConnection, http_server: str
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(MANIFESTS.format(port=backend.port), encoding="utf-8")
    served = Served(folder, tmp_path, "--http-server", http_server)
    try:
        answers = []
        for _ in range(4):  # from the second on, each reuses the connection the last one left
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
            try:
                connection.request("GET", "/prod/svc")
                response = connection.getresponse()
                answers.append((response.status, response.getheader("x-propylon-error-type"), response.read()))
            finally:
                connection.close()
        assert answers == [(200, None, b"ok")] * 4
        assert backend.connections >= 4  # the stale ones were really reused, then retried anew
    finally:
        served.stop()
