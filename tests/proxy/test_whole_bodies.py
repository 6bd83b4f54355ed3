"""Request bodies that arrive whole with their head go upstream as bytes in one write with the
head (``proxying.RequestBody.whole``): the backend sees the same body and framing as when it
streams, and the size limit still holds. Runs on both servers."""

from __future__ import annotations

import pytest

from propylon_config import model
from propylon_proxy import settings
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)


@pytest.fixture
async def proxied(start_gateway, backend):
    snapshot = c.config(
        c.stage([("ANY /echo/{proxy+}", c.http_proxy(backend.url + "/{proxy}"))]),
        settings=model.Settings(max_body_bytes=16),
    )
    gw = await start_gateway(snapshot, listener=settings.ListenerSettings(body_stall_timeout=0.5))
    return gw, backend


def _request(method: str, framing: str, body: bytes) -> bytes:
    head = f"{method} /prod/echo/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n{framing}\r\n"
    return head.encode() + body


def _headers(record: dict[str, object]) -> dict[str, str]:
    pairs = record["headers"]
    assert isinstance(pairs, list)
    return {name.lower(): value for name, value in pairs}


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_whole_content_length_body_reaches_backend_as_sent(proxied, method):
    gw, backend = proxied
    response, _ = await c.raw_request(gw.addresses.port, _request(method, "Content-Length: 11\r\n", b"hello world"))
    assert response.status == 200
    [record] = backend.received
    assert (record["method"], record["body"]) == (method, "hello world")
    headers = _headers(record)
    assert headers["content-length"] == "11" and "transfer-encoding" not in headers


async def test_whole_chunked_body_is_forwarded_with_its_length(proxied):
    gw, backend = proxied
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    response, _ = await c.raw_request(gw.addresses.port, _request("POST", "Transfer-Encoding: chunked\r\n", chunked))
    assert response.status == 200
    [record] = backend.received
    assert record["body"] == "hello world"
    headers = _headers(record)
    assert headers["content-length"] == "11" and "transfer-encoding" not in headers


async def test_whole_chunked_body_over_the_limit_is_413_and_never_sent(proxied):
    gw, backend = proxied
    chunked = b"11\r\n" + b"x" * 17 + b"\r\n0\r\n\r\n"  # 17 bytes, one over max_body_bytes
    response, _ = await c.raw_request(gw.addresses.port, _request("POST", "Transfer-Encoding: chunked\r\n", chunked))
    assert (response.status, response.json()) == (413, {"message": "Request Too Long"})
    assert response.headers["x-propylon-error-type"] == "REQUEST_TOO_LARGE"
    assert backend.received == []


async def test_body_at_the_limit_passes(proxied):
    gw, backend = proxied
    response, _ = await c.raw_request(gw.addresses.port, _request("POST", "Content-Length: 16\r\n", b"y" * 16))
    assert response.status == 200
    assert [r["body"] for r in backend.received] == ["y" * 16]
