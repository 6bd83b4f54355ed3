"""The size bound of one template render (docs/templates.md, "Limits of one render").

One method call, interpolated string or print could build a huge value between two of the
budget's checks (``$s.center(1000000000)`` is a gigabyte), and values kept in variables are not
output, so the 10 MiB output bound never saw them. Now a call whose result size follows from its
arguments is refused before it runs, every value is bounded by ``vtl.MAX_VALUE`` and the values
of one render by ``vtl.MAX_ALLOCATED``.

The templates that used to blow up are rendered in a child process under an address-space limit
(``RLIMIT_AS``), so a regression is a ``MemoryError`` there rather than a machine swapping; then
one of them, and a large legal body, through ``propylon serve``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon_proxy import vtl
from tests import backends
from tests.proxy.test_vtl_budget import serve_templates
from tests.serve.test_serve import Served

GIANT = 1_000_000_000
A100 = '#set($a100 = "' + "a" * 100 + '")'
MEGA = A100 + "#set($mega = $a100.ljust(1048576, 'a'))"  # one 1 Mi-character string
# A list holding the 1 Mi string a million times over: a million pointers, 10^12 characters printed.
SHARED = MEGA + "#set($l = [$mega])" + "#set($x = $l.addAll($l))" * 20

# Each of these built gigabytes (or ran out of the child's address space) before the bound.
BLOWUPS = {
    "center": A100 + "#set($t = $a100.center(1000000000))ok",
    "ljust": A100 + "#set($t = $a100.ljust(1000000000))ok",
    "rjust": A100 + "#set($t = $a100.rjust(1000000000, 'x'))ok",
    "zfill": A100 + "#set($t = $a100.zfill(1000000000))ok",
    "expandtabs": '#set($s = "a\tb")#set($t = $s.expandtabs(1000000000))ok',
    "replace": "#set($s = 'aaaaaaaaaa')" + "#set($s = $s.replace('a', 'aaaaaaaaaa'))" * 9 + "ok",
    "replaceAll": "#set($s = 'aaaaaaaaaa')" + "#set($s = $s.replaceAll('a', 'aaaaaaaaaa'))" * 9 + "ok",
    "join": MEGA + "#set($l = [])#foreach($i in [1..1000])#set($x = $l.add($mega))#end#set($j = $a100.join($l))ok",
    "interpolation": "#set($s = 'a')" + '#set($s = "$s$s")' * 31 + "ok",
    "extend": "#set($l = [1])" + "#set($x = $l.extend($l))" * 31 + "ok",
    "addAll": "#set($l = [1])" + "#set($x = $l.addAll($l))" * 31 + "ok",
    # A million-item list (8 Mi units) copied and kept a thousand times: 8 GB of pointers.
    "copies": "#set($l = [1])"
    + "#set($x = $l.extend($l))" * 20
    + "#set($keep = [])#foreach($i in [1..1000])#set($x = $keep.append($l.copy()))#end ok",
    "range into a list": "#set($l = [])#set($x = $l.addAll([1..1000000000]))ok",
    "range into a map": "#set($m = {})#set($n = $m.fromkeys([1..1000000000]))ok",
    "putAll of a range map": "#set($m = {})#set($x = $m.putAll($m.fromkeys([1..100000000])))ok",
    "to_bytes": "#set($n = 1)#set($b = $n.to_bytes(1000000000, 'big'))ok",
    "translate": MEGA + "#set($t = $mega.translate({97: $mega}))ok",
    "#define as a value": A100 + "#define($d)" + "$s" * 100 + "#end#set($s = $a100)" + "#set($s = $d)" * 3 + "ok",
    "printing a shared list": SHARED + "$l",
    "toString of a shared list": SHARED + "#set($t = $l.toString())ok",
    "escaping a shared list": SHARED + "$util.escapeJavaScript($l)",
    "json of a document that holds a shared list": SHARED
    + "#set($doc = $input.path('$'))#set($x = $doc.put('l', $l))$input.json('$')",
}

# Large but legal: each renders.
LEGAL = {
    "the widest padding": A100 + "#set($t = $a100.center(10485760))$t.length()",
    "a doubling up to the bound": "#set($s = 'a')" + '#set($s = "$s$s")' * 23 + "$s.length()",
    "a list up to the bound": "#set($l = [1])" + "#set($x = $l.addAll($l))" * 23 + "$l.size()",
    "a range of 4 Mi": "#set($l = [])#set($x = $l.addAll([1..4194304]))$l.size()",
    "work on a 10 MB body": "#set($b = $input.body)#set($u = $b.replace('x', 'y'))$u.length() "
    "$b.toUpperCase().length() $input.json('$').length() $b.replaceAll('x', 'z').length() $b.substring(0, 3)",
}
BODY = json.dumps({"text": "x" * (10 * 1000 * 1000)})


def _render_all(names: list[str]) -> None:
    """The child: render each template, print one JSON line per template."""
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    templates = {**BLOWUPS, **LEGAL}
    for name in names:
        body = BODY.encode() if name in LEGAL else b'{"a": 1}'
        namespace = {"input": vtl.Input(body, {}), "util": vtl.UTIL}
        try:
            answer: dict[str, object] = {"output": vtl.render(vtl.compile(templates[name]), namespace)}
        except vtl.RenderError as error:
            causes = []
            cause: BaseException | None = error
            while cause is not None:
                causes.append(type(cause).__name__)
                cause = cause.__cause__ or cause.__context__
            answer = {"error": str(error), "causes": causes}
        print(json.dumps({"name": name, **answer}), flush=True)


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, object]]:
    names = [*BLOWUPS, *LEGAL]
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.proxy import test_vtl_sizes as t; t._render_all(sys.argv[1:])",
            *names,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    answers = {answer["name"]: answer for answer in map(json.loads, child.stdout.splitlines())}
    assert set(answers) == set(names), child.stderr[-4000:]
    return answers


@pytest.mark.parametrize("name", list(BLOWUPS))
def test_a_template_building_a_huge_value_fails_the_render_before_spending_it(
    rendered: dict[str, dict[str, object]], name: str
) -> None:
    answer = rendered[name]
    assert "output" not in answer, f"{name} rendered: {str(answer['output'])[:80]}"
    assert "MemoryError" not in answer["causes"]  # type: ignore[operator]
    assert "past" in str(answer["error"]) or "too large" in str(answer["error"])
    if name == "copies":  # each copy is legal: the render's total stops them
        assert f"past {vtl.MAX_ALLOCATED} units" in str(answer["error"])


def test_large_legal_values_still_render(rendered: dict[str, dict[str, object]]) -> None:
    outputs = {name: rendered[name].get("output", rendered[name]) for name in LEGAL}
    assert outputs == {
        "the widest padding": str(vtl.MAX_VALUE),
        "a doubling up to the bound": str(2**23),
        "a list up to the bound": str(2**23),
        "a range of 4 Mi": str(4 * 1024 * 1024),
        "work on a 10 MB body": f"{len(BODY)} {len(BODY)} {len(BODY) - 1} {len(BODY)} {BODY[:3]}",
    }


def test_the_bounds_are_per_render() -> None:
    namespace = {"input": vtl.Input(b"{}", {}), "util": vtl.UTIL}
    # Five 10 Mi-character strings are 50 Mi units of the 64 Mi: every render may make them.
    five = "#set($s = 'a')" + "#set($t = $s.ljust(10485760))" * 5 + "ok"
    for _ in range(3):
        assert vtl.render(vtl.compile(five), namespace) == "ok"
    seven = "#set($s = 'a')" + "#set($t = $s.ljust(10485760))" * 7 + "ok"
    with pytest.raises(vtl.RenderError, match="units in one render"):
        vtl.render(vtl.compile(seven), namespace)


API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: sizes, namespace: shop}
spec:
  routes:
    - routeKey: "POST /padded"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/padded"
        requestTemplates:
          application/json: "#set($s = 'a')#set($t = $s.center(100000000))$s"
    - routeKey: "POST /doubled"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/doubled"
        requestTemplates:
          application/json: "#set($s = 'a')DOUBLINGS$s.length()"
    - routeKey: "POST /body"
      integration:
        type: HTTP
        url: "http://127.0.0.1:PORT/body"
        requestTemplates:
          application/json: "#set($b = $input.body.replace('x', 'y'))$b"
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: sizes}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, backends.Backend]]:
    doublings = '#set($s = \\"$s$s\\")' * 27  # 2^27 characters: past the bound at the 24th
    yield from serve_templates(tmp_path, API.replace("DOUBLINGS", doublings))


def _post(gateway: Served, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        gateway.url(path), data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_huge_value_answers_the_configuration_error_and_a_large_body_still_goes_through(
    served: tuple[Served, backends.Backend],
) -> None:
    gateway, backend = served
    for path in ("/prod/padded", "/prod/doubled"):
        status, headers, body = _post(gateway, path, b"{}")
        assert status == 500, path
        assert headers["x-propylon-error-type"] == "API_CONFIGURATION_ERROR"
        assert json.loads(body) == {"message": "Internal server error"}
    assert backend.received == []  # nothing is sent upstream after a request template fails
    large = json.dumps({"text": "x" * (9 * 1000 * 1000)}).encode()
    assert _post(gateway, "/prod/body", large)[0] == 200
    [got] = backend.received
    assert got.body == large.replace(b"x", b"y")
