"""The upstream client interface: how the proxy talks to backends.

Kept small on purpose so bench/ can compare implementations (aiohttp's ClientSession against a
pooled client on asyncio protocols + httptools) without touching the request pipeline. The
pipeline only ever sees ``Upstream``, ``UpstreamRequest``, ``UpstreamResponse`` and the three
exceptions below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol


class UpstreamError(Exception):
    """Base class: the backend could not give a usable response."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made (refused, unreachable, DNS). Nothing of the request was sent,
    so an idempotent request may be retried once."""


class UpstreamStaleConnection(UpstreamConnectError):
    """A kept-alive connection the backend had closed while it sat idle (closed before any byte
    of the response). Retryable as a connect failure, but the backend is not known to be down:
    it answered on that connection before, so it is neither marked failed nor avoided on the
    retry (a one-endpoint Service would otherwise have no endpoint left to retry on)."""


class UpstreamTimeout(UpstreamError):
    """The integration timeout passed before the response head arrived, counted from the end of
    the request body, or the backend took none of the body for that long (-> 504)."""


class UpstreamProtocolError(UpstreamError):
    """The backend answered with something that is not valid HTTP/1.1, or hung up mid-response (-> 502)."""


class UpstreamRequestError(UpstreamError, ValueError):
    """The request itself cannot be written as HTTP/1.1 (CR/LF in a header, a space in the
    target); nothing was sent (-> 502). The pipeline should never build one: this is the last
    line of defence against header injection, not a validation step."""


def unrelayable_head(status: int, transfer_codings: list[str] | None) -> str | None:
    """Why a final response head cannot be relayed (an ``UpstreamProtocolError``'s message), or
    None. Both clients ask, so both answer such a backend with the same 502.

    - A status outside 100..599 is none that HTTP defines (RFC 9110 section 15); relayed, every
      client and proxy in front reads it its own way.
    - ``transfer_codings`` (the response's Transfer-Encoding values, None when it has none) other
      than ``chunked`` alone: the gateway re-frames what it relays, so the bytes of another
      coding (``gzip``, ``gzip, chunked``) would reach the client as if they were the body, and
      a body without chunked last is read until close (RFC 9112 section 6.3), cut wherever the
      connection drops. nginx refuses it too ("unknown Transfer-Encoding", 502).
    """
    if not 100 <= status <= 599:
        return f"upstream status {status} is outside 100..599"
    if transfer_codings is not None and transfer_codings != ["chunked"]:
        return "upstream response has a transfer coding other than chunked"
    return None


def transfer_codings(headers: list[tuple[str, str]]) -> list[str] | None:
    """The Transfer-Encoding values of ``headers`` in order, lower-cased (None: no such header)."""
    codings: list[str] | None = None
    for name, value in headers:
        if len(name) == 17 and name.lower() == "transfer-encoding":
            codings = codings or []
            codings.extend(part.strip().lower() for part in value.split(",") if part.strip())
    return codings


@dataclasses.dataclass(slots=True, kw_only=True)
class UpstreamRequest:
    method: str
    scheme: str  # "http" (https later)
    host: str
    port: int
    target: str  # origin-form request target, already encoded: "/v1/users/a%2Fb?x=1"
    headers: list[tuple[str, str]]  # final headers, Host included; hop-by-hop already removed
    body: AsyncIterable[bytes] | bytes | None = None  # streamed when iterable
    # Seconds until the response head must have arrived, counted from when the request (a streamed
    # body in full) has been sent: a client slow to send its body is its own stall timeout (408).
    timeout: float = 29.0


class UpstreamResponse(Protocol):
    status: int
    reason: str
    headers: list[tuple[str, str]]  # as received, in order, duplicates kept

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, decoded from its transfer coding (never content-decoded), as it arrives."""
        ...

    def body_ready(self) -> bool:
        """True when ``iter_chunks()`` would give its first chunk (or end) without waiting for
        the backend. The pipeline then sends the response head together with that chunk;
        ``False`` is always a safe answer (the head goes out on its own, at once)."""
        ...

    async def release(self) -> None:
        """Return the connection to the pool if the body was read fully, else close it."""
        ...


class Upstream(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def close(self) -> None: ...
