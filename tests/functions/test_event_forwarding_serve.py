"""Forwarding headers in FUNCTION and REQUEST-authorizer events, through `propylon serve`.

DESIGN.md section 8: client-sent Forwarded, X-Forwarded-* and X-Real-IP (and their ``_`` twins)
are dropped unless the peer is in --trusted-proxies, hop-by-hop headers and the headers named
in ``Connection`` never pass, and the gateway sets its own forwarding headers. An event is how a
function sees the request, so it follows the same rules: a handler (or Mangum, Powertools)
reading ``headers["x-forwarded-for"]`` sees the value a proxied backend would get, never one the
client made up. Events also carry ``X-Forwarded-Port``, as AWS's do.

The gateway (both HTTP servers, with and without --trusted-proxies), an echo function and an
authorizer run as real processes on loopback; a proxied route to an echo backend shows what
the same request looks like to an HTTP backend.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest

from tests import backends

SPOOFED = "6.6.6.6"
# Names that must never reach a function as the client sent them (lower case).
NEVER = {"x_forwarded_for", "x_real_ip", "x-forwarded-host", "x-secret", "keep-alive", "connection"}
# Client forwarding headers a trusted peer may pass on, as a proxied backend receives them.
TRUSTED_ONLY = {"x-real-ip", "forwarded"}


def _sent(connection: str) -> dict[str, str]:
    return {
        "Host": "fwd.example",
        "X-User": "alice",
        "X-Kept": "yes",
        "Cookie": "a=1; b=2",
        "X-Forwarded-For": SPOOFED,
        "X-Real-IP": SPOOFED,
        "Forwarded": f"for={SPOOFED}",
        "X_Forwarded_For": "7.7.7.7",
        "x_real_ip": "7.7.7.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Host": "evil.test",
        "X-Secret": "s",
        "Keep-Alive": "timeout=5",
        "Connection": connection,
    }


# "X-Secret": a Connection-named header; "X-Secret, X-Forwarded-For": a client trying to strip
# the gateway's own X-Forwarded-For through Connection (the reviewer's request).
CONNECTIONS = {"named": "X-Secret", "names-xff": "X-Secret, X-Forwarded-For"}


def _manifests(echo_fn: int, auth_fn: int, backend: int) -> str:
    def fn(version: str) -> str:
        return f'{{type: FUNCTION, url: "http://127.0.0.1:{echo_fn}", payloadFormatVersion: "{version}"}}'

    def auth(name: str, version: str) -> str:
        return (
            f"apiVersion: propylon.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: {name}, namespace: shop}}\n"
            f'spec:\n  type: REQUEST\n  identitySource: ["$request.header.X-User"]\n'
            f'  function: {{url: "http://127.0.0.1:{auth_fn}", payloadFormatVersion: "{version}", '
            "resultTtlSeconds: 0}\n---\n"
        )

    return (
        auth("auth1", "1.0")
        + auth("auth2", "2.0")
        + f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: fwd, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /proxied", integration: {{type: HTTP_PROXY, url: "http://127.0.0.1:{backend}/seen"}}}}
    - {{routeKey: "GET /v1", integration: {fn("1.0")}}}
    - {{routeKey: "GET /v2", integration: {fn("2.0")}}}
    - {{routeKey: "GET /auth1", authorizer: auth1, integration: {fn("1.0")}}}
    - {{routeKey: "GET /auth2", authorizer: auth2, integration: {fn("2.0")}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: fwd, basePath: /prod}}
"""
    )


class Functions:
    def __init__(self, folder: Path, backend: backends.Backend) -> None:
        self.folder, self.backend = folder, backend


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Functions]:
    tmp = tmp_path_factory.mktemp("event-forwarding")
    backend = backends.Backend(backends.echo_json)
    processes = [harness.function("plain.echo", tmp), harness.function("forwarding_events.authorizer", tmp)]
    try:
        for process in processes:
            process.wait()
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "fwd.yaml").write_text(_manifests(processes[0].port, processes[1].port, backend.port))
        yield Functions(folder, backend)
    finally:
        for process in processes:
            process.stop()
        backend.close()


class Gateway:
    def __init__(self, port: int, trusted: bool) -> None:
        self.port, self.trusted = port, trusted

    def get(self, path: str, headers: dict[str, str]) -> Any:
        status, _, body = harness.request(self.port, "GET", path, headers=headers)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(
    scope="module",
    params=[("httptools", False), ("aiohttp", False), ("httptools", True), ("aiohttp", True)],
    ids=["httptools", "aiohttp", "httptools-trusted", "aiohttp-trusted"],
)
def gateway(
    request: pytest.FixtureRequest, functions: Functions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    server, trusted = request.param
    tmp = tmp_path_factory.mktemp(f"gateway-{server}-{trusted}")
    port, internal, admin = harness.free_port(), harness.free_port(), harness.free_port()
    argv = [sys.executable, "-m", "propylon", "serve", "-f", str(functions.folder), "--port", str(port)]
    argv += ["--internal-port", str(internal), "--admin-port", str(admin), "--http-server", server]
    if trusted:
        argv += ["--trusted-proxies", "127.0.0.1/32"]
    process = harness.Process(argv, tmp / "serve.log", port)
    try:
        process.wait()
        yield Gateway(port, trusted)
    finally:
        process.stop()


def _proxied(gateway: Gateway, sent: dict[str, str]) -> dict[str, str]:
    """What an HTTP backend receives for the same request (names lower-cased)."""
    seen = gateway.get("/prod/proxied", sent)
    return {name.lower(): value for name, value in seen["headers"].items()}


def _expected(gateway: Gateway, proxied: dict[str, str]) -> dict[str, str]:
    """The forwarding headers an event carries: the proxied request's, plus X-Forwarded-Port
    (the listener's port, or a trusted proxy's)."""
    port = proxied.get("x-forwarded-port", str(gateway.port))
    return {
        "x-forwarded-for": proxied["x-forwarded-for"],
        "x-forwarded-proto": proxied["x-forwarded-proto"],
        "x-forwarded-port": port,
    }


def _check(gateway: Gateway, headers: dict[str, str], proxied: dict[str, str]) -> None:
    lowered: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), []).append(value)
    for name, value in _expected(gateway, proxied).items():
        assert lowered.get(name) == [value], (name, headers)
    assert not NEVER & set(lowered), headers
    assert TRUSTED_ONLY & set(lowered) == TRUSTED_ONLY & set(proxied), headers
    if not gateway.trusted:
        assert not [v for values in lowered.values() for v in values if SPOOFED in v], headers
    assert lowered["host"] == ["fwd.example"]  # the API's Host, as AWS events carry it
    assert lowered["x-kept"] == ["yes"]
    assert len(lowered["traceparent"]) == 1


def _sanity(gateway: Gateway, connection: str, proxied: dict[str, str]) -> None:
    """The proxied request itself follows section 8 (what the events are compared with)."""
    if not gateway.trusted:
        assert (proxied["x-forwarded-for"], proxied["x-forwarded-proto"]) == ("127.0.0.1", "http")
    elif connection == "named":
        assert (proxied["x-forwarded-for"], proxied["x-forwarded-proto"]) == (f"{SPOOFED}, 127.0.0.1", "https")
    else:  # Connection named X-Forwarded-For: the client's hops are gone, the gateway's value stays
        assert (proxied["x-forwarded-for"], proxied["x-forwarded-proto"]) == ("127.0.0.1", "https")


@pytest.mark.parametrize("connection", list(CONNECTIONS), ids=list(CONNECTIONS))
def test_payload_1_event_has_the_gateways_forwarding_headers(gateway: Gateway, connection: str) -> None:
    sent = _sent(CONNECTIONS[connection])
    proxied = _proxied(gateway, sent)
    _sanity(gateway, connection, proxied)
    event = gateway.get("/prod/v1", sent)["event"]
    _check(gateway, event["headers"], proxied)
    assert event["multiValueHeaders"] == {name: [value] for name, value in event["headers"].items()}
    assert event["headers"]["X-Forwarded-For"] == proxied["x-forwarded-for"]  # AWS's spelling in 1.0


@pytest.mark.parametrize("connection", list(CONNECTIONS), ids=list(CONNECTIONS))
def test_payload_2_event_has_the_gateways_forwarding_headers(gateway: Gateway, connection: str) -> None:
    sent = _sent(CONNECTIONS[connection])
    proxied = _proxied(gateway, sent)
    event = gateway.get("/prod/v2", sent)["event"]
    _check(gateway, event["headers"], proxied)
    assert all(name == name.lower() for name in event["headers"])
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]


@pytest.mark.parametrize("connection", list(CONNECTIONS), ids=list(CONNECTIONS))
def test_request_authorizer_events_have_the_gateways_forwarding_headers(gateway: Gateway, connection: str) -> None:
    sent = _sent(CONNECTIONS[connection])
    proxied = _proxied(gateway, sent)
    context = gateway.get("/prod/auth1", sent)["event"]["requestContext"]["authorizer"]
    headers, multi = json.loads(context["headers"]), json.loads(context["multiValueHeaders"])
    _check(gateway, headers, proxied)
    assert multi == {name: [value] for name, value in headers.items()}
    context = gateway.get("/prod/auth2", sent)["event"]["requestContext"]["authorizer"]["lambda"]
    headers = json.loads(context["headers"])
    _check(gateway, headers, proxied)
    assert json.loads(context["cookies"]) == ["a=1", "b=2"] and "cookie" not in headers


# A trusted proxy's headers that leave the client's address as the peer: no X-Forwarded-For at
# all, or one whose every hop is trusted too. The peer is trusted all the same, so its scheme,
# port and hops count, in the event as in the proxied request.
TRUSTED_SHAPES = {
    "proto-without-for": {"Host": "fwd.example", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443"},
    "for-all-trusted": {"Host": "fwd.example", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"},
}


@pytest.mark.parametrize("shape", list(TRUSTED_SHAPES), ids=list(TRUSTED_SHAPES))
@pytest.mark.parametrize("path", ["/prod/v1", "/prod/v2"])
def test_a_trusted_peers_headers_count_when_the_source_is_the_peer(gateway: Gateway, shape: str, path: str) -> None:
    sent = TRUSTED_SHAPES[shape]
    proxied = _proxied(gateway, sent)
    headers = {name.lower(): value for name, value in gateway.get(path, sent)["event"]["headers"].items()}
    assert {name: headers.get(name) for name in _expected(gateway, proxied)} == _expected(gateway, proxied)
    if gateway.trusted:
        assert proxied["x-forwarded-proto"] == "https"
        if shape == "for-all-trusted":
            assert proxied["x-forwarded-for"] == "127.0.0.1, 127.0.0.1"
        else:
            assert headers["x-forwarded-port"] == "8443"
    else:
        assert (proxied["x-forwarded-proto"], headers["x-forwarded-port"]) == ("http", str(gateway.port))
