"""``serve --watch`` keeps an Api served with a route that fails closed when an edit breaks it.

DESIGN.md §1: a route whose Authorizer is missing fails closed and the Api stays served; §8:
a broken edit never replaces the last good version. The audit found the whole Stage dropped
(404 and "the Stage serves nothing") instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.test_serve import Served, _get, _wait_for, _write

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: GET /hello
      integration: {{type: MOCK, mock: {{statusCode: 200, body: '{body}'}}}}
    - routeKey: GET /noauth
      authorizer: missing
      integration: {{type: MOCK, mock: {{statusCode: 200}}}}
{extra}---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: users, basePath: /prod}}
"""
BROKEN_ROUTE = """\
    - routeKey: GET /pets/{id
      integration: {type: MOCK, mock: {statusCode: 200}}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "api.yaml").write_text(API.format(body="v1", extra=""))
    return manifests


@pytest.fixture
def watched(folder: Path, tmp_path: Path) -> Iterator[Served]:
    served = Served(folder, tmp_path, "--watch", "--poll-interval", "0.2")
    yield served
    served.stop()


def test_a_broken_edit_keeps_the_api_whose_route_fails_closed(watched: Served, folder: Path) -> None:
    hello, noauth = watched.url("/prod/hello"), watched.url("/prod/noauth")
    assert _get(hello) == (200, b"v1")
    assert _get(noauth)[0] == 500
    _write(folder / "api.yaml", API.format(body="v2", extra=BROKEN_ROUTE))
    assert _wait_for(lambda: "kept the last good version of: Api shop/users" in watched.stderr(), 5.0), watched.stderr()
    assert "'{id'" in watched.stderr()
    assert "serves nothing" not in watched.stderr()
    assert _get(hello) == (200, b"v1")
    assert _get(noauth)[0] == 500
    # Fixed: the edit is served, and an edit that still misses the Authorizer is served as written.
    _write(folder / "api.yaml", API.format(body="v3", extra=""))
    assert _wait_for(lambda: _get(hello) == (200, b"v3"), 5.0), watched.stderr()
    assert _get(noauth)[0] == 500
    assert watched.stop() == 0
