"""Random identifiers on the request path: the gateway's request ids and W3C trace/span ids.

Why not ``uuid.uuid4()`` and ``secrets.token_hex()``: each call is a ``getrandom()`` system call
plus object churn, and a proxied request needed three of them (about 8 µs of the request's CPU
under load, by profile). Here the bytes come from the same source, the kernel's CSPRNG
(``os.urandom``), but 2 KiB at a time, kept as hex text and sliced.

Why not a cheaper scheme (a per-process random prefix plus a counter): a request id is shown to
clients and lands in logs, and one id must not tell anyone the ids of other requests. Every id
here is fully random (a request id has the 122 random bits of a version-4 UUID), so nothing is
lost against ``uuid4``.

Single-threaded by design: the data plane runs on one event loop, which is the only caller. A
forked child starts with an empty buffer, so parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os

#: Random bytes drawn per refill; one system call serves about 64 requests.
_REFILL_BYTES = 2048
# RFC 9562 version-4 variant: the first hex digit of the fourth group is 8, 9, a or b.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}

_hex = ""
_pos = 0


def _take(digits: int) -> str:
    """``digits`` random hex digits, never handed out twice."""
    global _hex, _pos
    start = _pos
    end = start + digits
    if end > len(_hex):
        _hex = os.urandom(_REFILL_BYTES).hex()
        start, end = 0, digits
    _pos = end
    return _hex[start:end]


def request_id() -> str:
    """A random version-4 UUID in its usual text form (what ``str(uuid.uuid4())`` gives)."""
    h = _take(32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def trace_id() -> str:
    """A W3C trace id: 32 random hex digits."""
    return _take(32)


def span_id() -> str:
    """A W3C parent (span) id: 16 random hex digits."""
    return _take(16)


def _forget_after_fork() -> None:
    global _hex, _pos
    _hex, _pos = "", 0


os.register_at_fork(after_in_child=_forget_after_fork)
