"""OTLP span export through `propylon serve`, received by a real OTLP/HTTP endpoint on loopback.

The receiver is an aiohttp server that decodes each POST /v1/traces body as the collector
would (``ExportTraceServiceRequest`` from opentelemetry-proto). The backends record the
``traceparent`` they were sent: an HTTP server for HTTP_PROXY and HTTP routes, real handler
code behind ``propylon.function`` for FUNCTION. Each request carries its own trace id, so each
exported span is found by it and compared with what its backend saw: same trace, and the span id
the backend was given as its parent is the exported span's own.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (pip install -e '.[otel,test]')")
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.functions import harness
from tests.serve.test_serve import Served, _wait_for

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: demo}}
spec:
  routes:
    - routeKey: GET /proxied/{{id}}
      integration: {{type: HTTP_PROXY, url: "{backend}/p/{{id}}"}}
    - routeKey: POST /templated
      integration:
        type: HTTP
        url: "{backend}/t"
        requestTemplates: {{application/json: '{{"n": $input.json(''$.n'')}}'}}
    - routeKey: GET /fn
      integration: {{type: FUNCTION, url: "{function}", payloadFormatVersion: "2.0"}}
    - routeKey: GET /mock
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
    - routeKey: GET /down
      integration: {{type: HTTP_PROXY, url: "{down}/x"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: demo}}
spec: {{apiRef: shop, basePath: /live}}
"""


class Receiver:
    """An OTLP/HTTP traces endpoint on loopback, in its own thread and event loop."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], trace_pb2.Span]] = []  # (resource attributes, span)
        self.content_types: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        self._loop.run_forever()

    async def _traces(self, request: web.Request) -> web.Response:
        message = trace_service_pb2.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        with self._lock:
            self.content_types.add(request.content_type)
            for resource_spans in message.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((resource, span) for span in scope_spans.spans)
        reply = trace_service_pb2.ExportTraceServiceResponse()
        return web.Response(body=reply.SerializeToString(), content_type="application/x-protobuf")

    def find(self, trace_id: str) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        with self._lock:
            return [(r, s) for r, s in self.spans if s.trace_id.hex() == trace_id]

    def close(self) -> None:
        async def stop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


class Backend(http.server.ThreadingHTTPServer):
    """Answers 200 and keeps the traceparent of each request by path."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                backend.seen.setdefault(self.path, []).append(self.headers.get("traceparent", ""))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.shutdown()
    b.server_close()


@pytest.fixture
def function(tmp_path: Path) -> Iterator[harness.Process]:
    process = harness.function("plain.echo", tmp_path).wait()
    yield process
    process.stop()


def _serve(tmp_path: Path, backend: Backend, function_url: str) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    down = f"http://127.0.0.1:{harness.free_port()}"
    (folder / "api.yaml").write_text(MANIFESTS.format(backend=backend.url, function=function_url, down=down))
    return folder


def _call(served: Served, method: str, path: str, trace: str | None, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if trace is not None:
        headers["traceparent"] = trace
    request = urllib.request.Request(served.url(path), data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _trace(n: int, flags: str = "01") -> tuple[str, str, str]:
    trace_id, parent = f"{n:032x}".replace("0", "a", 1), f"{n:016x}".replace("0", "b", 1)
    return trace_id, parent, f"00-{trace_id}-{parent}-{flags}"


@pytest.fixture
def exporting(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    """The standard OpenTelemetry environment, as the chart sets it (serve inherits it)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)


def _span(receiver: Receiver, trace_id: str) -> tuple[dict[str, Any], trace_pb2.Span]:
    assert _wait_for(lambda: receiver.find(trace_id), 30), f"no span for trace {trace_id}"
    found = receiver.find(trace_id)
    assert len(found) == 1, found
    return found[0]


def _attributes(span: trace_pb2.Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.mark.usefixtures("exporting")
def test_every_integration_gets_the_span_the_gateway_exports(
    tmp_path: Path, receiver: Receiver, backend: Backend, function: harness.Process
) -> None:
    served = Served(_serve(tmp_path, backend, f"http://127.0.0.1:{function.port}"), tmp_path)
    try:
        sent: dict[str, tuple[str, str, str]] = {}
        for n, (method, path, body) in enumerate(
            [("GET", "/live/proxied/7", None), ("POST", "/live/templated", b'{"n": 3}'), ("GET", "/live/fn", None)],
            start=1,
        ):
            sent[path] = _trace(n)
            status, answer = _call(served, method, path, sent[path][2], body)
            assert status == 200, answer
            if path == "/live/fn":
                backend.seen["/fn"] = [json.loads(answer)["event"]["headers"]["traceparent"]]
        seen = {"/live/proxied/7": backend.seen["/p/7"], "/live/templated": backend.seen["/t"], "/live/fn": []}
        seen["/live/fn"] = backend.seen["/fn"]
        expected = {
            "/live/proxied/7": ("GET /proxied/{id}", "GET", "/proxied/{id}", 200),
            "/live/templated": ("POST /templated", "POST", "/templated", 200),
            "/live/fn": ("GET /fn", "GET", "/fn", 200),
        }
        for path, (trace_id, client_parent, _) in sent.items():
            [upstream] = seen[path]
            version, upstream_trace, upstream_parent, flags = upstream.split("-")
            assert (version, upstream_trace, flags) == ("00", trace_id, "01")
            resource, span = _span(receiver, trace_id)
            name, method, route, status = expected[path]
            assert span.span_id.hex() == upstream_parent  # the backend's parent is the exported span
            assert span.parent_span_id.hex() == client_parent  # which continues the client's
            assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
            assert span.name == name
            assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
            assert span.status.code == trace_pb2.Status.STATUS_CODE_UNSET
            attributes = _attributes(span)
            assert attributes["http.request.method"] == method
            assert attributes["http.response.status_code"] == status
            assert attributes["http.route"] == route
            assert attributes["url.path"] == path
            assert attributes["propylon.route_key"] == name
            assert attributes["propylon.api"] == "demo/shop"
            assert attributes["propylon.stage"] == "demo/live"
            assert attributes["propylon.integration.status_code"] == 200
            assert resource["service.name"] == "propylon"
        assert receiver.content_types == {"application/x-protobuf"}
    finally:
        assert served.stop() == 0, served.stderr()


@pytest.mark.usefixtures("exporting")
def test_spans_without_a_backend_new_traces_failures_and_unsampled_callers(
    tmp_path: Path, receiver: Receiver, backend: Backend
) -> None:
    served = Served(_serve(tmp_path, backend, "http://127.0.0.1:9"), tmp_path)
    try:
        unsampled_id, _, unsampled = _trace(40, flags="00")
        assert _call(served, "GET", "/live/proxied/u", unsampled)[0] == 200
        assert backend.seen["/p/u"][0].split("-")[1::2] == [unsampled_id, "00"]
        mock_id, mock_parent, mock = _trace(41)
        assert _call(served, "GET", "/live/mock", mock) == (200, b"ok")
        down_id, _, down = _trace(42)
        assert _call(served, "GET", "/live/down", down)[0] == 502
        assert _call(served, "GET", "/live/proxied/new", None)[0] == 200
        assert _call(served, "GET", "/live/nowhere", _trace(43)[2])[0] == 404

        _, span = _span(receiver, mock_id)
        assert span.parent_span_id.hex() == mock_parent and span.name == "GET /mock"
        _, span = _span(receiver, down_id)
        assert span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
        assert _attributes(span)["http.response.status_code"] == 502
        assert _attributes(span)["propylon.error_type"] == "INTEGRATION_FAILURE"
        started = backend.seen["/p/new"][0].split("-")
        _, span = _span(receiver, started[1])  # a trace the gateway started: the span is its root
        assert span.span_id.hex() == started[2] and span.parent_span_id == b""
        _, span = _span(receiver, _trace(43)[0])
        assert span.name == "GET" and _attributes(span)["http.response.status_code"] == 404
        assert "propylon.route_key" not in _attributes(span)
        # Spans leave in the order requests ended: the unsampled one would have come first.
        assert receiver.find(unsampled_id) == []
    finally:
        assert served.stop() == 0, served.stderr()
