"""CORS as a real browser sees it: headless Chromium runs a page's ``fetch()`` against
``propylon serve`` (DESIGN.md sections 1 and 8, "CORS").

Two loopback page servers serve the same page; their origins differ by port. The Api lists one
of them. The page's script runs the requests and Chromium itself decides what the page may
read: a preflighted PUT with a custom header is allowed (and an exposed response header
readable), a header or method the Api does not allow fails the preflight, a gateway error (API
key 403) is readable by the allowed origin, and the other origin can read nothing. Results come
back over the DevTools protocol (``Runtime.evaluate`` awaiting the page's promise, over the
websockets client the suite already uses). The backend records what reached it: preflights
never do.

Skips (with the reason) when no Chromium is installed (Debian package ``chromium``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests import backends
from tests.serve.test_serve import Served

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: shop}}
spec:
  cors:
    allowOrigins: ["{origin}"]
    allowMethods: [GET, PUT]
    allowHeaders: [Content-Type, X-Client]
    exposeHeaders: [X-Total]
    maxAge: 600
  routes:
    - routeKey: "ANY /items"
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/items"}}
    - routeKey: "GET /keyed"
      apiKeyRequired: true
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/keyed"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: shop}}
"""

# The page's script: each case is one fetch(); a CORS refusal is the TypeError fetch rejects with.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>cors</title></head><body><script>
async function attempt(url, init) {
  try {
    const response = await fetch(url, init);
    return {status: response.status, body: await response.text(), total: response.headers.get("X-Total")};
  } catch (error) {
    return {refused: error.name};
  }
}
async function runAll(gateway) {
  const json = {"Content-Type": "application/json"};
  return {
    put: await attempt(gateway + "/prod/items", {method: "PUT", headers: {...json, "X-Client": "page"}, body: "{}"}),
    badHeader: await attempt(gateway + "/prod/items", {method: "PUT", headers: {...json, "X-Secret": "1"}, body: "{}"}),
    badMethod: await attempt(gateway + "/prod/items", {method: "DELETE"}),
    error: await attempt(gateway + "/prod/keyed"),
    simple: await attempt(gateway + "/prod/items"),
  };
}
</script></body></html>
"""


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _backend_saw(request: backends.Received) -> backends.Answer:
    """What the backend answers: the method it saw, and an ``X-Total`` a page may read if exposed."""
    body = f"backend saw {request.method}".encode()
    return backends.Answer(body=body, headers=(("Content-Type", "text/plain"), ("X-Total", "42")))


def _pages() -> backends.Backend:
    """Serves PAGE: one instance is one origin (its ``url``)."""
    return backends.Backend(backends.fixed(PAGE.encode(), content_type="text/html; charset=utf-8"))


class _Chromium:
    """Headless Chromium with the DevTools protocol on a port it picks itself."""

    def __init__(self, binary: str, profile: Path) -> None:
        self._profile = profile
        command = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        command += ["--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0"]
        command += [f"--user-data-dir={profile}", "about:blank"]
        self._log = (profile.parent / "chromium.log").open("wb")
        # Its own process group, so closing it also ends the renderer and helper processes it forks.
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def _port(self, seconds: float = 15) -> int:
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"chromium exited with {self.process.returncode}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)
        pytest.fail(f"chromium wrote no DevToolsActivePort within {seconds} s")

    def evaluate_in(self, url: str, expression: str) -> Any:
        """Open ``url`` in a new tab and return the value of ``expression`` (a promise is awaited)."""
        port = self._port()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?{url}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            target = json.load(response)
        with connect(target["webSocketDebuggerUrl"], open_timeout=15, max_size=None) as connection:
            self._wait_loaded(connection)
            arguments = {"expression": expression, "awaitPromise": True, "returnByValue": True}
            result = self._call(connection, "Runtime.evaluate", arguments)
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]

    def _wait_loaded(self, connection: Any, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = self._call(connection, "Runtime.evaluate", {"expression": "typeof runAll", "returnByValue": True})
            if state.get("result", {}).get("value") == "function":
                return
            time.sleep(0.05)
        pytest.fail("the page did not load in Chromium")

    _next_id = 0

    def _call(self, connection: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        connection.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(connection.recv(timeout=15))
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                return dict(message["result"])

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium installed (apt-get install chromium) to drive a real fetch()")
    tmp = tmp_path_factory.mktemp("browser-cors")
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(backends.Backend(_backend_saw))
        allowed, other = stack.enter_context(_pages()), stack.enter_context(_pages())
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "api.yaml").write_text(API.format(origin=allowed.url, port=backend.port))
        gateway = Served(folder, tmp)
        stack.callback(gateway.stop)
        browser = _Chromium(binary, tmp / "profile")
        stack.callback(browser.close)
        base = gateway.url("")
        call = f"runAll({json.dumps(base)})"
        from_allowed = browser.evaluate_in(f"{allowed.url}/", call)
        from_other = browser.evaluate_in(f"{other.url}/", call)
        yield from_allowed, from_other, backend.lines()


def test_a_preflighted_request_from_the_allowed_origin_is_readable(
    results: tuple[dict[str, Any], dict[str, Any], list[str]],
) -> None:
    allowed, _, seen = results
    assert allowed["put"] == {"status": 200, "body": "backend saw PUT", "total": "42"}  # X-Total is exposed
    assert allowed["simple"] == {"status": 200, "body": "backend saw GET", "total": "42"}  # no preflight needed
    assert "PUT /items" in seen
    assert not any(line.startswith("OPTIONS") for line in seen)  # the gateway answered every preflight


def test_a_header_or_method_the_api_does_not_allow_fails_the_preflight(
    results: tuple[dict[str, Any], dict[str, Any], list[str]],
) -> None:
    allowed, _, seen = results
    assert allowed["badHeader"] == {"refused": "TypeError"}
    assert allowed["badMethod"] == {"refused": "TypeError"}
    assert "DELETE /items" not in seen
    assert seen.count("PUT /items") == 1  # only the allowed PUT reached the backend


def test_a_gateway_error_is_readable_by_the_allowed_origin(
    results: tuple[dict[str, Any], dict[str, Any], list[str]],
) -> None:
    allowed, _, seen = results
    assert allowed["error"]["status"] == 403
    assert json.loads(allowed["error"]["body"]) == {"message": "Forbidden"}
    assert "GET /keyed" not in seen


def test_another_origin_can_read_nothing(results: tuple[dict[str, Any], dict[str, Any], list[str]]) -> None:
    _, other, _ = results
    assert other == {name: {"refused": "TypeError"} for name in ("put", "badHeader", "badMethod", "error", "simple")}
