"""What a step or an integration hands back: a reply to send, or a refusal to render.

A ``Reply`` is a response not yet sent: status, headers and either a body the gateway holds
whole (MOCK, gateway responses, a cache hit) or a body still streaming from a backend. ``after``
hooks may change its status and headers, or take the streamed body whole, before the
dispatcher writes it. A ``Refusal`` is a section-3 gateway-response type plus the extra headers
it needs (``Retry-After``); the chain renders it with the stage's overrides.

Plain data; nothing here writes to a socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Protocol


class BodyStream(Protocol):
    """A response body still arriving (``upstream.UpstreamResponse`` is one)."""

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def body_ready(self) -> bool:
        """True when the first chunk (or the end) is already here; False is always safe."""
        ...

    async def release(self) -> None:
        """Give the connection back if the body was read whole, else close it. Called once."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """A whole reply's header lines rendered once as the httptools writer writes them
    (``fast_responding.prepare``), for a reply sent many times as it is (a cache entry).

    Only a hint: the writer uses ``lines`` while the reply's headers still equal ``headers``
    (an ``after`` hook that adds or changes one makes it render them afresh), and the aiohttp
    writer ignores it.
    """

    headers: list[tuple[str, str]]  # the headers ``lines`` render
    lines: bytes  # b"Name: value\r\n" each, without the framing headers and x-request-id
    seen: tuple[bool, bool, bool, bool]  # Content-Type, Date, Server, Connection among them


@dataclasses.dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]  # as the client will see them, x-request-id excepted
    body: bytes = b""  # the whole body, when ``stream`` is None
    stream: BodyStream | None = None  # a body still to come (proxied responses)
    reason: str | None = None  # the backend's reason phrase, when it had one
    # Set on responses the gateway made itself from the section-3 table.
    error_type: str | None = None
    close: bool = False  # close the connection after this response (408, 413, ...)
    prepared: Prepared | None = None  # its header lines rendered beforehand (a cache hit's)

    def header(self, name: str) -> str | None:
        """The first value of a header, compared case-insensitively."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Stop the request with a section-3 response type (``UNAUTHORIZED``, ``THROTTLED``, ...)."""

    error_type: str
    headers: Sequence[tuple[str, str]] = ()  # the gateway's own; an override's same-named ones win
    message: str | None = None  # replaces the type's message (BAD_REQUEST_PARAMETERS' names)


def refuse(error_type: str, *headers: tuple[str, str], message: str | None = None) -> Refusal:
    return Refusal(error_type=error_type, headers=headers, message=message)
