"""The plain route's shortcuts (issue 15, perf-server2) answer exactly as the long forms do.

- ``forwarding.upstream_request_headers`` (one pass, names classified once) against
  ``_upstream_request_headers_named`` (the two-pass form it falls back to) on hostile tables:
  underscore twins, forwarding headers from trusted and untrusted peers, ``Connection`` naming
  gateway-owned or forwarding headers, repeated Host and traceparent.
- fast_server's noted headers (``incoming.header_lookup``) against ``request.headers.get`` on
  requests parsed by the real server: case, repeats, non-UTF-8 bytes, names not noted.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from propylon_proxy import fast_server, forwarding, incoming, settings

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)

TABLES = [
    [],
    [("Host", "a.example:8080")],
    [("host", "a"), ("HOST", "b")],
    [("Host", "h"), ("User-Agent", "curl/8"), ("Accept", "*/*"), ("Connection", "keep-alive")],
    [("Host", "h"), ("Connection", "close"), ("Close", "x")],
    [("Host", "h"), ("Connection", "X-Forwarded-For, X-Custom"), ("X-Forwarded-For", "1.1.1.1"), ("X-Custom", "1")],
    [("Connection", "keep-alive, TE"), ("TE", "trailers"), ("Keep-Alive", "5"), ("Upgrade", "h2c")],
    [("Connection", "")],
    [("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), ("X_Forwarded_For", "6.6.6.6"), ("x-forwarded-for", "3.3.3.3")],
    [("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "ftp"), ("X-Forwarded-Host", "evil")],
    [("Forwarded", "for=1.1.1.1"), ("X-Real-IP", "1.1.1.1"), ("X-Forwarded-Port", "443"), ("x_real_ip", "9")],
    [("X-Request-Id", "mine"), ("x_request_id", "mine2"), ("Expect", "100-continue"), ("Ho_st", "z")],
    [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("Traceparent", "junk")],
    [("Transfer_Encoding", "chunked"), ("Proxy-Authorization", "secret"), ("Proxy-Connection", "keep-alive")],
]


@pytest.mark.parametrize("headers", TABLES)
@pytest.mark.parametrize(("peer", "trusted"), [("10.0.0.1", TRUSTED), ("1.2.3.4", TRUSTED), ("10.0.0.1", ())])
@pytest.mark.parametrize("trace", ["00-11111111111111111111111111111111-2222222222222222-01", None])
def test_one_pass_equals_two_passes(headers, peer, trusted, trace):
    options: dict[str, Any] = {
        "peer": peer,
        "trusted": trusted,
        "scheme": "http",
        "upstream_host": "backend:80",
        "request_id": "rid",
        "trace": trace,
    }
    fast = forwarding.upstream_request_headers(headers, **options)
    slow = forwarding._upstream_request_headers_named(headers, **options)
    if trace is None:  # a new span id each time (and a new trace without a valid one sent)
        continued = forwarding.incoming_trace(next((v for n, v in headers if n.lower() == "traceparent"), None))
        assert [forwarding.incoming_trace(h[-1][1]) is not None for h in (fast, slow)] == [True, True]
        if continued is not None:
            assert fast[-1][1].split("-")[1::2] == slow[-1][1].split("-")[1::2] == [continued[0], continued[2]]
        fast, slow = fast[:-1], slow[:-1]
    assert fast == slow


class _Transport(asyncio.Transport):
    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


HEADS = [
    b"Host: a.example\r\n",
    b"hOsT: a.example:80\r\nX-Propylon-Canary-Key: k1\r\nx-propylon-canary-key: k2\r\n",
    b"Host: h\r\nTraceparent: 00-x\r\nORIGIN: https://o\r\nAccess-Control-Request-Method: PUT\r\n",
    b"Host: \xc3\xa9t\xe9\r\nExpect: 100-continue\r\nUser-Agent: ua\r\nX-Other: 1\r\n",
    b"X-Only: 1\r\n",
    b"Host: h\r\nauthorization: Bearer a.b.c\r\nAUTHORIZATION: second\r\nX-API-Key: k\xe9y\r\nx-api-key: two\r\n",
    b"Host: h\r\nAuthorization:\r\nx-api-key: \r\nIf-None-Match: x\r\n",
    b"Host: h\r\nCONTENT-ENCODING: gzip\r\ncontent-encoding: identity\r\nContent-Length: 0\r\n",
    b"Host: h\r\nuser-agent: first/\xff\xfe\r\nUSER-AGENT: second\r\nUser_Agent: twin\r\nX-Length-10: 1\r\n",
    b"Host: h\r\nUser-Agent:\r\n",
]
NAMES = [
    "Host",
    "host",
    "x-propylon-canary-key",
    "traceparent",
    "Expect",
    "Origin",
    "Access-Control-Request-Method",
    "User-Agent",
    "user-agent",
    "User_Agent",
    "X-Other",
    "Authorization",
    "authorization",
    "x-api-key",
    "X-Api-Key",
    "If-None-Match",
    "Content-Encoding",
    "content-encoding",
    "Missing",
]


@pytest.mark.parametrize("head", HEADS)
def test_noted_headers_read_as_the_multidict_does(head):
    async def parse() -> list[fast_server.FastRequest]:
        seen: list[fast_server.FastRequest] = []

        async def handler(request: fast_server.FastRequest) -> None:
            seen.append(request)

        server = fast_server.FastServer(handler, settings.ListenerSettings(), None, fallback=None)  # type: ignore[arg-type]
        connection = server()
        connection.connection_made(_Transport())
        connection.data_received(b"GET /x HTTP/1.1\r\n" + head + b"\r\n")
        await asyncio.sleep(0)
        connection.close()
        return seen

    (request,) = asyncio.run(parse())
    lookup = incoming.header_lookup(request)
    assert lookup == request.first_header
    for name in NAMES:
        assert lookup(name) == request.headers.get(name), name
