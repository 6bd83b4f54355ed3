"""Path confusion over the wire: what a route matches is exactly what the backend receives."""

from __future__ import annotations

import pytest

from tests.proxy import conftest as c


@pytest.fixture
async def gw(start_gateway, backend):
    snapshot = c.config(
        c.stage(
            [
                ("GET /public/{name}", c.http_proxy(backend.url + "/files/{name}")),
                ("GET /public/{dir}/{name}", c.http_proxy(backend.url + "/nested/{dir}/{name}")),
                ("GET /admin/secret", c.mock(body='{"secret":true}')),
                ("GET /raw/{proxy+}", c.http_proxy(backend.url + "/raw/{proxy}")),
            ]
        )
    )
    gateway = await start_gateway(snapshot)
    return gateway


def _get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(
    "target",
    [
        "/prod/public/../admin/secret",
        "/prod/public/%2e%2e/admin/secret",
        "/prod/public/%2E%2e/admin/secret",
        "/prod/%2E%2e/prod/admin/secret",
        "/prod/public/./x",
        "/prod/public/..;x=y/admin/secret",
        "/prod/public/.;x=y",
        "/prod/public/a%00b",
        "/prod/public/a%5Cb",
        "/prod/public/a\\b",
        "/prod/public/a%zzb",
        "/prod/raw/x/../../admin/secret",
    ],
)
async def test_dot_nul_and_backslash_segments_are_400(gw, backend, target):
    response, closed = await c.raw_request(gw.addresses.port, _get(target))
    assert response.status == 400, response.data[:200]
    assert response.json() == {"message": "Bad Request"}
    assert closed
    assert backend.received == []


@pytest.mark.parametrize(
    ("target", "upstream"),
    [
        # %2F is data inside one segment: one {name}, forwarded still encoded.
        ("/prod/public/a%2Fb", "/files/a%2Fb"),
        # Decoded for matching, re-encoded for the backend: the same segment either way.
        ("/prod/public/hello%20world", "/files/hello%20world"),
        ("/prod/public/%61bc", "/files/abc"),
        ("/prod/public/a;x=y", "/files/a;x=y"),
        ("/prod/public/d/f%2F..", "/nested/d/f%2F.."),
        # "../" inside one segment is data, not a step up.
        ("/prod/public/%2E%2e%2F", "/files/..%2F"),
        # A greedy value keeps its raw form.
        ("/prod/raw/a/%2e%2e%2Fb/c%20d?q=1&q=2", "/raw/a/%2e%2e%2Fb/c%20d?q=1&q=2"),
        ("/prod/raw/a//b", "/raw/a//b"),
    ],
)
async def test_backend_receives_exactly_what_the_route_matched(gw, backend, target, upstream):
    response, _ = await c.raw_request(gw.addresses.port, _get(target))
    assert response.status == 200, response.data[:300]
    assert response.json()["target"] == upstream
    assert [r["target"] for r in backend.received] == [upstream]


@pytest.mark.parametrize(
    "target",
    [
        "/prod/public//x",  # an empty segment matches no {param}
        "/prod/public/",
        "/prod//public/x",
        "/prod/admin/secret/",  # one segment too many
        "/prod/Admin/secret",  # literals are case-sensitive
        "/prod/admin%2Fsecret",  # %2F never separates
        "/PROD/admin/secret",
    ],
)
async def test_paths_that_match_no_route_are_404(gw, backend, target):
    response, _ = await c.raw_request(gw.addresses.port, _get(target))
    assert response.status == 404, response.data[:300]
    assert response.json() == {"message": "Not Found"}
    assert backend.received == []
