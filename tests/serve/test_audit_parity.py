"""Listener parity (DESIGN.md §8: the hygiene rules "hold on every listener"), over raw sockets
against a real ``propylon serve``: its public listener on each ``--http-server`` and its internal
listener (aiohttp always), each case a deviation an audit found on one of them.

- an HTTP/1.0 keep-alive request whose backend answers without a length gets a close-delimited
  body (the connection closes), never an unframed body on a connection left open;
- a request answered before its body arrived (a refusal, a 404) leaves the connection usable:
  the rest of the body is read and dropped and the next request is answered;
- a client body that stalls on an HTTP_PROXY route is the client's 408 (and close), not a 504:
  the integration timeout counts from the moment the body has gone upstream in full;
- a proxied response has the backend's ``Server`` header or none (not aiohttp's);
- a WebSocket 101 and the @connections answers carry the upgrade's (the call's) ``x-request-id``;
- a valid request followed in one write by a malformed one gets its own answer first; bytes after
  a ``Connection: close`` request are ignored;
- a stray CRLF between keep-alive requests is ignored (RFC 9112 §2.2), no 408.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from tests.ports import free_port
from tests.serve.test_serve import Served, _wait_for
from tests.serve.test_slow_clients import _listening

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: shop, namespace: demo}
spec:
  models:
    Order: {type: object, required: [name]}
  routes:
    - routeKey: GET /mock
      integration: {type: MOCK, mock: {statusCode: 200, body: hello}}
    - routeKey: POST /orders
      requestValidation: {body: Order, requiredParameters: ["querystring.limit"]}
      integration: {type: MOCK, mock: {statusCode: 200, body: taken}}
    - routeKey: GET /chunked
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:BACKEND/chunked"}
    - routeKey: GET /unframed
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:BACKEND/unframed"}
    - routeKey: GET /named
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:BACKEND/named"}
    - routeKey: POST /upload
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:BACKEND/upload", timeoutMillis: 1000}
    - routeKey: POST /slow
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:BACKEND/slow", timeoutMillis: 1000}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: live, namespace: demo}
spec: {apiRef: shop, basePath: /live}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: chat, namespace: demo}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      integration: {type: HTTP, url: "http://127.0.0.1:BACKEND/connect"}
    - routeKey: "$default"
      integration: {type: HTTP, url: "http://127.0.0.1:BACKEND/default"}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: talk, namespace: demo}
spec: {apiRef: chat, basePath: /ws}
"""
STALL = 1.0  # --body-stall-timeout and --header-timeout
KEEPALIVE = 2.5  # --keepalive-timeout
WAIT = 6.0
BACKEND_WAIT = 3.0  # how long /slow takes to answer, past its 1 s integration timeout
LISTENERS = ["public", "internal"]


class RawBackend:
    """A loopback backend on raw sockets, so the framing of each answer is exactly as written.

    /chunked answers chunked, /unframed with no length and closes, neither with a Server header;
    /named says ``Server: backend/1``; /upload reads the body and answers its length; /slow reads
    the body and answers after BACKEND_WAIT; /connect (the WebSocket $connect) notes the
    connection id and answers 200. Every request's path and body length is recorded."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.received: list[tuple[str, int]] = []
        self.connection_ids: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, contextlib.suppress(OSError, ValueError):
            reader = sock.makefile("rb")
            while True:
                line = reader.readline()
                if not line:
                    return
                path = line.split(b" ")[1].decode()
                headers: dict[str, str] = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = self._body(reader, headers)
                self.received.append((path, len(body)))
                if not self._answer(sock, path, body, headers):
                    return

    @staticmethod
    def _body(reader: BinaryIO, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while size := int(reader.readline().split(b";")[0], 16):
                body += reader.read(size)
                reader.readline()
            reader.readline()
            return body
        return reader.read(int(headers.get("content-length", "0")))

    def _answer(self, sock: socket.socket, path: str, body: bytes, headers: dict[str, str]) -> bool:
        """Write the answer; False when the connection ends with it."""
        if path == "/chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            sock.sendall(b"5\r\nhello\r\n")
            time.sleep(0.05)  # the body comes after the head: the gateway streams it
            sock.sendall(b"0\r\n\r\n")
            return True
        if path == "/unframed":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            time.sleep(0.05)
            sock.sendall(b"hello")
            return False
        if path == "/named":
            sock.sendall(b"HTTP/1.1 200 OK\r\nServer: backend/1\r\nTransfer-Encoding: chunked\r\n\r\n")
            time.sleep(0.05)
            sock.sendall(b"5\r\nhello\r\n0\r\n\r\n")
            return True
        if path == "/slow":
            time.sleep(BACKEND_WAIT)
        if path == "/connect":
            self.connection_ids.append(headers.get("x-propylon-connection-id", ""))
        answer = b"%d" % len(body)
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )
        return True


@pytest.fixture(scope="module")
def backend() -> Iterator[RawBackend]:
    raw = RawBackend()
    yield raw
    raw.listener.close()


@pytest.fixture(scope="module", params=["httptools", "aiohttp"])
def ports(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: RawBackend
) -> Iterator[dict[str, int]]:
    """One ``serve`` with short slow-client limits; its public listener on the server named."""
    folder = tmp_path_factory.mktemp("parity")
    (folder / "manifests.yaml").write_text(MANIFESTS.replace("BACKEND", str(backend.port)))
    limits = ["--body-stall-timeout", f"{STALL}", "--header-timeout", f"{STALL}", "--keepalive-timeout", f"{KEEPALIVE}"]
    serve = Served(folder, folder, "--http-server", str(request.param), *limits)
    try:
        assert _wait_for(lambda: _listening(serve.internal), 30), f"serve did not start: {serve.stderr()}"
        yield {"public": serve.port, "internal": serve.internal}
        log = serve.stderr() + serve.stdout_path.read_text(errors="replace")
        assert "Unhandled exception" not in log, log[-4000:]
    finally:
        serve.stop()


def _read(sock: socket.socket, until: float, *, answers: int = 0) -> tuple[bytes, bool]:
    """Read until the server closes, ``answers`` whole responses came (0: no count), or ``until``
    (a monotonic time) passes: what came and whether the server closed."""
    received = b""
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return received, False
        if not chunk:
            return received, True
        received += chunk
        if answers and len(_responses(received)) >= answers:
            return received, False
    return received, False


def _responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (head, body) of each whole Content-Length-framed response in ``data``."""
    found = []
    while (end := data.find(b"\r\n\r\n")) >= 0:
        head = data[:end]
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if length is None:
            break
        body_end = end + 4 + int(length.group(1))
        if len(data) < body_end:
            break
        found.append((head, data[end + 4 : body_end]))
        data = data[body_end:]
    return found


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def _header(head: bytes, name: bytes) -> list[bytes]:
    return [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:] if line.lower().startswith(name + b":")]


# -- 1: HTTP/1.0 keep-alive, backend body without a length ----------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("path", ["/live/chunked", "/live/unframed"])
def test_http10_keep_alive_with_an_unframed_backend_body_is_close_delimited(
    ports: dict[str, int], listener: str, path: str
) -> None:
    with _connect(ports[listener]) as sock:
        sock.sendall(b"GET %s HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % path.encode())
        # Closed right after the body, not at keep-alive expiry (which would end it too).
        answer, closed = _read(sock, time.monotonic() + KEEPALIVE * 0.6)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n"), answer
    assert closed, "the body has no length: only the close can end it"
    assert body == b"hello"
    assert not _header(head, b"transfer-encoding") and not _header(head, b"content-length")
    assert _header(head, b"connection") in ([], [b"close"]), head


# -- 2: a request answered before its body arrived -------------------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("expect", [True, False])
def test_a_request_answered_before_its_body_keeps_the_connection(
    ports: dict[str, int], listener: str, expect: bool
) -> None:
    with _connect(ports[listener]) as sock:
        head = b"POST /live/nothere HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        sock.sendall(head + (b"Expect: 100-continue\r\n" if expect else b"") + b"\r\n")
        first, closed = _read(sock, time.monotonic() + WAIT, answers=1)
        assert first.startswith(b"HTTP/1.1 404 "), first
        assert not closed and _header(first, b"connection") != [b"close"], first
        sock.sendall(b"hello" + b"GET /live/mock HTTP/1.1\r\nHost: a\r\n\r\n")
        second, _ = _read(sock, time.monotonic() + WAIT, answers=1)
    assert second.startswith(b"HTTP/1.1 200 OK\r\n") and second.endswith(b"hello"), second


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_refusal_before_a_big_body_is_read_keeps_the_connection(ports: dict[str, int], listener: str) -> None:
    body = b"{" + b" " * (1024 * 1024) + b"}"
    head = b"POST /live/orders HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    with _connect(ports[listener]) as sock:
        sock.sendall(head % len(body) + body)  # no ?limit: refused before the body is needed
        first, _ = _read(sock, time.monotonic() + WAIT, answers=1)
        assert first.startswith(b"HTTP/1.1 400 "), first[:300]
        sock.sendall(b"GET /live/mock HTTP/1.1\r\nHost: a\r\n\r\n")
        second, _ = _read(sock, time.monotonic() + WAIT, answers=1)
    if _header(first, b"connection") == [b"close"]:
        return  # said so: the client knows not to reuse it
    assert second.startswith(b"HTTP/1.1 200 OK\r\n") and second.endswith(b"hello"), second


# -- 3: a stalled client body on an HTTP_PROXY route -----------------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_stalled_body_on_a_proxy_route_is_408_not_504(ports: dict[str, int], listener: str) -> None:
    head = b"POST /live/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    with _connect(ports[listener]) as sock:
        started = time.monotonic()
        sock.sendall(head + b"x" * 10)  # the integration timeout (1 s) would pass first if it ran now
        sock.sendall(b"x" * 10)
        answer, closed = _read(sock, time.monotonic() + WAIT)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert closed and STALL * 0.8 <= took < WAIT


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_slow_uploaded_body_within_the_stall_limit_reaches_the_backend(ports: dict[str, int], listener: str) -> None:
    """Uploading takes longer than the integration timeout (1 s) but never stalls for 1 s."""
    with _connect(ports[listener]) as sock:
        sock.sendall(b"POST /live/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
        for _ in range(6):
            time.sleep(STALL * 0.3)
            sock.sendall(b"x")
        answer, _ = _read(sock, time.monotonic() + WAIT, answers=1)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n6"), answer


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("streamed", [True, False])
def test_a_slow_backend_is_504_at_its_timeout_once_the_body_is_sent(
    ports: dict[str, int], listener: str, streamed: bool
) -> None:
    with _connect(ports[listener]) as sock:
        sock.sendall(
            b"POST /live/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n" + (b"" if streamed else b"abcd")
        )
        if streamed:
            time.sleep(STALL * 0.5)
            sock.sendall(b"abcd")
        sent = time.monotonic()
        answer, _ = _read(sock, time.monotonic() + WAIT, answers=1)
        took = time.monotonic() - sent
    assert answer.startswith(b"HTTP/1.1 504 "), answer
    assert b"INTEGRATION_TIMEOUT" in answer
    assert 0.8 <= took < BACKEND_WAIT, took


# -- 4: a proxied response's Server header is the backend's ----------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_proxied_response_has_the_backends_server_header_or_none(ports: dict[str, int], listener: str) -> None:
    with _connect(ports[listener]) as sock:
        sock.sendall(b"GET /live/chunked HTTP/1.1\r\nHost: a\r\n\r\nGET /live/named HTTP/1.1\r\nHost: a\r\n\r\n")
        answer, _ = _read(sock, time.monotonic() + 2.0)
    unnamed, named = answer.split(b"HTTP/1.1 ")[1:3]
    assert _header(b"x\r\n" + unnamed.partition(b"\r\n\r\n")[0], b"server") == []
    assert _header(b"x\r\n" + named.partition(b"\r\n\r\n")[0], b"server") == [b"backend/1"]
    with _connect(ports[listener]) as sock:  # the gateway's own answers still name it
        sock.sendall(b"GET /live/mock HTTP/1.1\r\nHost: a\r\n\r\n")
        own, _ = _read(sock, time.monotonic() + WAIT, answers=1)
    assert _header(own, b"server") == [b"propylon"], own


# -- 5: WebSocket 101 and @connections carry x-request-id ------------------------------------------


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("listener", LISTENERS)
def test_websocket_101_and_connections_answers_carry_a_request_id(
    ports: dict[str, int], listener: str, backend: RawBackend
) -> None:
    with _connect(ports[listener]) as ws:
        ws.sendall(UPGRADE)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += ws.recv(65536)
        head = answer.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert re.fullmatch(rb"[0-9a-f-]{8,}", b"".join(_header(head, b"x-request-id"))), head
        assert _header(head, b"server") == [b"propylon"], head
        connection_id = backend.connection_ids[-1]
        call = b"/ws/@connections/" + connection_id.encode()
        with _connect(ports["internal"]) as manage:
            manage.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % call)
            described, _ = _read(manage, time.monotonic() + WAIT, answers=1)
            manage.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" % call)
            posted, _ = _read(manage, time.monotonic() + WAIT, answers=1)
            # A method @connections does not answer is the section-3 404 (it was a bare 405).
            manage.sendall(b"PUT %s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" % call)
            put, _ = _read(manage, time.monotonic() + WAIT, answers=1)
            assert put.startswith(b"HTTP/1.1 404 "), put
            assert _header(put.partition(b"\r\n\r\n")[0], b"x-propylon-error-type") == [b"RESOURCE_NOT_FOUND"], put
            manage.sendall(b"DELETE %s HTTP/1.1\r\nHost: a\r\n\r\n" % call)
            deleted, _ = _read(manage, time.monotonic() + WAIT, answers=1)
    for answer, status in ((described, b"200"), (posted, b"200"), (deleted, b"204")):
        assert answer.startswith(b"HTTP/1.1 " + status), answer
        ids = _header(answer.partition(b"\r\n\r\n")[0], b"x-request-id")
        assert len(ids) == 1 and re.fullmatch(rb"[0-9a-f-]{8,}", ids[0]), answer
        assert _header(answer.partition(b"\r\n\r\n")[0], b"server") == [b"propylon"], answer


# -- 6: a malformed request after a valid one; bytes after Connection: close -------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_valid_request_before_a_malformed_one_gets_its_own_answer(ports: dict[str, int], listener: str) -> None:
    with _connect(ports[listener]) as sock:
        sock.sendall(
            b"GET /live/mock HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /live/mock HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        )
        answer, closed = _read(sock, time.monotonic() + WAIT)
    statuses = re.findall(rb"HTTP/1\.1 (\d+)", answer)
    assert statuses == [b"200", b"400"], answer
    assert closed


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("extra", [b"\r\n", b"GET /live/mock HTTP/1.1\r\nHost: a\r\n\r\n", b"\x00junk"])
def test_bytes_after_a_connection_close_request_are_ignored(ports: dict[str, int], listener: str, extra: bytes) -> None:
    with _connect(ports[listener]) as sock:
        sock.sendall(b"GET /live/mock HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + extra)
        answer, closed = _read(sock, time.monotonic() + WAIT)
    assert re.findall(rb"HTTP/1\.1 (\d+)", answer) == [b"200"], answer
    assert answer.endswith(b"hello") and closed


# -- 7: a stray CRLF between keep-alive requests ---------------------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_stray_crlf_between_requests_is_ignored(ports: dict[str, int], listener: str) -> None:
    with _connect(ports[listener]) as sock:
        sock.sendall(b"GET /live/mock HTTP/1.1\r\nHost: a\r\n\r\n")
        first, _ = _read(sock, time.monotonic() + WAIT, answers=1)
        assert first.endswith(b"hello"), first
        sock.sendall(b"\r\n")
        after, closed = _read(sock, time.monotonic() + KEEPALIVE + WAIT)
    assert after == b"" and closed, after  # closed at keep-alive expiry, without a 408
