"""Heads rendered once (issue 15, perf-shell): a cache hit's header lines are rendered when the
entry is stored (``fast_responding.prepare``) and reused while the reply's headers are unchanged.

The writer's output must be the same bytes either way, for every framing case, and an ``after``
hook that changes a hit's headers (CORS) must still be seen by the client.
"""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest
from aiohttp import HttpVersion10, HttpVersion11

from propylon_config import model
from propylon_proxy import context, fast_responding, fast_server, replies
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (runs each test on both servers)


class _Written:
    """What ``fast_responding`` needs of a connection: it records the bytes it is given."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


_HEADER_SETS = [
    [("Content-Type", "text/plain"), ("ETag", '"1"'), ("x-propylon-cache", "hit")],
    [("Date", "Mon, 01 Dec 2026 00:00:00 GMT"), ("Server", "nginx"), ("Connection", "keep-alive")],
    [("X-Caf\u00e9", "caf\u00c3\u00a9"), ("Content-Length", "999"), ("Transfer-Encoding", "chunked")],
    [("x-request-id", "forged"), ("X-Empty", "")],
    [],
]


async def _sent(reply: replies.Reply, *, version: object, method: str, keep_alive: bool) -> tuple[bytes, bool]:
    connection = _Written()
    request = fast_server.FastRequest(
        connection,  # type: ignore[arg-type]
        method,
        "/x",
        version,  # type: ignore[arg-type]
        (),
        keep_alive,
        False,
    )
    ctx = context.RequestContext(request, None, "rid-1", "127.0.0.1", "127.0.0.1", 0.0, 0.0)
    await fast_responding.send(ctx, reply, 30.0)
    return connection.data, request.keep_alive


@pytest.mark.parametrize("headers", _HEADER_SETS)
@pytest.mark.parametrize("version", [HttpVersion10, HttpVersion11])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(("status", "body"), [(200, b"hello"), (200, b""), (204, b"stray"), (404, b"{}")])
@pytest.mark.parametrize(("keep_alive", "close"), [(True, False), (False, False), (True, True)])
async def test_a_prepared_head_is_the_same_bytes(
    monkeypatch, headers, version, method, status, body, keep_alive, close
):
    # The writer's Date changes each second: both sends must see the same one.
    monkeypatch.setattr(fast_responding, "_now", lambda: "Thu, 03 Dec 2026 18:00:00 GMT")
    plain = replies.Reply(status=status, headers=list(headers), body=body, close=close)
    prepared = fast_responding.prepare(list(headers))
    assert prepared is not None
    fast = dataclasses.replace(plain, headers=list(headers), prepared=prepared)
    expected = await _sent(plain, version=version, method=method, keep_alive=keep_alive)
    assert await _sent(fast, version=version, method=method, keep_alive=keep_alive) == expected


async def test_changed_headers_are_rendered_afresh_and_bad_ones_are_never_prepared():
    prepared = fast_responding.prepare([("X-A", "1")])
    assert prepared is not None
    reply = replies.Reply(status=200, headers=[("X-A", "1"), ("X-Added", "by-a-hook")], body=b"b", prepared=prepared)
    data, _ = await _sent(reply, version=HttpVersion11, method="GET", keep_alive=True)
    assert b"\r\nX-Added: by-a-hook\r\n" in data and b"\r\nX-A: 1\r\n" in data
    assert fast_responding.prepare([("X-Split", "a\r\nSet-Cookie: b=1")]) is None
    with pytest.raises(ValueError):
        await _sent(
            replies.Reply(status=200, headers=[("X-Split", "a\r\nb: 1")], body=b""),
            version=HttpVersion11,
            method="GET",
            keep_alive=True,
        )


def _cached_config(backend_url: str) -> model.GatewayConfig:
    cache = model.CacheSettings(enabled=True, ttl_seconds=300)
    stage = c.stage([("ANY /data", c.http_proxy(backend_url + "/big"))], cache=cache)
    routes = tuple(dataclasses.replace(r, cache=cache) for r in stage.routes)
    config = c.config(dataclasses.replace(stage, routes=routes))
    cors = model.Cors(allow_origins=("https://app.example",))
    apis = tuple(dataclasses.replace(api, cors=cors) for api in config.apis)
    return dataclasses.replace(config, apis=apis)


async def test_a_hit_is_the_stored_reply_and_after_hooks_still_apply(start_gateway, backend):
    gw = await start_gateway(_cached_config(backend.url))
    url = gw.addresses.urls()["public"] + "/prod/data?n=5"
    seen = []
    async with aiohttp.ClientSession() as session:
        for origin in (None, None, "https://app.example", None):
            headers = {"Origin": origin} if origin else {}
            async with session.get(url, headers=headers) as resp:
                seen.append((resp.status, await resp.read(), resp.headers.copy()))
    (_, first_body, first), (_, hit_body, hit), (_, cors_body, cors), (_, again_body, again) = seen
    assert [s[0] for s in seen] == [200, 200, 200, 200]
    assert first_body == hit_body == cors_body == again_body == b"xxxxx"
    assert [h["x-propylon-cache"] for h in (first, hit, cors, again)] == ["miss", "hit", "hit", "hit"]
    assert len({h["x-request-id"] for h in (first, hit, cors, again)}) == 4  # each response its own
    assert hit["Content-Type"] == first["Content-Type"] == "application/octet-stream"
    assert hit["Content-Length"] == "5"
    assert cors["Access-Control-Allow-Origin"] == "https://app.example"  # the CORS after hook ran
    assert "Access-Control-Allow-Origin" not in hit and "Access-Control-Allow-Origin" not in again
    assert len(backend.received) == 0  # /big is not recorded, and only the miss reached it


async def test_a_head_and_an_http10_hit_are_framed_like_any_reply(start_gateway, backend):
    gw = await start_gateway(_cached_config(backend.url))
    port = gw.addresses.port
    get = b"GET /prod/data?n=3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    miss, _ = await c.raw_request(port, get)
    hit, closed = await c.raw_request(port, get)
    assert (miss.headers["x-propylon-cache"], hit.headers["x-propylon-cache"]) == ("miss", "hit")
    assert hit.body == b"xxx" and hit.headers["content-length"] == "3" and closed
    assert hit.headers["connection"] == "close"
    head_request = b"HEAD /prod/data?n=3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    await c.raw_request(port, head_request)
    head, _ = await c.raw_request(port, head_request)
    assert (head.status, head.headers["x-propylon-cache"], head.body) == (200, "hit", b"")
    old, closed = await c.raw_request(port, b"GET /prod/data?n=3 HTTP/1.0\r\nHost: h\r\n\r\n")
    assert old.data.startswith(b"HTTP/1.0 200 ") and old.body == b"xxx" and closed
    assert old.headers["x-propylon-cache"] == "hit"
