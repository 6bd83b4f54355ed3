"""The budget of one template render (DESIGN.md §2.5: "#foreach (at most 1,000 iterations)",
"a #foreach past its limit -> 500 API_CONFIGURATION_ERROR").

A render runs on the gateway's event loop, so its work is every client's wait. Each loop used to
be capped on its own and the caps multiplied: three nested loops over a client's lists of 100
were a million passes, 1.6 s during which no other request (nor SIGTERM) was served. Now the
1,000 passes are for the whole render, and a deadline bounds what calls multiply without a loop
(a ``#macro`` calling another twice, thirty deep). First in process, then through
``propylon serve`` with a recording loopback backend.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon_proxy import vtl
from tests import backends
from tests.serve.test_serve import Served, serve_in_front

NESTED = (
    "#foreach($a in $input.path('$.a'))#foreach($b in $input.path('$.b'))#foreach($c in $input.path('$.c'))#end#end#end"
)
# Thirty macros, each calling the one before twice: 2^30 calls, no #foreach, no output.
DOUBLING = "#macro(m0)#end" + "".join(f"#macro(m{i})#m{i - 1}()#m{i - 1}()#end" for i in range(1, 31)) + "#m30()"


def _render(text: str, body: object = None, **limits: float) -> str:
    namespace = {"input": vtl.Input(json.dumps(body).encode(), {})}
    return vtl.render(vtl.compile(text), namespace, **limits)  # type: ignore[arg-type]


def test_nested_loops_share_one_budget_and_fail_fast() -> None:
    hundred = list(range(100))
    started = time.monotonic()
    with pytest.raises(vtl.RenderError, match="1000 iterations"):
        _render(NESTED, {"a": hundred, "b": hundred, "c": hundred})
    assert time.monotonic() - started < 0.1


def test_a_render_may_run_1000_passes_in_total_however_they_nest() -> None:
    # 10 outer passes + 10 * 99 inner ones = 1,000.
    nested = "#foreach($a in [1..10])#foreach($b in [1..99])x#end#end"
    assert _render(nested) == "x" * 990
    assert _render("#foreach($a in [1..1000])#end#foreach($a in [])#end") == ""
    assert _render("#foreach($a in [1..500])#end#foreach($b in [1..500])#end.") == "."
    with pytest.raises(vtl.RenderError):
        _render("#foreach($a in [1..500])#end#foreach($b in [1..501])#end")
    with pytest.raises(vtl.RenderError):
        _render("#foreach($a in [1..10])#foreach($b in [1..100])#end#end")


def test_loops_inside_macros_count_too() -> None:
    macro = "#macro(loop $n)#foreach($i in [1..$n])#end#end"
    assert _render(macro + "#loop(500)#loop(500)ok") == "ok"
    with pytest.raises(vtl.RenderError):
        _render(macro + "#loop(500)#loop(501)")


def test_the_budget_is_per_render() -> None:
    template = vtl.compile("#foreach($i in [1..1000])#end$input.body")
    for _ in range(3):  # nothing carries over from one render (or a failed one) to the next
        assert vtl.render(template, {"input": vtl.Input(b"ok", {})}) == "ok"
        with pytest.raises(vtl.RenderError):
            _render("#foreach($i in [1..1001])#end")


def test_calls_that_multiply_work_without_a_loop_stop_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(vtl.RenderError, match="too long"):
        _render(DOUBLING, seconds=0.05)
    assert time.monotonic() - started < 0.5
    defines = "#define($d0)#end" + "".join(f"#define($d{i})$d{i - 1}$d{i - 1}#end" for i in range(1, 31)) + "$d30"
    with pytest.raises(vtl.RenderError, match="too long"):
        _render(defines, seconds=0.05)


API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: nest, namespace: shop}
spec:
  routes:
    - routeKey: "POST /nested"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/nested"
        requestTemplates: {application/json: "NESTED{\\"ok\\": true}"}
    - routeKey: "POST /doubling"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/doubling"
        requestTemplates: {application/json: "DOUBLING"}
    - routeKey: "POST /thousand"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/thousand"
        requestTemplates:
          application/json: >-
            #foreach($a in $input.path('$.a'))#foreach($b in $input.path('$.b'))#end#end$input.path('$.a').size()
    - routeKey: "GET /ping"
      integration: {type: MOCK, mock: {statusCode: 200, body: "pong"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: nest}
"""


def serve_templates(tmp_path: Path, api: str) -> Iterator[tuple[Served, backends.Backend]]:
    """``api`` (its ``PORT`` the backend's) served in front of a backend answering ``{"ok":1}``."""
    respond = backends.fixed(b'{"ok":1}', content_type="application/json")
    yield from serve_in_front(tmp_path, lambda port: api.replace("PORT", str(port)), respond)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, backends.Backend]]:
    yield from serve_templates(tmp_path, API.replace("NESTED", NESTED).replace("DOUBLING", DOUBLING))


def _send(gateway: Served, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes, float]:
    """Status, headers, body and seconds taken of one request."""
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(gateway.url(path), data=body, method="POST" if body else "GET", headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read(), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read(), time.monotonic() - started


def _assert_configuration_error(answer: tuple[int, dict[str, str], bytes, float]) -> None:
    status, headers, body, _ = answer
    assert status == 500
    assert headers["x-propylon-error-type"] == "API_CONFIGURATION_ERROR"
    assert json.loads(body) == {"message": "Internal server error"}


def test_nested_loops_answer_the_configuration_error_fast_and_others_are_served(
    served: tuple[Served, backends.Backend],
) -> None:
    gateway, backend = served
    assert _send(gateway, "/prod/ping")[0] == 200  # warm: the first request pays for imports
    hundred = list(range(100))
    body = json.dumps({"a": hundred, "b": hundred, "c": hundred}).encode()
    answers: list[tuple[int, dict[str, str], bytes, float]] = []
    sender = threading.Thread(target=lambda: answers.append(_send(gateway, "/prod/nested", body)))
    sender.start()
    time.sleep(0.02)
    status, _, text, took = _send(gateway, "/prod/ping")  # while the render runs, if it still does
    sender.join(timeout=60)
    assert (status, text) == (200, b"pong")
    assert took < 0.5, f"GET /ping waited {took:.2f} s behind the render"
    [answer] = answers
    _assert_configuration_error(answer)
    assert answer[3] < 0.5, f"the over-budget template took {answer[3]:.2f} s to fail"
    assert backend.received == []  # nothing is sent upstream after a request template fails


def test_calls_without_loops_stop_at_the_render_deadline(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    answer = _send(gateway, "/prod/doubling", b"{}")
    _assert_configuration_error(answer)
    assert answer[3] < vtl.MAX_SECONDS + 2
    assert _send(gateway, "/prod/ping")[:3:2] == (200, b"pong")
    assert backend.received == []


def test_1000_passes_in_total_still_render(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    # 10 outer passes + 10 * 99 inner ones = 1,000: the template is sent upstream.
    assert _send(gateway, "/prod/thousand", json.dumps({"a": list(range(10)), "b": list(range(99))}).encode())[0] == 200
    [got] = backend.received
    assert got.body == b"10"
    # One pass more (10 + 10 * 100) is past the budget.
    _assert_configuration_error(
        _send(gateway, "/prod/thousand", json.dumps({"a": list(range(10)), "b": list(range(100))}).encode())
    )
    assert len(backend.received) == 1
