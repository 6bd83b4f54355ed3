"""Invoking a function over the Lambda Runtime Interface Emulator protocol.

``POST /2015-03-31/functions/function/invocations`` with the event as the body; the answer's
body is the handler's return value as JSON. That is what the RIE in every AWS Lambda base image
speaks and what ``python -m propylon.function`` speaks, so Propylon runs any Lambda container.

One client serves the FUNCTION integration and (next) the REQUEST/TOKEN authorizers: callers
say where (``Target``: a base ``url`` or a ``service`` with its endpoints), what (the event's
bytes) and how long (the timeout), and get the parsed return value or one of three exceptions.
Connections come from the gateway's upstream pool, so invocations reuse keep-alive sockets
exactly as proxied requests do, and Service endpoints are balanced (and a refusing endpoint
skipped for a while) by the same balancer as HTTP_PROXY.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.parse
from typing import Any

from propylon_config import model
from propylon_proxy import endpoints, upstream

INVOCATION_PATH = "/2015-03-31/functions/function/invocations"
#: A larger answer is refused rather than buffered (Lambda's own synchronous limit is 6 MB).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class InvokeError(Exception):
    """The function gave no usable answer: connect failure, crash, malformed answer (-> 502)."""


class InvokeTimeout(InvokeError):
    """No complete answer within the timeout (-> 504)."""


class MalformedAnswer(InvokeError):
    """The function answered, but not with JSON: a configuration error for an authorizer."""


class FunctionError(InvokeError):
    """The handler raised: the RIE's error answer (``errorMessage``, ``errorType``)."""

    def __init__(self, error_message: str, error_type: str, payload: dict[str, Any]) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_message = error_message
        self.error_type = error_type
        self.payload = payload


class _Refused(Exception):
    """No connection could be made; nothing was sent, so another endpoint may be tried."""

    def __init__(self, message: str, address: model.EndpointAddress | None) -> None:
        super().__init__(message)
        self.address = address


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where a function runs: a base URL, or a Service with the endpoints the plan knows for it."""

    url: str | None = None
    service: model.ServiceTarget | None = None
    addresses: tuple[model.EndpointAddress, ...] = ()

    @property
    def key(self) -> str:
        return self.url if self.url is not None else self.service.key if self.service is not None else ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Base:
    scheme: str
    host: str
    port: int
    host_header: str
    path: str


def _base(url: str) -> _Base:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    return _Base(scheme, parts.hostname or "", port, parts.netloc, parts.path.rstrip("/") + INVOCATION_PATH)


def _is_error_answer(answer: Any) -> bool:
    """The RIE's answer for a raised exception: ``errorMessage`` and ``errorType`` (plus maybe
    ``stackTrace``/``requestId``), nothing a proxy-integration return value would hold."""
    return (
        isinstance(answer, dict)
        and isinstance(answer.get("errorType"), str)
        and "errorMessage" in answer
        and "statusCode" not in answer
        and set(answer) <= {"errorMessage", "errorType", "stackTrace", "requestId", "cause"}
    )


class FunctionClient:
    """Invokes functions through the gateway's upstream pool; one per gateway, shared."""

    def __init__(self, pool: upstream.Upstream, balancer: endpoints.Balancer) -> None:
        self._pool = pool
        self._balancer = balancer
        self._bases: dict[str, _Base] = {}

    def _destination(
        self, target: Target, exclude: tuple[str, int] | None = None
    ) -> tuple[_Base, model.EndpointAddress | None]:
        if target.url is not None:
            base = self._bases.get(target.url)
            if base is None:
                base = self._bases[target.url] = _base(target.url)
            return base, None
        if target.service is None:
            raise InvokeError("a function target needs a url or a service")
        picked = self._balancer.pick(target.service.key, target.addresses, exclude)
        if picked is None:
            raise InvokeError(f"no ready endpoint for {target.service.key}")
        host = f"[{picked.address}]" if ":" in picked.address else picked.address
        return _Base("http", picked.address, picked.port, f"{host}:{picked.port}", INVOCATION_PATH), picked

    async def invoke(self, target: Target, event: bytes, timeout: float, *, request_id: str = "") -> Any:
        """The handler's return value (parsed JSON) for ``event``; raises ``InvokeTimeout``,
        ``FunctionError`` (the handler raised) or ``InvokeError`` (anything else).

        A Service endpoint that refuses the connection (nothing was sent) is marked failed and
        the invocation tried once more on another endpoint, as HTTP_PROXY does."""
        deadline = time.monotonic() + timeout
        try:
            return await self._invoke_once(target, event, deadline, request_id, None)
        except _Refused as refused:
            if refused.address is None:
                raise InvokeError(str(refused)) from refused
            exclude = (refused.address.address, refused.address.port)
            try:
                return await self._invoke_once(target, event, deadline, request_id, exclude)
            except _Refused as again:
                raise InvokeError(str(again)) from again

    async def _invoke_once(
        self, target: Target, event: bytes, deadline: float, request_id: str, exclude: tuple[str, int] | None
    ) -> Any:
        base, address = self._destination(target, exclude)
        timeout = max(deadline - time.monotonic(), 0.001)
        headers = [
            ("Host", base.host_header),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(event))),
        ]
        if request_id:
            headers.append(("X-Request-Id", request_id))
        request = upstream.UpstreamRequest(
            method="POST",
            scheme=base.scheme,
            host=base.host,
            port=base.port,
            target=base.path,
            headers=headers,
            body=event,
            timeout=timeout,
        )
        try:
            response = await self._pool.send(request)
        except upstream.UpstreamTimeout as exc:
            raise InvokeTimeout(str(exc)) from exc
        except upstream.UpstreamConnectError as exc:
            if address is not None:
                self._balancer.mark_failed(address)
            raise _Refused(str(exc), address) from exc
        except (upstream.UpstreamError, OSError) as exc:
            raise InvokeError(str(exc)) from exc
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                answer = await _read(response)
        except TimeoutError as exc:
            raise InvokeTimeout("the answer did not complete in time") from exc
        except (upstream.UpstreamError, OSError) as exc:
            raise InvokeError(str(exc)) from exc
        finally:
            await response.release()
        return _parse(response, answer)


async def _read(response: upstream.UpstreamResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.iter_chunks():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise InvokeError(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(response: upstream.UpstreamResponse, answer: bytes) -> Any:
    flagged = any(n.lower() == "x-amz-function-error" for n, _ in response.headers)
    if response.status != 200 and not flagged:
        raise InvokeError(f"the function service answered {response.status}")
    if not answer.strip() and not flagged:
        # Not JSON at all: a handler's None is ``null`` on the wire, so an empty body is a broken
        # function service, never a return value (a 2.0 route must not turn it into ``200 null``).
        raise MalformedAnswer("the answer is empty")
    try:
        value = json.loads(answer) if answer else None
    except RecursionError as exc:  # nested deeper than the parser goes: no usable answer
        raise MalformedAnswer("the answer is JSON nested too deeply") from exc
    except ValueError as exc:
        raise MalformedAnswer("the answer is not JSON") from exc
    if flagged or _is_error_answer(value):
        message = value.get("errorMessage") if isinstance(value, dict) else None
        kind = value.get("errorType") if isinstance(value, dict) else None
        raise FunctionError(
            str(message) if message is not None else "",
            str(kind) if kind is not None else "Unhandled",
            value if isinstance(value, dict) else {},
        )
    return value
