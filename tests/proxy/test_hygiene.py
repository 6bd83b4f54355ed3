"""Request hygiene as pure functions; the socket-level tests are in test_framing/test_paths."""

from __future__ import annotations

import json

import pytest

from propylon_config import model
from propylon_proxy import forwarding, gateway_responses, hygiene


def test_split_keeps_encoded_slashes_and_empty_segments():
    target = hygiene.split_target("/a%2Fb//c/?q=%2F")
    assert target.raw_segments == ("a%2Fb", "", "c", "")
    assert target.segments == ("a/b", "", "c", "")
    assert target.query == "q=%2F"
    assert hygiene.split_target("/").segments == ()


@pytest.mark.parametrize("value", ["a/b", "100%", "ü", "a b", "x;y=z", "\udcff"])
def test_encode_decode_round_trip(value):
    encoded = hygiene.encode_segment(value)
    assert "/" not in encoded
    assert hygiene.decode_segment(encoded) == value


@pytest.mark.parametrize(
    ("target", "error_type"),
    [
        ("http://h/x", "BAD_REQUEST"),
        ("x", "BAD_REQUEST"),
        ("/a/%2e", "BAD_REQUEST"),
        ("/a/..;p", "BAD_REQUEST"),
        ("/a%00", "BAD_REQUEST"),
        ("/a%5c", "BAD_REQUEST"),
        ("/a%", "BAD_REQUEST"),
        ("/a%g0", "BAD_REQUEST"),
        ("/a#frag", "BAD_REQUEST"),
        ("/" + "a" * 9000, "URI_TOO_LONG"),
    ],
)
def test_rejected_targets(target, error_type):
    with pytest.raises(hygiene.Rejected) as caught:
        hygiene.split_target(target)
    assert caught.value.error_type == error_type


@pytest.mark.parametrize(
    ("headers", "http11", "error_type"),
    [
        (((b"Host", b"a"), (b"host", b"b")), True, "BAD_REQUEST"),
        (((b"Host", b"a"), (b"X-API-Key", b"1"), (b"x-api-key", b"2")), True, "BAD_REQUEST"),
        (((b"X", b"y"),), True, "BAD_REQUEST"),
        (((b"Host", b"a"), (b"X", b"a\nb")), True, "BAD_REQUEST"),
        (((b"Host", b"a"), (b"Content-Length", b"1"), (b"Transfer-Encoding", b"chunked")), True, "BAD_REQUEST"),
        (((b"Host", b"a"), (b"Transfer-Encoding", b"identity")), True, "BAD_REQUEST"),
        (((b"Host", b"a"), (b"Content-Length", b"+1")), True, "BAD_REQUEST"),
        (tuple((b"X-%d" % i, b"v") for i in range(101)), False, "REQUEST_HEADERS_TOO_LARGE"),
        (((b"Host", b"a"), (b"X", b"v" * 16400)), True, "REQUEST_HEADERS_TOO_LARGE"),
    ],
)
def test_rejected_headers(headers, http11, error_type):
    with pytest.raises(hygiene.Rejected) as caught:
        hygiene.check_headers(headers, http11=http11)
    assert caught.value.error_type == error_type


def test_accepted_headers():
    hygiene.check_headers(((b"Host", b"a"), (b"Transfer-Encoding", b"chunked")), http11=True)
    hygiene.check_headers(((b"X", b"a"),), http11=False)  # HTTP/1.0 may omit Host


def test_connection_cannot_remove_gateway_headers():
    headers = forwarding.upstream_request_headers(
        [("Host", "h"), ("Connection", "X-Forwarded-For, X-Request-Id, traceparent"), ("X-A", "1")],
        peer="10.0.0.1",
        trusted=(),
        scheme="http",
        upstream_host="backend:80",
        request_id="rid",
    )
    names = [n.lower() for n, _ in headers]
    assert {"x-forwarded-for", "x-request-id", "traceparent", "x-forwarded-proto", "host"} <= set(names)
    assert "connection" not in names


def test_source_ip_is_last_untrusted_hop():
    trusted = (forwarding.ipaddress.ip_network("10.0.0.0/8"),)
    headers = [("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 10.0.0.5")]
    assert forwarding.source_ip("10.0.0.9", headers, trusted) == "2.2.2.2"
    assert forwarding.source_ip("8.8.8.8", headers, trusted) == "8.8.8.8"


def test_stage_overrides_and_default_4xx():
    overrides = {
        "THROTTLED": model.GatewayResponse(status_code=429, headers=(("Retry-After", "1"),), body='{"message":"slow"}'),
        "DEFAULT_4XX": model.GatewayResponse(status_code=400, body='{"message":"client problem"}'),
    }
    throttled = gateway_responses.render("THROTTLED", "r1", overrides)
    assert (throttled.status, throttled.body) == (429, b'{"message":"slow"}')
    assert ("Retry-After", "1") in throttled.headers and ("x-request-id", "r1") in throttled.headers
    not_found = gateway_responses.render("RESOURCE_NOT_FOUND", "r2", overrides)
    assert (not_found.status, not_found.body) == (404, b'{"message":"client problem"}')
    failure = gateway_responses.render("INTEGRATION_FAILURE", "r3", overrides)
    assert (failure.status, failure.body) == (502, b'{"message": "Internal server error"}')


def test_override_content_type_is_not_doubled_and_gateway_headers_cannot_be_forged():
    overrides = {
        "RESOURCE_NOT_FOUND": model.GatewayResponse(
            status_code=404,
            headers=(("Content-Type", "text/plain"), ("x-request-id", "forged"), ("X-Propylon-Error-Type", "NOPE")),
            body="nothing here",
        )
    }
    rendered = gateway_responses.render("RESOURCE_NOT_FOUND", "r9", overrides)
    names = [name.lower() for name, _ in rendered.headers]
    assert names.count("content-type") == 1 and ("Content-Type", "text/plain") in rendered.headers
    assert ("x-request-id", "r9") in rendered.headers and names.count("x-request-id") == 1
    assert ("x-propylon-error-type", "RESOURCE_NOT_FOUND") in rendered.headers
    assert names.count("x-propylon-error-type") == 1


def test_aws_template_variables_are_filled_in_override_bodies():
    overrides = {
        "DEFAULT_4XX": model.GatewayResponse(
            status_code=400,
            body='{"message":$context.error.messageString,"type":"$context.error.responseType","id":"$context.requestId"}',
        )
    }
    rendered = gateway_responses.render(
        "BAD_REQUEST_PARAMETERS", "r7", overrides, message='Missing required request parameters: [limit, "x"]'
    )
    assert json.loads(rendered.body) == {
        "message": 'Missing required request parameters: [limit, "x"]',
        "type": "BAD_REQUEST_PARAMETERS",
        "id": "r7",
    }
    assert gateway_responses.render("THROTTLED", "r8").body == b'{"message": "Too Many Requests"}'


@pytest.mark.parametrize("target", ["/a/../b", "/a/./b", "/..", "/a/..;x/b", "/a\\b", "/a/b\\"])
def test_unescaped_dot_segments_and_backslashes_are_rejected(target):
    with pytest.raises(hygiene.Rejected) as caught:
        hygiene.split_target(target)
    assert caught.value.error_type == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("target", "segments"),
    [
        ("/shop/items/42", ("shop", "items", "42")),
        ("/a.b/c..d/.e", ("a.b", "c..d", ".e")),  # dots inside a segment are data
        ("/a//b/", ("a", "", "b", "")),
        ("/a%41b/c", ("aAb", "c")),
    ],
)
def test_segments_decode_the_same_with_or_without_escapes(target, segments):
    assert hygiene.split_target(target).segments == segments


def test_override_cannot_reframe_the_body():
    overrides = {
        "RESOURCE_NOT_FOUND": model.GatewayResponse(
            status_code=404,
            headers=(("Transfer-Encoding", "chunked"), ("Connection", "keep-alive"), ("X-Kept", "yes")),
            body='{"message":"gone fishing"}',
        )
    }
    rendered = gateway_responses.render("RESOURCE_NOT_FOUND", "r1", overrides)
    names = [name.lower() for name, _ in rendered.headers]
    assert "transfer-encoding" not in names and "connection" not in names
    assert ("X-Kept", "yes") in rendered.headers
