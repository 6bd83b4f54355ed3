"""Issue 12, the HTTP integration with request templates, through `propylon serve` against a
loopback backend that records the method, path, headers and body it received (DESIGN.md
sections 2.1, 2.5, 3, 8 "Mappings")."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served

EVERYTHING = """\
#set($items = $input.path('$.items'))
{"body": "$util.escapeJavaScript($input.body)",
 "name": "$input.path('$.user.name')",
 "first": $input.json('$.items[0]'),
 "bracket": $input.json("$['user']"),
 "whole": $input.json('$'),
 "all": $input.json('$.items[*]'),
 "id": "$input.params('id')", "q": "$input.params('q')", "h": "$input.params('X-Trace')",
 "shadow": "$input.params('dup')",
 "querystring": "$input.params().querystring.q", "header": "$input.params().header.get('X-Trace')",
 "enc": "$util.urlEncode('a b&c/d')", "dec": "$util.urlDecode('a+b%26c')",
 "b64": "$util.base64Encode('hi there')", "unb64": "$util.base64Decode('aGkgdGhlcmU=')",
 "parsed": "$util.parseJson('{"k": [5, 6]}').k.get(1)",
 "requestId": "$context.requestId", "stage": "$context.stage", "httpMethod": "$context.httpMethod",
 "resourcePath": "$context.resourcePath", "sourceIp": "$context.identity.sourceIp",
 "apiId": "$context.apiId", "accountId": "$context.accountId", "protocol": "$context.protocol",
 "domainName": "$context.domainName", "domainPrefix": "$context.domainPrefix",
 "requestTime": "$context.requestTime", "epoch": $context.requestTimeEpoch,
 "principal": "$context.authorizer.principalId",
 "env": "$stageVariables.env",
 "count": $items.size(),
 "list": [#foreach($i in $items)"n$i"#if($foreach.hasNext),#end#end],
 "big": #if($items.size() > 2)true#{else}false#end}
"""

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: shop}}
spec:
  routes:
    - routeKey: "POST /things/{{id}}/{{dup}}"
      integration:
        type: HTTP
        method: PUT
        url: "http://127.0.0.1:{port}/store/{{id}}"
        requestParameters: {{"overwrite:header.X-Mapped": "$request.path.id"}}
        requestTemplates:
          application/json: {everything}
          text/plain: "plain:$input.body"
    - routeKey: "POST /strict"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/strict"
        passthroughBehavior: NEVER
        requestTemplates: {{application/json: '{{"v": $input.json(''$.v'')}}'}}
    - routeKey: "POST /loop"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/loop"
        requestTemplates: {{application/json: '#foreach($i in $input.path(''$''))#end$input.path(''$'').size()'}}
    - routeKey: "POST /no-templates"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/nt"
        passthroughBehavior: WHEN_NO_TEMPLATES
    - routeKey: "POST /some-templates"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/st"
        passthroughBehavior: WHEN_NO_TEMPLATES
        requestTemplates: {{application/json: '{{}}'}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: shop, variables: {{env: production}}}}
"""


_Recorder = backends.Backend  # the name these tests are annotated with


def _start(tmp_path: Path, text: str) -> tuple[Served, _Recorder]:
    backend = backends.Backend(backends.fixed(b'{"ok":1}', content_type="application/json"))
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(text.replace("{port}", str(backend.port)))
    try:
        return Served(folder, tmp_path), backend
    except BaseException:
        backend.close()
        raise


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, _Recorder]]:
    text = API.replace("{{", "\x00").replace("}}", "\x01").replace("{everything}", json.dumps(EVERYTHING))
    gateway, backend = _start(tmp_path, text.replace("\x00", "{").replace("\x01", "}"))
    try:
        yield gateway, backend
    finally:
        gateway.stop()
        backend.close()


def _send(gateway: Served, path: str, body: bytes, method: str = "POST", **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(gateway.url(path), data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_every_input_util_and_context_function_renders(served: tuple[Served, _Recorder]) -> None:
    gateway, backend = served
    body = json.dumps({"user": {"name": "Ada"}, "items": [1, 2, 3]}).encode()
    status, _ = _send(
        gateway,
        "/prod/things/a%20b/p1?q=x%20y&dup=fromquery",
        body,
        **{"Content-Type": "application/json", "X-Trace": "t9"},
    )
    assert status == 200
    [got] = backend.received
    assert got.method == "PUT"  # the integration's method, not the client's POST
    assert got.path == "/store/a%20b?q=x%20y&dup=fromquery"  # the query is forwarded as for HTTP_PROXY
    assert got.headers["X-Mapped"] == "a b"  # requestParameters apply as for HTTP_PROXY
    assert got.headers["Content-Length"] == str(len(got.body))
    out = json.loads(got.body)
    request_id = out.pop("requestId")
    assert len(request_id) > 8
    # requestTime is requestTimeEpoch in AWS's CLF form, to the second, always UTC.
    epoch = out.pop("epoch")
    assert out.pop("requestTime") == time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch / 1000))
    assert abs(epoch / 1000 - time.time()) < 600
    assert out == {
        "body": body.decode(),  # escapeJavaScript made the JSON text a valid string again
        "name": "Ada",
        "first": 1,
        "bracket": {"name": "Ada"},
        "whole": {"user": {"name": "Ada"}, "items": [1, 2, 3]},
        "all": [1, 2, 3],
        "id": "a b",
        "q": "x y",
        "h": "t9",
        "shadow": "p1",  # path beats query (AWS's order)
        "querystring": "x y",
        "header": "t9",
        "enc": "a+b%26c%2Fd",
        "dec": "a b&c",
        "b64": base64.b64encode(b"hi there").decode(),
        "unb64": "hi there",
        "parsed": "6",
        "stage": "prod",
        "httpMethod": "POST",
        "resourcePath": "/things/{id}/{dup}",
        "sourceIp": "127.0.0.1",
        "apiId": "shop",  # the Api's name, and its namespace as the account (as in events)
        "accountId": "shop",
        "protocol": "HTTP/1.1",
        "domainName": "127.0.0.1",  # the Host header without its port
        "domainPrefix": "127",
        "principal": "",
        "env": "production",
        "count": 3,
        "list": ["n1", "n2", "n3"],
        "big": True,
    }


def test_a_missing_content_type_counts_as_json(served: tuple[Served, _Recorder]) -> None:
    gateway, backend = served
    # http.client, since urllib adds a form Content-Type of its own.
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        connection.request("POST", "/prod/strict", body=b'{"v": [1]}')
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert (
        "Content-Type" not in backend.received[0].headers
        or backend.received[0].headers["Content-Type"] == "application/json"
    )
    assert json.loads(backend.received[0].body) == {"v": [1]}


def test_the_template_is_chosen_by_content_type(served: tuple[Served, _Recorder]) -> None:
    gateway, backend = served
    assert _send(gateway, "/prod/things/1/2", b"hello", **{"Content-Type": "text/plain; charset=utf-8"})[0] == 200
    assert backend.received[0].body == b"plain:hello"
    assert backend.received[0].headers["Content-Type"] == "text/plain; charset=utf-8"


def test_when_no_match_passes_an_unmapped_type_through(served: tuple[Served, _Recorder]) -> None:
    gateway, backend = served
    assert _send(gateway, "/prod/things/1/2", b"<x/>", **{"Content-Type": "application/xml"})[0] == 200
    assert backend.received[0].body == b"<x/>"
    assert backend.received[0].method == "PUT"


@pytest.mark.parametrize(
    ("path", "content_type", "expected"),
    [
        ("/prod/strict", "application/xml", 415),  # NEVER: no template for the type
        ("/prod/some-templates", "application/xml", 415),  # WHEN_NO_TEMPLATES with templates
        ("/prod/no-templates", "application/xml", 200),  # WHEN_NO_TEMPLATES without any: passes
    ],
)
def test_passthrough_behavior(served: tuple[Served, _Recorder], path: str, content_type: str, expected: int) -> None:
    gateway, backend = served
    status, body = _send(gateway, path, b"<x/>", **{"Content-Type": content_type})
    assert status == expected
    if expected == 415:
        assert json.loads(body) == {"message": "Unsupported Media Type"}
        assert backend.received == []
    else:
        assert backend.received[0].body == b"<x/>"


@pytest.mark.parametrize("body", [b"not json", b'{"v": '])
def test_a_render_failure_is_500_and_the_backend_is_untouched(served: tuple[Served, _Recorder], body: bytes) -> None:
    gateway, backend = served
    status, answer = _send(gateway, "/prod/strict", body, **{"Content-Type": "application/json"})
    assert status == 500
    assert json.loads(answer) == {"message": "Internal server error"}
    assert backend.received == []


def test_a_compressed_body_cannot_be_templated(served: tuple[Served, _Recorder]) -> None:
    gateway, backend = served
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert _send(gateway, "/prod/strict", b"\x1f\x8b\x08\x00", **headers)[0] == 415
    assert backend.received == []


def test_the_put_items_example_sends_a_put_item_document(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "templates" / "items.yaml"
    gateway, backend = _start(tmp_path, example.read_text().replace("127.0.0.1:9000", "127.0.0.1:{port}"))
    try:
        status, answer = _send(
            gateway, "/dev/items", b'{"id": "42", "name": "tea"}', method="PUT", **{"Content-Type": "application/json"}
        )
        assert status == 200
        # The integration response's template, not the backend's own {"ok":1}.
        assert json.loads(answer) == {"message": "Item saved"}
        [got] = backend.received
        assert (got.method, got.path) == ("POST", "/PutItem")
        assert json.loads(got.body) == {"TableName": "Items", "Item": {"id": {"S": "42"}, "name": {"S": "tea"}}}
    finally:
        gateway.stop()
        backend.close()


def test_foreach_stops_at_1000_iterations(served: tuple[Served, _Recorder]) -> None:
    gateway, backend = served
    headers = {"Content-Type": "application/json"}
    assert _send(gateway, "/prod/loop", json.dumps(list(range(1000))).encode(), **headers)[0] == 200
    assert backend.received[0].body == b"1000"
    assert _send(gateway, "/prod/loop", json.dumps(list(range(1001))).encode(), **headers)[0] == 500
    assert len(backend.received) == 1


ESCAPE = "$input.__init__.__globals__.get('urllib').parse.sys.modules.get('os').getcwd()"
SANDBOXED = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: probe, namespace: shop}
spec:
  routes:
    - routeKey: "POST /probe"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/probe"
        requestTemplates:
          application/json: "cwd={escape} name=$input.path('$.name')"
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: probe}
"""


def test_a_template_cannot_reach_the_gateways_python(tmp_path: Path) -> None:
    # Before the sandbox (vtl_sandbox) this template sent the gateway's working directory
    # upstream: from $input's methods to the module globals, sys.modules and os.
    gateway, backend = _start(tmp_path, SANDBOXED.replace("{escape}", ESCAPE))
    try:
        status, _ = _send(gateway, "/prod/probe", b'{"name": "tea"}', **{"Content-Type": "application/json"})
        assert status == 200
        [got] = backend.received
        assert got.body.decode() == f"cwd={ESCAPE} name=tea"  # printed as written, like any unresolved reference
    finally:
        gateway.stop()
        backend.close()


def test_a_lone_surrogate_in_the_body_renders_as_java_encodes_it(served: tuple[Served, _Recorder]) -> None:
    # "\ud800" is a JSON escape a client may send; json reads it as a lone surrogate, which UTF-8
    # cannot encode. Java's encoder (AWS's) writes "?" for it; before, the gateway answered 500.
    gateway, backend = served
    status, _ = _send(gateway, "/prod/strict", b'{"v": "a\\ud800b"}', **{"Content-Type": "application/json"})
    assert status == 200
    assert backend.received[-1].body == b'{"v": "a?b"}'


CANARY = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: main, namespace: shop}
spec:
  routes:
    - routeKey: "POST /who"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/who"
        requestTemplates: {application/json: '{"apiId": "$context.apiId", "accountId": "$context.accountId"}'}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: next, namespace: shop}
spec:
  routes:
    - routeKey: "POST /who"
      integration:
        type: HTTP
        url: "http://127.0.0.1:{port}/who"
        requestTemplates: {application/json: '{"apiId": "$context.apiId", "accountId": "$context.accountId"}'}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: main, canary: {apiRef: next, percentTraffic: 100}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: old, namespace: shop}
spec: {apiRef: main}
"""


def test_context_api_id_is_the_api_that_serves_the_request(tmp_path: Path) -> None:
    """On the canary side ``$context.apiId`` is the canary Api, as the access log, the metrics and
    function events name it (it named the Stage's own Api)."""
    gateway, backend = _start(tmp_path, CANARY)
    try:
        for path in ("/prod/who", "/old/who"):
            status, _ = _send(gateway, path, b"{}", **{"Content-Type": "application/json"})
            assert status == 200
        canary, main = (json.loads(got.body) for got in backend.received)
        assert canary == {"apiId": "next", "accountId": "shop"}
        assert main == {"apiId": "main", "accountId": "shop"}
    finally:
        gateway.stop()
        backend.close()
