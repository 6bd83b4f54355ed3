"""Request hygiene: the checks every request passes before any route sees it (DESIGN.md §8).

Pure functions over what the client sent (the raw request target and the raw header pairs),
so they can be unit-tested without a server. Nothing here normalises a path: a path is split
on ``/`` first and each segment is percent-decoded on its own, so ``%2F`` stays data and the
upstream path can be rebuilt from exactly what was matched.
"""

from __future__ import annotations

import re
import string
from typing import NamedTuple

from propylon_proxy import gateway_responses


class Rejected(Exception):
    """The request must be answered with ``error_type`` (a section-3 type) and never forwarded."""

    def __init__(self, error_type: str, why: str) -> None:
        super().__init__(why)
        self.error_type = error_type


class Target(NamedTuple):
    """A checked origin-form request target (one per request: a NamedTuple is built in a third
    of a frozen dataclass's time, and is as immutable)."""

    raw_path: str  # as sent, without the query: "/prod/a%2Fb"
    query: str  # as sent, without "?"; "" when absent
    raw_segments: tuple[str, ...]  # "/a/b/" -> ("a", "b", ""); "/" -> ()
    segments: tuple[str, ...]  # each raw segment percent-decoded on its own


_HEX = frozenset(string.hexdigits)
# Characters that may stay literal when a decoded value is written back as one path segment.
_SEGMENT_SAFE = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@")
# A value made only of these needs no escaping: the usual case, answered by one regex match.
_ALL_SEGMENT_SAFE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]*")
# Not allowed anywhere in a request target: controls, space, DEL and a fragment.
_BAD_TARGET_CHAR = re.compile(r"[\x00-\x20\x7f#]")


def decode_segment(raw: str) -> str:
    """Percent-decode one segment; malformed escapes are rejected rather than passed through.

    Bytes that are not UTF-8 survive as surrogates so ``encode_segment`` gives them back.
    """
    if "%" not in raw:
        return raw
    out = bytearray()
    i = 0
    encoded = raw.encode("utf-8", "surrogateescape")
    while i < len(encoded):
        byte = encoded[i]
        if byte == 0x25:  # "%"
            pair = encoded[i + 1 : i + 3].decode("latin-1")
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise Rejected(gateway_responses.BAD_REQUEST, "malformed percent-escape")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def encode_segment(value: str) -> str:
    """Write a decoded value back as exactly one segment (``/`` and ``%`` always escaped)."""
    if _ALL_SEGMENT_SAFE.fullmatch(value):
        return value
    parts = []
    for byte in value.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        parts.append(char if char in _SEGMENT_SAFE else f"%{byte:02X}")
    return "".join(parts)


_DOTS = (".", "..")


def _check_segment(decoded: str) -> None:
    # A backend that decodes "%2F" before normalising sees "..%2F..%2Fadmin" as "../../admin":
    # every part of the decoded value split on "/" must be free of dot segments (issue 8, item 3).
    for part in decoded.split("/") if "/" in decoded else (decoded,):
        if part in _DOTS or part.split(";", 1)[0] in _DOTS:
            raise Rejected(gateway_responses.BAD_REQUEST, "dot segment")
    if "\x00" in decoded:
        raise Rejected(gateway_responses.BAD_REQUEST, "NUL in path")
    if "\\" in decoded:
        raise Rejected(gateway_responses.BAD_REQUEST, "backslash in path")


def split_target(target: str, *, max_bytes: int = 8192) -> Target:
    """Check and split a request target as it came off the wire."""
    if not target.isascii():
        size = len(target.encode("utf-8", "surrogateescape"))
        if size > max_bytes:
            raise Rejected(gateway_responses.URI_TOO_LONG, "request target too long")
        # RFC 3986 allows only ASCII; raw UTF-8 (or Latin-1) bytes are read differently by
        # different backends, so they are refused rather than guessed at (issue 8, item 3).
        raise Rejected(gateway_responses.BAD_REQUEST, "raw non-ASCII byte in request target")
    if len(target) > max_bytes:
        raise Rejected(gateway_responses.URI_TOO_LONG, "request target too long")
    if target[:1] != "/":
        raise Rejected(gateway_responses.BAD_REQUEST, "request target is not origin-form")
    # _BAD_TARGET_CHAR in three C calls: for ASCII text, isprintable() is False exactly for
    # the controls and DEL (issue 15, perf-server2: split_target 1.26 -> see the commit).
    if not target.isprintable() or " " in target or "#" in target:
        raise Rejected(gateway_responses.BAD_REQUEST, "invalid character in request target")
    raw_path, _, query = target.partition("?")
    rest = raw_path[1:]
    raw_segments = tuple(rest.split("/")) if rest else ()
    if "%" in raw_path:
        segments = tuple([decode_segment(raw) for raw in raw_segments])
    elif "." not in raw_path and "\\" not in raw_path:
        # Without an escape, each segment is its own decoded form, and without a dot or a
        # backslash no segment can fail (NUL was refused above): the usual request.
        return Target(raw_path, query, raw_segments, raw_segments)
    else:
        segments = raw_segments
    for decoded in segments:
        _check_segment(decoded)
    return Target(raw_path, query, raw_segments, segments)


SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1)})


def check_version(version: tuple[int, int]) -> None:
    """Only HTTP/1.0 and HTTP/1.1 are spoken here; ``HTTP/2.0`` in HTTP/1 syntax is malformed."""
    if version not in SUPPORTED_VERSIONS:
        raise Rejected(gateway_responses.BAD_REQUEST, "unsupported HTTP version")


_SINGLE = (b"host", b"authorization", b"x-api-key")
# CR, LF and NUL are refused in any header value. Deleted with ``bytes.translate`` over all the
# values joined, not looked for with ``re.search(rb"[\r\n\x00]")``: the test alone 3.0 -> 0.9 us
# with an 800-byte bearer token, check_headers 3.3 -> 1.6 us for Host + Authorization and the
# same 0.6-0.7 us for a Host alone (timeit, issue 15, 2026-12-04).
_FORBIDDEN_IN_VALUE = b"\r\n\x00"
# The names the rules below count. Only a name of one of their lengths is lower-cased: the usual
# request's other headers (Accept, User-Agent, ...) cost one ``len`` each (issue 15, perf-shell).
_WATCHED = frozenset({*_SINGLE, b"content-length", b"transfer-encoding"})
_WATCHED_LENGTHS = frozenset(len(name) for name in _WATCHED)
# RFC 9110's Host: uri-host [":" port], the port digits only. The cache keys the Host with its
# port dropped while X-Forwarded-Host carries all of it, so a "port" such as ":@evil.test" would
# be an unkeyed input that reaches the backend (a link built from it goes to evil.test).
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.%~_-]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
# Hosts already found valid: a gateway sees a handful, and the lookup costs a tenth of the match
# (check_headers for a Host alone 0.61 us before the rule, 1.00 with the match each time).
_VALID_HOSTS: set[bytes] = set()
_VALID_HOSTS_MAX = 1024


def check_headers(
    raw_headers: tuple[tuple[bytes, bytes], ...],
    *,
    http11: bool,
    max_header_bytes: int = 16384,
    max_headers: int = 100,
) -> None:
    """Header rules from section 8 that aiohttp's parsers do not (all) enforce themselves."""
    if len(raw_headers) > max_headers:
        raise Rejected(gateway_responses.REQUEST_HEADERS_TOO_LARGE, "too many headers")
    size = 0
    seen: list[bytes] = []  # the watched names, lower-cased, once per header that has one
    host = b""
    for name, value in raw_headers:
        size += len(name) + len(value) + 4
        if len(name) in _WATCHED_LENGTHS:
            lower = name.lower()
            if lower in _WATCHED:
                seen.append(lower)
                if lower == b"host":
                    host = value
    if size > max_header_bytes:
        raise Rejected(gateway_responses.REQUEST_HEADERS_TOO_LARGE, "header block too large")
    values = b" ".join([value for _, value in raw_headers])  # one pass, not one a value
    if len(values.translate(None, _FORBIDDEN_IN_VALUE)) != len(values):
        raise Rejected(gateway_responses.BAD_REQUEST, "control character in a header value")
    if host not in _VALID_HOSTS:
        if _HOST.fullmatch(host.rstrip(b" \t")) is None:  # OWS is not part of a value (httptools keeps it)
            raise Rejected(gateway_responses.BAD_REQUEST, "invalid Host")
        if len(host) <= 255:  # a DNS name's bound: no client can make the memo hold megabytes
            if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
                _VALID_HOSTS.clear()  # many distinct hosts: start again rather than grow
            _VALID_HOSTS.add(host)
    if seen == [b"host"]:
        return  # the usual request: one Host, no body framing, no credentials
    for name in _SINGLE:
        if seen.count(name) > 1:
            raise Rejected(gateway_responses.BAD_REQUEST, f"repeated {name.decode()} header")
    if http11 and b"host" not in seen:
        raise Rejected(gateway_responses.BAD_REQUEST, "missing Host")
    # Framing: aiohttp rejects most of these itself; checking again costs nothing and keeps
    # the guarantee independent of which parser (C or pure Python) is in use.
    lengths = seen.count(b"content-length")
    if lengths > 1:
        raise Rejected(gateway_responses.BAD_REQUEST, "repeated Content-Length")
    if b"transfer-encoding" in seen:
        if lengths:
            raise Rejected(gateway_responses.BAD_REQUEST, "Content-Length with Transfer-Encoding")
        codings = [
            v.strip().lower() for n, v in raw_headers if n.lower() == b"transfer-encoding" for v in v.split(b",")
        ]
        if codings != [b"chunked"]:
            raise Rejected(gateway_responses.BAD_REQUEST, "unsupported transfer coding")
    if lengths:
        for name, value in raw_headers:
            if name.lower() == b"content-length" and not value.strip().isdigit():
                raise Rejected(gateway_responses.BAD_REQUEST, "invalid Content-Length")


def declared_length(raw_headers: tuple[tuple[bytes, bytes], ...]) -> int | None:
    for name, value in raw_headers:
        if len(name) == 14 and name.lower() == b"content-length":
            return int(value.strip())
    return None


def check_declared_length(raw_headers: tuple[tuple[bytes, bytes], ...], limit: int) -> None:
    length = declared_length(raw_headers)
    if length is not None and length > limit:
        raise Rejected(gateway_responses.REQUEST_TOO_LARGE, "declared body too large")
