"""Underscore twins and the client's framing never reach the backend (DESIGN.md section 8,
forwarding headers: "The underscore twin of any header the gateway or a mapping sets is dropped").

A backend that folds ``_`` into ``-`` (nginx with ``underscores_in_headers``, CGI, WSGI) reads
``Content_Length: 99`` as a second Content-Length, ``Transfer_Encoding: chunked`` as a second
framing: a smuggling vector. The request goes over a raw socket, so the names and values are
exactly the client's, and the echo backend reports the raw header block it received.
"""

from __future__ import annotations

import dataclasses

import pytest

from propylon_config.headers import GATEWAY_OWNED, folded
from propylon_proxy import forwarding
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)

# Every name the gateway sets or frames itself, spelled as its twin (``Content_Length``).
OWNED = sorted(GATEWAY_OWNED | forwarding.HOP_BY_HOP | {"expect"})
TWINS = sorted({name.replace("-", "_").title() for name in OWNED if "-" in name})

OPTIONS = {
    "peer": "1.2.3.4",
    "trusted": (),
    "scheme": "http",
    "upstream_host": "backend:80",
    "request_id": "rid",
    "trace": "00-11111111111111111111111111111111-2222222222222222-01",
}


def _received(record: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in record["headers"]:
        out.setdefault(name, []).append(value)
    return out


@pytest.fixture
async def proxied(start_gateway, backend):
    gw = await start_gateway(c.config(c.stage([("ANY /echo/{proxy+}", c.http_proxy(backend.url + "/{proxy}"))])))
    return gw, backend


@pytest.mark.parametrize("size", [5, 300_000])  # read whole, and streamed
async def test_framing_twins_and_the_clients_length_spelling_never_reach_the_backend(proxied, size):
    gw, backend = proxied
    body = b"h" * size
    head = (
        "POST /prod/echo/a HTTP/1.1\r\nHost: gw.test\r\n"
        "Content_Length: 99\r\nTransfer_Encoding: chunked\r\nKeep_Alive: 1\r\nProxy_Connection: keep-alive\r\n"
        "Proxy_Authorization: Basic c2VjcmV0\r\nX_Forwarded_For: 6.6.6.6\r\nX_Request_Id: mine\r\n"
        f"Content-Length: 0{size}\r\nX_Lang: de\r\nConnection: close\r\n\r\n"
    )
    response, _ = await c.raw_request(gw.addresses.port, head.encode() + body)
    assert response.status == 200, response.data[:300]
    record = backend.received[-1]
    seen = _received(record)
    assert not [name for name in seen if "_" in name and folded(name) in OWNED], seen
    assert [(n, v) for n, v in record["headers"] if n.lower() == "content-length"] == [("Content-Length", str(size))]
    assert record["body"] == body.decode()
    assert seen["X_Lang"] == ["de"]  # a twin of a name the gateway does not own is the client's


@pytest.mark.parametrize("twin", TWINS)
def test_the_twin_of_every_gateway_owned_name_is_dropped(twin: str) -> None:
    sent = [("Host", "gw.test"), (twin, "evil"), (twin.lower(), "evil"), (twin.upper(), "evil"), ("X-Kept", "1")]
    for trusted_peer in ("10.0.0.1", "1.2.3.4"):
        options = {**OPTIONS, "peer": trusted_peer, "trusted": (forwarding.ipaddress.ip_network("10.0.0.0/8"),)}
        out = forwarding.upstream_request_headers(sent, **options)
        assert not [n for n, v in out if v == "evil"], out
        assert ("X-Kept", "1") in out


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        (("Content-Length", "05"), ("Content-Length", "5")),
        (("content-length", "17"), ("Content-Length", "17")),
        (("CONTENT-LENGTH", "000"), ("Content-Length", "0")),
        (("Content-Length", "12"), ("Content-Length", "12")),
    ],
)
def test_content_length_goes_in_the_gateways_spelling(sent, forwarded) -> None:
    out = forwarding.upstream_request_headers([("Host", "h"), sent], **OPTIONS)
    assert [pair for pair in out if pair[0].lower() == "content-length"] == [forwarded]
    # The two-pass form (Connection naming a header) frames alike.
    slow = forwarding.upstream_request_headers([("Host", "h"), ("Connection", "X-A"), ("X-A", "1"), sent], **OPTIONS)
    assert [pair for pair in slow if pair[0].lower() == "content-length"] == [forwarded]


def test_the_twin_of_a_cache_key_header_is_dropped_when_the_route_keys_by_it() -> None:
    keyed = forwarding.cache_key_headers(["header.X-Lang", "querystring.page", "header.accept_language"])
    assert keyed == {"x-lang", "accept-language"}
    sent = [("Host", "h"), ("X-Lang", "en"), ("X_Lang", "de"), ("x_lang", "fr"), ("Accept_Language", "de")]
    out = forwarding.upstream_request_headers(sent, **OPTIONS, keyed=keyed)
    assert [pair for pair in out if folded(pair[0]) in keyed] == [("X-Lang", "en")]
    # Not keyed: the twin is an ordinary header of the client's.
    assert ("X_Lang", "de") in forwarding.upstream_request_headers(sent, **OPTIONS)


async def test_a_cache_key_headers_twin_never_reaches_the_backend(start_gateway, backend):
    """End to end: the route keys its cache by X-Lang, so ``X_Lang`` (which a folding backend
    reads as X-Lang) is dropped, while the dashed header itself is the client's."""
    plain = c.stage([("GET /lang", c.http_proxy(backend.url + "/lang"))])
    keyed_route = dataclasses.replace(plain.routes[0], cache_key_parameters=("header.X-Lang",))
    gw = await start_gateway(c.config(dataclasses.replace(plain, routes=(keyed_route,))))
    head = "GET /prod/lang HTTP/1.1\r\nHost: gw.test\r\nX-Lang: en\r\nX_Lang: de\r\nx_lang: fr\r\n"
    head += "Connection: close\r\n\r\n"
    response, _ = await c.raw_request(gw.addresses.port, head.encode())
    assert response.status == 200, response.data[:300]
    seen = _received(backend.received[-1])
    assert seen.get("X-Lang") == ["en"]
    assert "X_Lang" not in seen and "x_lang" not in seen, seen
