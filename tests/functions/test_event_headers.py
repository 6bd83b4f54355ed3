"""EventShape's headers, case by case (the serve-level test is test_event_forwarding_serve.py).

DESIGN.md section 8's forwarding rules as a proxied request has them (``forwarding``), applied
to payload 1.0 and 2.0 events: what a trusted peer may pass on, what ``Connection`` names, and
the gateway's X-Forwarded-For / -Proto / -Port.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from propylon_proxy import context, forwarding, settings
from propylon_proxy.functions import events

PEER = "10.0.0.5"
TRUSTED = settings.parse_networks("10.0.0.0/8")


class _Transport:
    def __init__(self, sockname: Any) -> None:
        self.sockname = sockname

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sockname if name == "sockname" else default


def _ctx(headers: list[tuple[str, str]], *, trusted: bool = False, sockname: Any = ("0.0.0.0", 8080)) -> Any:
    raw = tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in headers)
    request = types.SimpleNamespace(
        raw_headers=raw,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        version=types.SimpleNamespace(major=1, minor=1),
        method="GET",
        raw_path="/prod/x",
        transport=_Transport(sockname) if sockname is not None else None,
    )
    # As the dispatcher makes it: the source is the peer unless the peer is trusted.
    source = forwarding.source_ip(PEER, headers, TRUSTED if trusted else ())
    ctx = context.RequestContext(request, None, "rid", PEER, source, 0.0, 1_700_000_000.0)  # type: ignore[arg-type]
    ctx.peer_trusted = trusted
    return ctx


def _shape(version: str) -> events.EventShape:
    return events.EventShape(
        version=version,
        stage_v2="prod",
        resource="/x",
        route_key="GET /x",
        stage="prod",
        base_path="/prod",
        api_id="a",
        account_id="ns",
        resource_id="abcdef",
        binary_media_types=(),
    )


def _headers(version: str, ctx: Any) -> dict[str, str]:
    event = _shape(version).build(ctx, None)
    if version == "1.0":
        assert event["multiValueHeaders"] == {n: [v] for n, v in event["headers"].items()}
    return {n.lower(): v for n, v in event["headers"].items() if n.lower() != "traceparent"}


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_an_untrusted_peers_forwarding_headers_are_the_gateways(version: str) -> None:
    sent = [
        ("Host", "api.example"),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X_Forwarded_For", "7.7.7.7"),
        ("X-Real-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6"),
        ("Accept", "*/*"),
    ]
    assert _headers(version, _ctx(sent)) == {
        "host": "api.example",
        "accept": "*/*",
        "x-forwarded-for": PEER,
        "x-forwarded-proto": "http",
        "x-forwarded-port": "8080",
    }


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_a_trusted_peers_chain_is_kept_as_a_proxied_request_has_it(version: str) -> None:
    sent = [
        ("Host", "api.example"),
        ("X-Forwarded-For", "1.2.3.4, 10.0.0.9"),
        ("X-Forwarded-For", "10.0.0.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Host", "evil.test"),
        ("X-Real-IP", "1.2.3.4"),
        ("x_real_ip", "9.9.9.9"),
    ]
    ctx = _ctx(sent, trusted=True)
    proxied = dict(
        forwarding.upstream_request_headers(
            ctx.headers, peer=PEER, trusted=TRUSTED, scheme="http", upstream_host="b", request_id="r", trace="t"
        )
    )
    got = _headers(version, ctx)
    assert got["x-forwarded-for"] == proxied["X-Forwarded-For"] == f"1.2.3.4, 10.0.0.9, 10.0.0.7, {PEER}"
    assert got["x-forwarded-proto"] == "https" and got["x-forwarded-port"] == "443"
    assert got["x-real-ip"] == "1.2.3.4"
    assert "x-forwarded-host" not in got and "x_real_ip" not in got


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_connection_named_headers_are_left_out_wherever_they_stand(version: str) -> None:
    sent = [
        ("Host", "api.example"),
        ("X-Secret", "s"),
        ("Cookie", "a=1"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Connection", "X-Secret, cookie, x-forwarded-for, Host"),
        ("X-Secret", "t"),
        ("X-Kept", "yes"),
    ]
    ctx = _ctx(sent, trusted=True)
    event = _shape(version).build(ctx, None)
    got = _headers(version, ctx)
    # Host stays (AWS events carry it); a named X-Forwarded-For is not counted, as upstream.
    assert got == {
        "host": "api.example",
        "x-kept": "yes",
        "x-forwarded-for": PEER,
        "x-forwarded-proto": "http",
        "x-forwarded-port": "8080",
    }
    assert "cookies" not in event


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_no_port_without_a_connection_and_no_bad_port_from_a_proxy(version: str) -> None:
    assert "x-forwarded-port" not in _headers(version, _ctx([("Host", "h")], sockname=None))
    sent = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Port", "\u00b2")]
    assert _headers(version, _ctx(sent, trusted=True))["x-forwarded-port"] == "8080"
