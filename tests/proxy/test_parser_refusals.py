"""What a listener answers to bytes that are not a request it can parse (DESIGN.md §3, §8): the
section-3 JSON refusal in an ``HTTP/1.1`` response that closes the connection, the same bytes
on every listener, whichever server runs it.

aiohttp answers its parser's refusals as a stand-in request that says HTTP/1.0, so the aiohttp
listeners (the public one with ``--http-server aiohttp``, the internal and admin ones always)
answered ``HTTP/1.0 400`` without ``Connection: close`` where the httptools server answered
``HTTP/1.1 400``. The gateway runs in this process on fixed loopback ports; raw sockets.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from propylon_proxy import gateway, settings
from tests.ports import free_port
from tests.proxy import conftest as c

MALFORMED = {
    "not-http": (b"GARBAGE\r\n\r\n", 400),
    "bad-request-line": (b"GET /prod/x HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
    "header-without-colon": (b"GET /prod/x HTTP/1.1\r\nHost: a\r\nNo Colon Here\r\n\r\n", 400),
    "bare-cr-in-header": (b"GET /prod/x HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n", 400),
    "obs-fold": (b"GET /prod/x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n  b\r\n\r\n", 400),
    "uri-too-long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "header-too-large": (b"GET /prod/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
}
SLOW_HEAD = b"GET /prod/x HTTP/1.1\r\nHost: a\r\n"  # never finished: 408 after header_timeout
LISTENERS = ("public httptools", "public aiohttp", "internal", "admin")
# What differs from one answer to the next by design.
_VARYING = re.compile(rb"^(x-request-id|Date): .*$", re.MULTILINE | re.IGNORECASE)


def _port() -> int:
    """A free loopback port in 10000-30000, where this suite's servers live."""
    while (port := free_port()) > 30000:
        pass
    return port


async def _started(http_server: str) -> gateway.Gateway:
    listener = settings.ListenerSettings(header_timeout=0.3)
    gw = gateway.Gateway(settings.ProxySettings(listener=listener, http_server=http_server))
    gw.swap(c.config(c.stage([("ANY /x", c.mock())])))
    await gw.start("127.0.0.1", _port(), _port(), _port())
    return gw


@pytest.fixture
async def ports() -> AsyncIterator[dict[str, int]]:
    """Each listener's port: the public one on both servers, the internal and admin ones."""
    fast, slow = await _started("httptools"), await _started("aiohttp")
    try:
        yield {
            "public httptools": fast.addresses.port,
            "public aiohttp": slow.addresses.port,
            "internal": slow.addresses.internal_port,
            "admin": slow.addresses.admin_port,
        }
    finally:
        await fast.stop(grace=0.5)
        await slow.stop(grace=0.5)


async def _answers(ports: dict[str, int], data: bytes) -> dict[str, tuple[bytes, bool]]:
    """Each listener's answer to ``data`` (request id and date masked), and whether it closed."""
    out = {}
    for name in LISTENERS:
        response, closed = await c.raw_request(ports[name], data, timeout=3)
        out[name] = (_VARYING.sub(rb"\1: *", response.data.replace(b"\r\n", b"\n")), closed)
    return out


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_request_gets_the_same_http_1_1_refusal_on_every_listener(ports, case):
    data, status = MALFORMED[case]
    answers = await _answers(ports, data)
    for name, (answer, closed) in answers.items():
        head, _, body = answer.partition(b"\n\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), (name, head)
        assert b"\nconnection: close" in head.lower(), (name, head)
        assert b"\ncontent-type: application/json" in head.lower(), (name, head)
        assert body.startswith(b'{"message": "'), (name, body)
        assert closed, name
    assert len({answer for answer, _ in answers.values()}) == 1, answers


async def test_a_head_too_slow_gets_the_same_http_1_1_408_on_every_listener(ports):
    answers = await _answers(ports, SLOW_HEAD)
    (answer, closed) = answers["public aiohttp"]
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\n"), answer
    assert answer.endswith(b'\n\n{"message": "Request Timeout"}') and closed
    assert len({answer for answer, _ in answers.values()}) == 1, answers


@pytest.mark.parametrize("http_server", settings.HTTP_SERVERS)
async def test_a_head_begun_late_in_the_idle_time_still_gets_its_408(http_server):
    """The keep-alive clock stops when a head begins: with keep-alive shorter than the head
    deadline, aiohttp used to close such a connection silently when its idle timer fired."""
    listener = settings.ListenerSettings(header_timeout=0.6, keepalive_timeout=0.3)
    gw = gateway.Gateway(settings.ProxySettings(listener=listener, http_server=http_server))
    gw.swap(c.config(c.stage([("ANY /x", c.mock())])))
    await gw.start("127.0.0.1", _port(), _port(), _port())
    try:
        for port in (gw.addresses.port, gw.addresses.internal_port):
            response, closed = await c.raw_request(port, SLOW_HEAD, timeout=3)
            assert (response.status, closed) == (408, True), (port, response.data)
            assert response.json() == {"message": "Request Timeout"}
    finally:
        await gw.stop(grace=0.5)
