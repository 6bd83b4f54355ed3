"""Bodies that arrive whole with their head leave in one write with it: a request body goes
upstream as bytes (``proxying.RequestBody.whole``) and a backend body is relayed with the
response head (``upstream_pool.PooledResponse.whole``, httptools server). The backend and the
client see the same bodies and framing as when they stream, and the size limit still holds.
Runs on both servers."""

from __future__ import annotations

import asyncio

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


# --- backend bodies that arrive whole with their head (PooledResponse.whole) ------------------

_ANSWERS = {
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "/until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
    "/empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
}


@pytest.fixture
async def raw_backend():
    """Answers each request with one whole, prewritten response in one write."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            answer = _ANSWERS[path]
            if head.startswith(b"HEAD "):
                answer = answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def relayed(start_gateway, raw_backend):
    route = c.http_proxy(f"http://127.0.0.1:{raw_backend}/{{proxy}}")
    return await start_gateway(c.config(c.stage([("ANY /raw/{proxy+}", route)])))


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            assert rest == b"\r\n"
            return out
        out, body = out + rest[:n], rest[n + 2 :]


@pytest.mark.parametrize("path", ["chunked", "until-close"])
async def test_an_unsized_whole_body_is_relayed_chunked_to_http_1_1(relayed, path):
    request = f"GET /prod/raw/{path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n".encode()
    response, _ = await c.raw_request(relayed.addresses.port, request)
    assert response.status == 200
    assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
    assert _dechunk(response.body) == b"hello world"


async def test_an_unsized_whole_body_is_close_delimited_to_http_1_0(relayed):
    request = b"GET /prod/raw/until-close HTTP/1.0\r\nHost: gw.test\r\n\r\n"
    response, closed = await c.raw_request(relayed.addresses.port, request)
    assert response.status == 200 and closed
    assert "transfer-encoding" not in response.headers and response.body == b"hello world"


@pytest.mark.parametrize(("path", "body"), [("length", b"hello world"), ("empty", b"")])
async def test_a_sized_whole_body_keeps_its_length(relayed, path, body):
    request = f"GET /prod/raw/{path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n".encode()
    response, _ = await c.raw_request(relayed.addresses.port, request)
    assert response.status == 200
    assert response.headers["content-length"] == str(len(body)) and response.body == body


async def test_a_head_answer_has_the_length_and_no_body(relayed):
    request = b"HEAD /prod/raw/length HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
    response, _ = await c.raw_request(relayed.addresses.port, request)
    assert response.status == 200
    assert response.headers["content-length"] == "11" and response.body == b""
