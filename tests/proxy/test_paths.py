"""Path confusion over the wire: what a route matches is exactly what the backend receives."""

from __future__ import annotations

import pytest

from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)


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
        # Dots behind an encoded slash: a backend that decodes %2F before normalising would
        # climb out (issue 8, item 3).
        "/prod/public/..%2F..%2Fadmin",
        "/prod/public/d/f%2F..",
        "/prod/public/%2E%2e%2F",
        "/prod/raw/a/%2e%2e%2Fb/c%20d",
        "/prod/public/x%2F.%2Fy",
        "/prod/public/a%2F..;x=y",
        # Raw (unescaped) non-ASCII bytes: backends read them as UTF-8, Latin-1 or worse.
        "/prod/public/caf\u00e9",
        "/prod/public/x?q=\u00e9",
    ],
)
async def test_dot_nul_and_backslash_segments_are_400(gw, backend, target):
    response, closed = await c.raw_request(gw.addresses.port, _get(target))
    assert response.status == 400, response.data[:200]
    assert response.json() == {"message": "Bad Request"}
    assert closed
    assert backend.received == []


async def test_a_raw_latin1_byte_in_the_target_is_400(gw, backend):
    request = b"GET /prod/public/caf\xe9 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
    response, _ = await c.raw_request(gw.addresses.port, request)
    assert response.status == 400, response.data[:200]
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
        # A greedy value keeps its raw form.
        ("/prod/raw/a//b", "/raw/a//b"),
        ("/prod/raw/a/%2e%2e.%2Fb/c%20d?q=1&q=2", "/raw/a/%2e%2e.%2Fb/c%20d?q=1&q=2"),
        ("/prod/public/a.%2F.b", "/files/a.%2F.b"),
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
