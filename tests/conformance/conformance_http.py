"""A raw-socket HTTP/1.1 client: the request goes out byte for byte as the case wrote it.

No client library sits in between, so nothing normalises the path (``..``, ``%2F``), adds or
reorders headers, or fixes the Host. The response is read with its own framing
(Content-Length, chunked, or until close) and kept as raw header pairs.
"""

from __future__ import annotations

import dataclasses
import socket

TIMEOUT = 15.0  # seconds for the whole exchange; a gateway that hangs fails the row, not the run


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    closed_after: bool | None = None  # with ``probe_close``: did the server close the connection?

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> bool:
        chunk = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of a line")
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of a body")
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def rest(self) -> bytes:
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data


def _head(reader: _Reader) -> tuple[int, str, list[tuple[str, str]]]:
    version, _, rest = reader.line().decode("latin-1").partition(" ")
    if not version.startswith("HTTP/1."):
        raise ConnectionError(f"not an HTTP/1.x status line: {version!r}")
    code, _, reason = rest.partition(" ")
    headers = []
    while line := reader.line():
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name, value.strip()))
    return int(code), reason, headers


def _body(reader: _Reader, method: str, status: int, headers: list[tuple[str, str]]) -> bytes:
    if method == "HEAD" or status in (204, 304):
        return b""
    fields = {name.lower(): value for name, value in headers}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        out = b""
        while size := int(reader.line().split(b";", 1)[0], 16):
            out += reader.exactly(size)
            reader.line()
        while reader.line():  # trailers
            pass
        return out
    if "content-length" in fields:
        return reader.exactly(int(fields["content-length"]))
    return reader.rest()


def exchange(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
    *,
    host: str = "127.0.0.1",
    probe_close: bool = False,
) -> Response:
    """Send one request on a fresh connection and read one response.

    ``target`` is written as latin-1, so a case can put any byte in a path (``"\\xff"``).
    ``Content-Length`` is added for a body, and ``Connection: close`` unless a header says
    otherwise (``keep-alive`` with ``probe_close``); nothing else is added: the caller gives
    the Host. ``probe_close`` then sends a second request on the same connection: a server
    that closed it cannot answer, one that kept it open does.
    """
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    names = {name.lower() for name, _ in headers}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if "connection" not in names:
        lines.append("Connection: keep-alive" if probe_close else "Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(raw)
        reader = _Reader(sock)
        status, reason, response_headers = _head(reader)
        while 100 <= status < 200:
            status, reason, response_headers = _head(reader)
        body_bytes = _body(reader, method, status, response_headers)
        closed_after = None
        if probe_close:
            closed_after = _closed(sock, reader)
        return Response(status, reason, tuple(response_headers), body_bytes, closed_after)


def _closed(sock: socket.socket, reader: _Reader) -> bool:
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        return not reader.rest()
    except (ConnectionError, TimeoutError):
        return True
