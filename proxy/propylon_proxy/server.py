"""The HTTP/1.1 server layer: aiohttp's low-level ``web.Server`` with our error handling.

aiohttp parses requests; this module turns everything it rejects into section-3 JSON responses
(400/414/431) that close the connection, and adds what aiohttp has no knob for: a deadline for
the request head (slowloris -> 408). Routing and everything after it live in ``handling``.

A refusal is the same bytes on both public-listener servers (this one and ``fast_server``): an
``HTTP/1.1`` status line, the section-3 headers and body, ``Server``, ``Content-Length``,
``Date`` and ``Connection: close`` (tests/proxy/test_parser_refusals.py holds them to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import HttpVersion11, http_exceptions, web, web_protocol, web_server
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from propylon_proxy import gateway_responses, ids, settings

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
OnRejected = Callable[[int], None]  # told the status of every error answered at this layer

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
# aiohttp answers a request its parser refused as the stand-in message ``web_protocol.ERROR``,
# which says HTTP/1.0: the refusal went out as ``HTTP/1.0 400`` with no ``Connection: close``,
# where the httptools server (and every other answer to an HTTP/1.1 client) says HTTP/1.1.
# ``GatewayServer`` makes those requests from this copy instead; nothing else of it changes.
_PARSER_REFUSAL = web_protocol.ERROR._replace(version=HttpVersion11)


def rejection_bytes(error_type: str, on_rejected: OnRejected | None) -> bytes:
    """A whole section-3 response that ends the connection, for refusals made below a request
    (a slow head on either server, the parser's on ``fast_server``). Its headers are the ones,
    in the order, that aiohttp writes for ``handle_error``'s, so both servers answer alike."""
    rendered = gateway_responses.render(error_type, ids.request_id())
    if on_rejected is not None:
        on_rejected(rendered.status)
    lines = [f"HTTP/1.1 {rendered.status} {_REASONS.get(rendered.status, '')}"]
    lines.extend(f"{name}: {value}" for name, value in rendered.headers)
    lines += ["Server: propylon", f"Content-Length: {len(rendered.body)}"]
    lines += [f"Date: {email.utils.formatdate(usegmt=True)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rendered.body


def _error_type_for(exc: BaseException | None, listener: settings.ListenerSettings) -> str:
    if isinstance(exc, http_exceptions.LineTooLong):
        # The parser reports the limit it hit: the request line has its own, distinct limit.
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == listener.max_request_line_bytes:
            return gateway_responses.URI_TOO_LONG
        return gateway_responses.REQUEST_HEADERS_TOO_LARGE
    if isinstance(exc, http_exceptions.BadHttpMessage) and "Too many headers" in str(exc):
        return gateway_responses.REQUEST_HEADERS_TOO_LARGE
    return gateway_responses.BAD_REQUEST


class GatewayRequestHandler(web_protocol.RequestHandler):
    """One client connection."""

    def __init__(
        self,
        manager: web_server.Server,
        *,
        listener: settings.ListenerSettings,
        on_rejected: OnRejected | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._listener = listener
        self._on_rejected = on_rejected
        self._head_deadline: asyncio.TimerHandle | None = None
        self._last_payload: Any = None
        # The parser stands between two messages (known only for a bodyless message whose head
        # ended these bytes, or a fresh connection): a refused packet can then be parsed again.
        self._at_boundary = True

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        queued = len(self._messages)
        at_boundary = self._at_boundary and self._payload_parser is None and not self._upgraded
        super().data_received(data)
        if len(self._messages) > queued:
            message, payload = self._messages[-1]
            if isinstance(message, web_protocol._ErrInfo):
                if at_boundary:
                    self._answer_before_refusal(data)
                self._at_boundary = False
            else:
                self._at_boundary = payload is EMPTY_PAYLOAD and data.endswith(b"\r\n\r\n")
        elif data.strip(b"\r\n"):
            self._at_boundary = False
        if self._messages:
            self._last_payload = self._messages[-1][1]
        body_pending = self._last_payload is not None and not self._last_payload.is_eof()
        if self._request_count != before or self._request_in_progress or body_pending:
            # A head completed, or these bytes belong to a body (which has its own stall timeout).
            self._cancel_head_deadline()
        elif self._head_deadline is None and not self._force_close and data.strip(b"\r\n"):
            # Bytes of a request head arrived but the head is not complete: start its clock. A
            # stray CRLF between requests is not a head (RFC 9112 §2.2: ignored, as llhttp
            # does): the connection stays idle, so it ends at keep-alive expiry without a 408.
            self._head_deadline = self._loop.call_later(self._listener.header_timeout, self._head_timed_out)
            self._stop_idle_clock()

    def _answer_before_refusal(self, data: bytes) -> None:
        """The parser refused ``data``: the requests it holds whole before the bad bytes are
        answered first, then the 400 (as ``fast_server`` does), instead of the 400 alone.

        aiohttp's C parser drops the requests it parsed from a packet it then refuses, so the
        packet is parsed again by a fresh parser of the same limits, a line at a time, up to the
        refused bytes. Only when the packet began between two messages (``_at_boundary``), else
        the refusal stands alone as before. A request after one with ``Connection: close`` is
        refused by llhttp: that request's answer closes the connection, so it is never answered.
        ``_parser``, ``_messages``, ``_request_count`` and ``_ErrInfo`` are aiohttp's private
        names: tests/serve/test_audit_parity.py notices if they move."""
        fresh: Any = type(self._parser)
        parser = fresh(
            self,
            self._loop,
            self._read_bufsize,
            max_line_size=self._listener.max_request_line_bytes,
            max_field_size=self._listener.max_header_bytes,
            max_headers=self._listener.max_headers,
            payload_exception=web_protocol.RequestPayloadError,
            auto_decompress=False,
        )
        whole: list[Any] = []
        for line in data.splitlines(keepends=True):
            try:
                messages, upgraded, _ = parser.feed_data(line)
            except http_exceptions.HttpProcessingError:
                break
            if upgraded:
                return  # an upgrade is not answered here: the refusal stands alone
            for message, payload in messages:
                if payload is not EMPTY_PAYLOAD and not payload.is_eof():
                    break  # its body is what was refused: it never runs, nor anything after it
                whole.append((message, payload))
            else:
                continue
            break
        if whole:
            refusal = self._messages.pop()
            self._messages.extend(whole)
            self._messages.append(refusal)
            self._request_count += len(whole)

    def _stop_idle_clock(self) -> None:
        """A head has begun, so the connection is no longer idle: only the head deadline runs.

        aiohttp's keep-alive timer runs from the connection's start (or the last answer) and,
        when it fires before the head deadline (``--keepalive-timeout`` at or below
        ``--header-timeout``, or a head begun late in the idle time), closed the connection
        mid-head without a word instead of the 408 (``fast_server`` counts a connection in a
        head as busy). aiohttp arms the timer again after the answer. ``_keepalive_handle`` is
        aiohttp's private name: tests/serve/test_slow_clients.py notices if it moves."""
        handle = self._keepalive_handle
        if handle is not None:
            handle.cancel()
            self._keepalive_handle = None

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._request_in_progress or self.transport is None or self._messages:
            return
        self.transport.write(rejection_bytes(gateway_responses.REQUEST_TIMEOUT, self._on_rejected))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        if status == 400 or isinstance(exc, http_exceptions.HttpProcessingError):
            error_type = _error_type_for(exc, self._listener)
        elif status == 504:
            error_type = gateway_responses.INTEGRATION_TIMEOUT
        else:
            self.log_exception("Error handling request", exc_info=exc)
            error_type = gateway_responses.DEFAULT_5XX
        rendered = gateway_responses.render(error_type, ids.request_id())
        if self._on_rejected is not None:
            self._on_rejected(rendered.status)
        response = web.Response(
            status=rendered.status, body=rendered.body, headers=(*rendered.headers, ("Server", "propylon"))
        )
        response.force_close()
        return response


class GatewayServer(web_server.Server):
    """``web.Server`` whose connections are ``GatewayRequestHandler``s."""

    def __init__(
        self, handler: Handler, listener: settings.ListenerSettings, on_rejected: OnRejected | None = None
    ) -> None:
        super().__init__(
            handler,
            request_factory=self._make_gateway_request,
            keepalive_timeout=listener.keepalive_timeout,
            max_line_size=listener.max_request_line_bytes,
            # One field may use the whole header budget; the block total is checked in hygiene.
            max_field_size=listener.max_header_bytes,
            max_headers=listener.max_headers,
            auto_decompress=False,
            lingering_time=1.0,
        )
        self._listener = listener
        self._on_rejected = on_rejected

    def _make_gateway_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web_protocol.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        """aiohttp's own factory, but a parser refusal's stand-in request speaks HTTP/1.1, so
        ``handle_error``'s 400/414/431 says ``HTTP/1.1`` and ``Connection: close`` (the public
        ``request_factory`` hook: aiohttp itself is left as it is)."""
        if message is web_protocol.ERROR:
            message = _PARSER_REFUSAL
        return self._make_request(message, payload, protocol, writer, task)

    def __call__(self) -> GatewayRequestHandler:
        return GatewayRequestHandler(
            self, listener=self._listener, on_rejected=self._on_rejected, loop=self._loop, **self._kwargs
        )

    async def shutdown(self, timeout: float | None = None) -> None:
        """Drain within ``timeout`` (``--drain-seconds``), as ``fast_server`` does (DESIGN.md §8).

        aiohttp's own shutdown waits ``timeout`` for a running request, then ``timeout`` again
        after cancelling it (a relay does not stop on that cancel), so a 25 s drain lasted 50 s,
        past Kubernetes' 30 s grace period; and it held idle keep-alive connections open all that
        time, where a request sent on one got no answer. Idle connections are closed at once;
        running requests get ``timeout``, then their connections are cut. ``_request_in_progress``
        and ``_task_handler`` are aiohttp's private names: tests/proxy/test_drain.py notices if
        they move."""
        busy: list[web_protocol.RequestHandler] = []
        for handler in list(self.connections):
            if handler._request_in_progress:
                busy.append(handler)
            else:
                handler.force_close()
        if busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(handler.shutdown(timeout) for handler in busy))
        for handler in busy:
            task = handler._task_handler
            if task is not None and not task.done():
                task.cancel()
            handler.force_close()
        self._connections.clear()
