"""Issue 8, item 1, through `propylon serve`: a route with a broken reference refuses, it never
falls through to a less specific route (DESIGN.md section 1, "Such a route fails closed")."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served, _wait_for, _write


@pytest.fixture
def backend() -> Iterator[backends.Backend]:
    with backends.Backend(backends.fixed(b"from the backend")) as server:
        yield server


def _request(method: str, url: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: "DELETE /users/{{id}}"
      authorizer: okta
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/guarded/{{id}}"}}
    - routeKey: "GET /orders/{{id}}"
      integration: {{type: HTTP_PROXY, service: {{name: orders, port: 80}}}}
    - routeKey: "ANY /{{proxy+}}"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/open/{{proxy}}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: users}}
"""

ORDERS = """\
apiVersion: v1
kind: Service
metadata: {{name: orders, namespace: shop}}
spec: {{ports: [{{port: 80, targetPort: {port}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: orders-1, namespace: shop, labels: {{kubernetes.io/service-name: orders}}}}
addressType: IPv4
ports: [{{port: {port}}}]
endpoints:
  - addresses: [127.0.0.1]
"""


def test_a_route_naming_a_missing_authorizer_refuses_instead_of_falling_through(
    tmp_path: Path, backend: backends.Backend
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.format(port=backend.port))
    (folder / "orders.yaml").write_text(ORDERS.format(port=backend.port))
    served = Served(folder, tmp_path)
    try:
        status, headers, body = _request("DELETE", served.url("/prod/users/42"))
        assert status == 500
        assert headers["x-propylon-error-type"] == "AUTHORIZER_CONFIGURATION_ERROR"
        assert json.loads(body) == {"message": "Internal Server Error"}
        assert not [line for line in backend.lines() if line.startswith("DELETE")]  # never reached a backend
        # the rest of the Api serves, and startup named the route that refuses
        assert _request("GET", served.url("/prod/orders/7"))[0] == 200
        assert _request("GET", served.url("/prod/anything"))[0] == 200
        assert "refuses every request (500 AUTHORIZER_CONFIGURATION_ERROR)" in served.stderr()
    finally:
        served.stop()


def test_a_service_deleted_under_watch_makes_its_route_refuse(tmp_path: Path, backend: backends.Backend) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.format(port=backend.port))
    orders = folder / "orders.yaml"
    _write(orders, ORDERS.format(port=backend.port))
    served = Served(folder, tmp_path, "--watch")
    try:
        assert _request("GET", served.url("/prod/orders/7"))[0] == 200
        orders.unlink()

        def refused() -> bool:
            return _request("GET", served.url("/prod/orders/8"))[0] == 500

        assert _wait_for(refused, 15), served.stderr()
        status, headers, body = _request("GET", served.url("/prod/orders/9"))
        assert status == 500
        assert headers["x-propylon-error-type"] == "API_CONFIGURATION_ERROR"
        assert json.loads(body) == {"message": "Internal server error"}
        assert not [line for line in backend.lines() if "/open/orders" in line]  # no fall-through to ANY /{proxy+}
    finally:
        served.stop()


class _Slow:
    """Answers after ``delay`` seconds, so requests are in flight when the gateway is told to stop."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrived = threading.Semaphore(0)

    def __call__(self, request: backends.Received) -> backends.Answer:
        self.arrived.release()
        time.sleep(self.delay)  # the backend's own slowness, not a wait on a limit
        return backends.Answer(body=b"x" * 100_000)


SLOW_API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: slow, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /slow"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/slow"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: slow}}
"""


def test_sigterm_drains_every_accepted_request_and_refuses_new_ones(tmp_path: Path) -> None:
    """Issue 8, item 7: not ready, stop accepting, let what was accepted finish."""
    slow = _Slow(delay=6.5)  # longer than the 5 s the old shutdown allowed
    backend = backends.Backend(slow, protocol="HTTP/1.1")
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(SLOW_API.format(port=backend.port))
    served = Served(folder, tmp_path, "--drain-seconds", "20")
    in_flight = 12
    results: list[tuple[int, int] | str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            status, _, body = _request("GET", served.url("/prod/slow"), timeout=30)
            outcome: tuple[int, int] | str = (status, len(body))
        except Exception as error:  # a failed accepted request is what this test counts
            outcome = repr(error)
        with lock:
            results.append(outcome)

    try:
        clients = [threading.Thread(target=one) for _ in range(in_flight)]
        for client in clients:
            client.start()
        for _ in range(in_flight):  # every request has reached the backend: all were accepted
            assert slow.arrived.acquire(timeout=10)
        served.process.send_signal(signal.SIGTERM)
        refused = _wait_for(lambda: not _connectable(served.port), 5)
        assert refused, "the public listener still accepts after SIGTERM"
        for client in clients:
            client.join(timeout=30)
        assert results == [(200, 100_000)] * in_flight
        assert served.process.wait(timeout=30) == 0
    finally:
        served.stop()
        backend.close()


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
