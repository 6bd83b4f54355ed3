"""Issue 12, request validation through `propylon serve` against a loopback backend that
records what it received (DESIGN.md sections 1, 3, 8)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: shop}}
spec:
  models:
    Order:
      type: object
      required: [item, quantity]
      additionalProperties: false
      properties:
        item: {{type: string}}
        quantity: {{type: integer, minimum: 0, exclusiveMinimum: true}}
        tags: {{type: array, items: {{type: string}}, maxItems: 3}}
  routes:
    - routeKey: "POST /orders"
      requestValidation: {{body: Order, requiredParameters: [querystring.store, header.X-Trace]}}
      integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{port}/orders"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: shop}}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, backends.Backend]]:
    backend = backends.Backend()
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.format(port=backend.port))
    gateway = Served(folder, tmp_path)
    try:
        yield gateway, backend
    finally:
        gateway.stop()
        backend.close()


def _post(gateway: Served, body: bytes, query: str = "?store=1", **headers: str) -> tuple[int, dict[str, object]]:
    sent = {"X-Trace": "t1", "Content-Type": "application/json", **headers}
    request = urllib.request.Request(gateway.url("/prod/orders" + query), data=body, method="POST", headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {"raw": response.read()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_valid_body_reaches_the_backend_byte_for_byte(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    body = b'{ "item" : "tea",\n  "quantity": 2, "tags": ["x"] }'
    assert _post(gateway, body)[0] == 200
    assert backend.bodies() == [body]


@pytest.mark.parametrize(
    "body",
    [
        b'{"item": "tea"}',  # missing required
        b'{"item": 7, "quantity": 1}',  # wrong type
        b'{"item": "tea", "quantity": 0}',  # exclusiveMinimum (draft 4 boolean form)
        b'{"item": "tea", "quantity": -1}',  # minimum
        b'{"item": "tea", "quantity": 1, "extra": 1}',  # additionalProperties
        b'{"item": "tea", "quantity": 1, "tags": [1]}',  # array items
        b'{"item": "tea", "quantity": 1, "tags": ["a", "b", "c", "d"]}',  # maxItems
        b"not json",
        b'{"item": "tea", "quantity": 1, "quantity": -5}',  # duplicate keys
        b"[" * 100000 + b"]" * 100000,  # deep nesting: answered, never a crash
        b'{"item": "tea", "quantity": NaN}',  # not JSON (RFC 8259), though Python's json takes it
        b'{"item": "tea", "quantity": Infinity}',
    ],
)
def test_invalid_bodies_are_400_and_never_forwarded(served: tuple[Served, backends.Backend], body: bytes) -> None:
    gateway, backend = served
    assert _post(gateway, body) == (400, {"message": "Invalid request body"})
    assert backend.bodies() == []


def test_missing_parameters_are_listed_in_declared_order(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    request = urllib.request.Request(gateway.url("/prod/orders"), data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert json.loads(caught.value.read()) == {"message": "Missing required request parameters: [store, X-Trace]"}
    assert backend.bodies() == []


@pytest.mark.parametrize(
    ("query", "trace", "missing"),
    [("?store=", "", "store, X-Trace"), ("?store=", "t1", "store"), ("?store=1", "", "X-Trace")],
)
def test_blank_parameters_count_as_missing(
    served: tuple[Served, backends.Backend], query: str, trace: str, missing: str
) -> None:
    # AWS: required parameters must be "included and not blank" (as path parameters already were).
    gateway, backend = served
    body = b'{"item": "tea", "quantity": 1}'
    assert _post(gateway, body, query, **{"X-Trace": trace}) == (
        400,
        {"message": f"Missing required request parameters: [{missing}]"},
    )
    assert backend.bodies() == []


def test_a_compressed_body_is_415(served: tuple[Served, backends.Backend]) -> None:
    gateway, backend = served
    status, _ = _post(gateway, b"\x1f\x8b\x08\x00", **{"Content-Encoding": "gzip"})
    assert status == 415
    assert backend.bodies() == []
