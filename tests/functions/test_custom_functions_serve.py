"""Issue 12, custom FUNCTION integrations (``proxy: false``, DESIGN.md section 2.5) through
`propylon serve`, with a real handler process behind `propylon.function`: the request
template renders the event, the return value (or the raised error) goes through the
integration responses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import harness
import pytest

API = r"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: fn, namespace: shop}
spec:
  routes:
    - routeKey: "POST /items/{id}"
      integration:
        type: FUNCTION
        proxy: false
        url: "http://127.0.0.1:PORT"
        requestTemplates:
          application/json: >-
            {"id": "$input.params('id')", "user": $input.json('$.user'), "stage": "$context.stage"}
        responses:
          - selectionPattern: "Not found.*"
            statusCode: 404
            responseTemplates:
              application/json: '{"error": "$util.escapeJavaScript($input.path(''$.errorMessage''))"}'
          - statusCode: 200
            headers: {Cache-Control: "max-age=60"}
            responseTemplates:
              application/json: >-
                {"items": $input.json('$.items'), "event": $input.json('$.event'), "calls": $input.path('$.calls')}
              text/plain: 'items: $input.path(''$.items'').size()'
    - routeKey: "POST /raw"
      integration: {type: FUNCTION, proxy: false, url: "http://127.0.0.1:PORT"}
    - routeKey: "POST /no-default"
      integration:
        type: FUNCTION
        proxy: false
        url: "http://127.0.0.1:PORT"
        responses: [{selectionPattern: "Not found.*", statusCode: 404}]
    - routeKey: "POST /override"
      integration:
        type: FUNCTION
        proxy: false
        url: "http://127.0.0.1:PORT"
        responses:
          - statusCode: 200
            responseTemplates:
              application/json: |-
                #set($context.responseOverride.status = 201)
                #set($context.responseOverride.header.Location = "/items/$input.path('$.event.id')")
                {"created": "$input.path('$.event.id')"}
    - routeKey: "POST /not-json-event"
      integration:
        type: FUNCTION
        proxy: false
        url: "http://127.0.0.1:PORT"
        requestTemplates: {application/json: 'id=$input.params(''id'')'}
    - routeKey: "POST /body-event"
      integration:
        type: FUNCTION
        proxy: false
        url: "http://127.0.0.1:PORT"
        requestTemplates: {application/json: '$input.body'}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: fn}
"""


class Gateway:
    def __init__(self, port: int) -> None:
        self.port = port

    def post(self, path: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
        headers.setdefault("Content-Type", "application/json")
        status, pairs, data = harness.request(self.port, "POST", path, body, headers)
        return status, {k.lower(): v for k, v in pairs}, data

    def calls(self) -> int:
        """How many times the function has run (it counts, and the success route reports it)."""
        status, _, body = self.post("/prod/items/probe", b"{}")
        assert status == 200
        return int(json.loads(body)["calls"]) - 1


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("custom-fn")
    fn = harness.function("custom.items", tmp).wait()
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.replace("PORT", str(fn.port)))
    served: harness.Process | None = None
    try:
        served = harness.serve(folder, tmp).wait()
        yield Gateway(served.port)
    finally:
        if served is not None:
            served.stop()
        fn.stop()


def test_the_template_renders_the_event_and_the_default_response_maps_the_result(gateway: Gateway) -> None:
    status, headers, body = gateway.post("/prod/items/42", b'{"user": {"name": "Ada"}}')
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "max-age=60"
    answer = json.loads(body)
    assert answer["items"] == [{"id": "42"}, {"id": "other"}]
    # What the function received is exactly the rendered template (the user's name, the path
    # parameter, the stage), not a proxy event.
    assert answer["event"] == {"id": "42", "user": {"name": "Ada"}, "stage": "prod"}


def test_the_event_is_exactly_what_the_template_rendered(gateway: Gateway) -> None:
    status, _, body = gateway.post("/prod/raw", b'{"id": "7", "nested": {"a": [1]}}')
    assert status == 200
    # No responses: a success is 200 with the result as JSON; no template: the body is the event.
    assert json.loads(body)["event"] == {"id": "7", "nested": {"a": [1]}}
    status, _, body = gateway.post("/prod/no-default", b"")
    assert status == 200 and json.loads(body)["event"] == {}  # an empty body is the event {}


def test_the_response_template_is_chosen_by_accept(gateway: Gateway) -> None:
    status, headers, body = gateway.post("/prod/items/1", b"{}", Accept="text/plain")
    assert (status, body) == (200, b"items: 2")
    assert headers["content-type"] == "text/plain"


def test_an_error_message_selects_by_pattern(gateway: Gateway) -> None:
    status, headers, body = gateway.post("/prod/items/missing", b"{}")
    assert status == 404
    assert json.loads(body) == {"error": "Not found: item missing"}
    assert headers["content-type"] == "application/json"
    assert "cache-control" not in headers


def test_an_error_no_pattern_matches_gets_the_default_response(gateway: Gateway) -> None:
    # As in AWS: the default response also answers errors that no pattern selects.
    status, _, body = gateway.post("/prod/items/crash", b"{}")
    assert status == 200
    # The default template read the error document: no items (null), no calls (empty, as AWS).
    assert body == b'{"items": null, "event": null, "calls": }'


def test_no_default_a_matched_error_passes_its_document_and_others_are_502(gateway: Gateway) -> None:
    status, _, body = gateway.post("/prod/no-default", b'{"id": "missing"}')
    assert status == 404
    error = json.loads(body)
    assert error["errorMessage"] == "Not found: item missing"
    assert error["errorType"] == "LookupError"
    status, headers, body = gateway.post("/prod/no-default", b'{"id": "crash"}')
    assert status == 502
    assert json.loads(body) == {"message": "Internal server error"}
    assert headers["x-propylon-error-type"] == "INTEGRATION_FAILURE"
    status, _, body = gateway.post("/prod/raw", b'{"id": "crash"}')
    assert status == 502


def test_response_override(gateway: Gateway) -> None:
    status, headers, body = gateway.post("/prod/override", b'{"id": "9"}')
    assert status == 201
    assert headers["location"] == "/items/9"
    assert json.loads(body) == {"created": "9"}


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        ("/prod/items/1", b"not json", 500, "API_CONFIGURATION_ERROR"),  # the template cannot render
        ("/prod/not-json-event", b"{}", 500, "API_CONFIGURATION_ERROR"),  # it rendered, but not JSON
        ("/prod/raw", b"not json", 400, "BAD_REQUEST_BODY"),  # a passed-through body must be JSON
        # NaN and Infinity are not JSON (RFC 8259), though Python's json parser takes them.
        ("/prod/raw", b'{"a": NaN, "b": Infinity}', 400, "BAD_REQUEST_BODY"),
        ("/prod/raw", b"[-Infinity]", 400, "BAD_REQUEST_BODY"),
        ("/prod/body-event", b'{"a": NaN}', 500, "API_CONFIGURATION_ERROR"),
    ],
)
def test_a_failing_event_invokes_nothing(
    gateway: Gateway, path: str, body: bytes, status: int, error_type: str
) -> None:
    before = gateway.calls()
    got, headers, _ = gateway.post(path, body)
    assert got == status
    assert headers["x-propylon-error-type"] == error_type
    assert gateway.calls() == before + 1  # only the probe ran
