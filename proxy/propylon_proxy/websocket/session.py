"""One WebSocket connection from $connect to $disconnect.

$disconnect runs exactly once, in ``finally``, however the connection ends. Messages are
routed by the Api's routeSelectionExpression (``$request.body.<path>``) over JSON bodies and
fall to ``$default`` otherwise. Sends go through a bounded queue: a client that cannot keep
up is closed with 1008 instead of growing memory.

A connection keeps the plan (``WsStage``) it opened with across config swaps; ``retain`` closes
(1001) only the connections whose stage the new plan no longer serves where they opened
(their Stage or WebSocket Api removed, its basePath moved, a PUBLIC stage made PRIVATE), and
their $disconnect runs, once, with the plan they opened with.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from propylon_config import model
from propylon_proxy import context, gateway_responses, ids, replies, runtime, utf8
from propylon_proxy.functions import client as function_client
from propylon_proxy.functions import responses as function_responses
from propylon_proxy.integrations import function as function_integration
from propylon_proxy.integrations import mock as mock_integration
from propylon_proxy.websocket import events, registry, tables

if TYPE_CHECKING:
    from propylon_proxy.websocket import cluster as ws_cluster

CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
TOO_BIG = b"message too big"


class Socket(web.WebSocketResponse):
    """aiohttp's socket, told the stage's maxMessageBytes: its reader refuses a longer frame or
    message from the frame headers, before buffering it, and stops inflating a compressed one
    at the limit (a deflate bomb never grows past it). The reader closes such a connection with
    1009 and no reason; this one gives the reason the explicit check gives, ``message too big``.
    """

    def __init__(self, max_message_bytes: int) -> None:
        # aiohttp refuses a message of max_msg_size bytes or more; the limit allows exactly
        # max_message_bytes (a larger one is refused, DESIGN.md section 8).
        super().__init__(max_msg_size=max_message_bytes + 1, autoping=True)

    async def close(self, *, code: int = aiohttp.WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == CLOSE_TOO_BIG and not message:
            message = TOO_BIG
        return await super().close(code=code, message=message, drain=drain)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """An integration's answer; ``failure`` names the gateway response when none came."""

    status: int
    body: bytes
    failure: str | None = None  # INTEGRATION_FAILURE | INTEGRATION_TIMEOUT
    # Seconds the call took (the access log's integrationLatencyMs); None for a MOCK, which
    # calls nothing (as on HTTP routes).
    latency: float | None = None
    # A function's isBase64Encoded answer: ``body`` holds the decoded bytes, sent as a binary
    # frame (a text frame must be UTF-8, which arbitrary bytes are not).
    binary: bool = False


def still_served(connection: registry.Connection, served: tables.Tables) -> bool:
    """True while the plan ``served`` serves the connection's stage where it opened."""
    opened = connection.ws
    if opened is None:
        return True
    now = served.match(connection.stage_base_path, internal=connection.internal)
    return now is not None and now.stage.id == opened.stage.id and now.api.id == opened.api.id


def select_route(ws: tables.WsStage, data: str | bytes) -> model.Route | None:
    expression = ws.api.route_selection_expression or ""
    key: Any = None
    if expression.startswith("$request.body.") and isinstance(data, str):
        try:
            key = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            key = None
        for part in expression.removeprefix("$request.body.").split("."):
            key = key.get(part) if isinstance(key, dict) else None
    route = ws.routes.get(key) if isinstance(key, str) and not key.startswith("$") else None
    return route or ws.routes.get("$default")


class Integrations:
    """Calls a route's HTTP integration with the message body as is."""

    def __init__(self, run: runtime.Runtime) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._functions = function_integration.shared_client(run)
        self._balancer = run.balancer
        # The latest plan's Service endpoints (``Sessions.retain``): a connection keeps the plan
        # it opened with, but its Service's Pods may have moved since.
        self.endpoints: Mapping[str, tuple[model.EndpointAddress, ...]] = {}

    def _http_url(self, integration: model.Integration) -> tuple[str | None, model.EndpointAddress | None]:
        """Where an HTTP integration's request goes: its ``url``, or a ready endpoint of its
        ``service`` (balanced as HTTP routes are) with ``path`` (default "/")."""
        if integration.url is not None:
            return integration.url, None
        service = integration.service
        if service is None:
            return None, None
        picked = self._balancer.pick(service.key, self.endpoints.get(service.key, ()))
        if picked is None:
            return None, None
        host = f"[{picked.address}]" if ":" in picked.address else picked.address
        return f"http://{host}:{picked.port}{integration.path or '/'}", picked

    async def call(
        self,
        ws: tables.WsStage,
        connection: registry.Connection,
        route: model.Route,
        event: str,
        body: str | bytes,
        request_id: str | None = None,
    ) -> Answer:
        """The route's integration answer; ``request_id`` is the upgrade's for $connect (a message
        or $disconnect gets one of its own, made only if a MOCK body asks for it)."""
        integration = route.integration
        if integration.type is model.IntegrationType.MOCK and integration.mock is not None:
            return _mock(ws, integration.mock, request_id)
        began = time.monotonic()
        answer = await self._call(ws, connection, route, event, body, request_id)
        return dataclasses.replace(answer, latency=time.monotonic() - began)

    async def _call(
        self,
        ws: tables.WsStage,
        connection: registry.Connection,
        route: model.Route,
        event: str,
        body: str | bytes,
        request_id: str | None,
    ) -> Answer:
        connection_id = connection.id
        integration = route.integration
        if integration.type is model.IntegrationType.FUNCTION:
            return await self._function(ws, connection, route, event, body, request_id)
        if isinstance(body, str):
            body = body.encode()
        url, picked = self._http_url(integration)
        if url is None:
            return Answer(502, b"", gateway_responses.INTEGRATION_FAILURE)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {
            "x-propylon-connection-id": connection_id,
            "x-propylon-route-key": route.route_key,
            "x-propylon-event-type": event,
        }
        timeout = aiohttp.ClientTimeout(total=integration.timeout_ms / 1000)
        try:
            async with self._session.request(
                integration.method or "POST", url, data=body, headers=headers, timeout=timeout
            ) as answer:
                return Answer(answer.status, await answer.read())
        except TimeoutError:
            return Answer(504, b"", gateway_responses.INTEGRATION_TIMEOUT)
        except aiohttp.ClientError as exc:
            if picked is not None and isinstance(exc, aiohttp.ClientConnectorError):
                self._balancer.mark_failed(picked)  # skipped for a while, as HTTP routes do
            return Answer(502, b"", gateway_responses.INTEGRATION_FAILURE)

    async def _function(
        self,
        ws: tables.WsStage,
        connection: registry.Connection,
        route: model.Route,
        event: str,
        body: str | bytes,
        request_id: str | None,
    ) -> Answer:
        integration = route.integration
        service = integration.service
        addresses = self.endpoints.get(service.key, ()) if service is not None else ()
        target = function_client.Target(url=integration.url, service=service, addresses=addresses)
        message = body if event == "MESSAGE" else None
        payload = events.build(ws, connection, route.route_key, event, message, request_id)
        try:
            answer = await self._functions.invoke(target, payload, integration.timeout_ms / 1000)
        except function_client.InvokeTimeout:
            return Answer(504, b"", gateway_responses.INTEGRATION_TIMEOUT)
        except function_client.InvokeError:
            return Answer(502, b"", gateway_responses.INTEGRATION_FAILURE)
        if isinstance(answer, dict):
            # The HTTP FUNCTION routes' rules ("403" is a status too; a body that is not Unicode
            # text, or not base64 when it says it is, is malformed); a malformed answer is a 502,
            # so a $connect whose refusal cannot be read refuses: it never fails open.
            try:
                status = function_responses.reply(answer, "1.0").status if "statusCode" in answer else 200
                data, binary = _body(answer)
                return Answer(status, data, binary=binary)
            except (function_responses.Malformed, UnicodeEncodeError, binascii.Error):
                return Answer(502, b"", gateway_responses.INTEGRATION_FAILURE)
        return Answer(200, json.dumps(answer).encode() if answer is not None else b"")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _mock(ws: tables.WsStage, mock: model.Mock, request_id: str | None) -> Answer:
    """A MOCK's answer with DESIGN.md section 2.4's substitutions, as an HTTP MOCK renders it
    (``${stageVariables.x}``, ``$context.requestId``); a body without ``$`` is sent as is."""
    text = mock.body
    if "$" in text:
        text = mock_integration.render_body(text, variables=ws.variables, request_id=request_id or ids.request_id())
    return Answer(mock.status_code, utf8.encode(text))


def _body(answer: dict[str, Any]) -> tuple[bytes, bool]:
    """The body a function's answer sends back to the client, and whether it is bytes: with
    ``isBase64Encoded`` the decoded bytes (DESIGN.md section 8; binascii.Error when it is not
    base64), else the text as it gave it (UnicodeEncodeError for a lone surrogate, JSON's
    ``"\\ud800"``). Either error is the caller's malformed answer."""
    text = answer.get("body")
    if not isinstance(text, str):
        return b"", False
    encoded = answer.get("isBase64Encoded", False)
    if encoded is True or encoded == "true":
        return base64.b64decode(text, validate=True), True
    return text.encode("utf-8"), False


def new_connection_id() -> str:
    """A connection id: random, URL-safe (it is a path segment of @connections)."""
    return secrets.token_urlsafe(12)


class Sessions:
    def __init__(self, run: runtime.Runtime) -> None:
        self.registry = registry.Registry()
        self.integrations = Integrations(run)
        self._closing: set[asyncio.Future[None]] = set()
        self._served: tables.Tables | None = None  # the latest plan's stages (``retain``)
        self.cluster = _cluster(run, self._act)  # None: this replica's registry is the only one

    def open(
        self,
        request: web.BaseRequest,
        ws: tables.WsStage,
        source_ip: str,
        *,
        internal: bool,
        authorizer: dict[str, Any] | None,
        connection_id: str | None = None,
    ) -> registry.Connection:
        """A connection not yet accepted: $connect still has to let it in (``connect``).
        ``connection_id`` is the one the upgrade's checks were shown (``new_connection_id``)."""
        now = time.time()
        return registry.Connection(
            id=connection_id or new_connection_id(),
            stage_base_path=ws.stage.base_path.rstrip("/") or "/",
            socket=Socket(ws.limits.max_message_bytes),
            connected_at=now,
            last_active_at=now,
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            domain_name=request.headers.get("Host", ""),
            ws=ws,
            internal=internal,
            authorizer=authorizer,
            handshake=(tuple(request.headers.items()), tuple(request.query.items())),
        )

    async def connect(
        self, connection: registry.Connection, ctx: context.RequestContext | None = None
    ) -> replies.Refusal | None:
        """$connect's integration: a non-2xx refuses the upgrade (403); a malformed answer, or none
        at all, is 502/504. Its status and latency go on ``ctx`` (the upgrade's access-log line),
        as an HTTP integration's do."""
        ws = connection.ws
        connect = ws.routes.get("$connect") if ws is not None else None
        if ws is None or connect is None:
            connection.handshake = None
            return None
        try:
            request_id = ctx.request_id if ctx is not None else None
            answer = await self.integrations.call(ws, connection, connect, "CONNECT", b"", request_id)
        finally:
            connection.handshake = None  # only the CONNECT event carries it
        if ctx is not None and answer.latency is not None:
            ctx.integration_latency = answer.latency
            if answer.failure is None:
                ctx.integration_status = answer.status
        if answer.failure is not None:
            return replies.refuse(answer.failure)
        if not 200 <= answer.status < 300:
            return replies.refuse(gateway_responses.ACCESS_DENIED)
        return None

    async def serve(self, request: web.BaseRequest, connection: registry.Connection) -> web.StreamResponse:
        """Accepts the connection (101) and runs it until it ends; then $disconnect, once."""
        ws = connection.ws
        assert ws is not None
        connection_id = connection.id
        socket = connection.socket
        limits = ws.limits
        # Registered before the 101: a call made as soon as the client (or the backend that saw
        # $connect) knows the id finds it, here and on every replica; messages wait in its queue.
        self.registry.add(connection)
        try:
            if self.cluster is not None:
                self.cluster.start(self.registry.all)
                await self.cluster.register([connection])
            await socket.prepare(request)
        except BaseException:
            self.registry.remove(connection_id)
            if self.cluster is not None:
                await self.cluster.unregister(connection_id)
            raise
        if self._served is not None and not still_served(connection, self._served):
            self._close_later(connection, CLOSE_GOING_AWAY, b"going away")  # a swap during $connect
        sender = asyncio.create_task(self._send_loop(connection))
        try:
            await asyncio.wait_for(self._receive(ws, connection, limits), timeout=limits.max_connection_seconds)
        except TimeoutError:
            pass
        finally:
            self.registry.remove(connection_id)
            if self.cluster is not None:
                await self.cluster.unregister(connection_id)
            sender.cancel()
            await connection.close()  # idle or too old; a no-op once closed
            if connection.disconnect is None:  # dropped without a close frame
                connection.disconnect = (events.CLOSE_ABNORMAL, "")
            disconnect = ws.routes.get("$disconnect")
            if disconnect is not None:
                await self.integrations.call(ws, connection, disconnect, "DISCONNECT", b"")
        return socket

    def retain(self, served: tables.Tables) -> None:
        """After a swap: close (1001) the connections whose stage ``served`` no longer serves."""
        self._served = served
        self.integrations.endpoints = served.endpoints
        for connection in self.registry.all():
            if not still_served(connection, served):
                self._close_later(connection, CLOSE_GOING_AWAY, b"going away")

    def _close_later(self, connection: registry.Connection, code: int, message: bytes) -> None:
        closing = asyncio.ensure_future(connection.close(code, message))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _receive(
        self, ws: tables.WsStage, connection: registry.Connection, limits: model.WebSocketLimits
    ) -> None:
        socket = connection.socket
        while True:
            try:
                message = await socket.receive(timeout=limits.idle_timeout_seconds)
            except TimeoutError:
                return
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                _note_close(connection, message)
                return
            data: str | bytes = message.data
            raw = data.encode() if isinstance(data, str) else data
            if len(raw) > limits.max_message_bytes:  # a backstop: the reader refuses these (``Socket``)
                await connection.close(CLOSE_TOO_BIG, TOO_BIG)
                return
            connection.last_active_at = time.time()
            route = select_route(ws, data)
            if route is None:
                continue
            answer = await self.integrations.call(ws, connection, route, "MESSAGE", data)
            if route.route_response_selection_expression == "$default" and answer.body:
                self.offer(connection, answer.body if answer.binary else answer.body.decode("utf-8", "replace"))

    def offer(self, connection: registry.Connection, data: str | bytes) -> bool:
        """Queues a message for the client; a full queue closes it with 1008 (backpressure)."""
        try:
            connection.queue.put_nowait(data)
        except asyncio.QueueFull:
            self._close_later(connection, CLOSE_POLICY, b"client too slow")
            return False
        return True

    def _act(self, op: str, connection_id: str, base: str, data: str | bytes | None) -> None:
        """An @connections call another replica forwarded for a connection held here."""
        connection = self.registry.get(connection_id, base)
        if connection is None:
            return
        if op == "POST" and data is not None:
            self.offer(connection, data)
        elif op == "DELETE":
            self._close_later(connection, 1000, b"closed by @connections")

    async def _send_loop(self, connection: registry.Connection) -> None:
        while True:
            data = await connection.queue.get()
            if isinstance(data, str):
                await connection.socket.send_str(data)
            else:
                await connection.socket.send_bytes(data)

    async def going_away(self) -> None:
        """Server shutdown: every connection closes with 1001 and its $disconnect runs."""
        await asyncio.gather(
            *(c.close(CLOSE_GOING_AWAY, b"going away") for c in self.registry.all()),
            return_exceptions=True,
        )

    async def close(self) -> None:
        await self.going_away()
        await self.integrations.close()
        if self.cluster is not None:
            await self.cluster.close()


def _note_close(connection: registry.Connection, message: aiohttp.WSMessage) -> None:
    """How the connection ended, for the DISCONNECT event, when the client (or its bytes) ended
    it: the client's close frame (1005 when it gave no code), or the close the reader sent for a
    frame it refused (1009 too big, 1002 a protocol error). A close the gateway sent is noted by
    ``Connection.close``; a connection dropped without a close frame is 1006 (``serve``)."""
    if connection.disconnect is not None:
        return
    socket = connection.socket
    if message.type is aiohttp.WSMsgType.CLOSE:
        connection.disconnect = (int(message.data or events.CLOSE_NO_STATUS), str(message.extra or ""))
    elif message.type is aiohttp.WSMsgType.ERROR and socket.close_code is not None:
        reason = TOO_BIG.decode() if socket.close_code == CLOSE_TOO_BIG else ""
        connection.disconnect = (int(socket.close_code), reason)


def _cluster(run: runtime.Runtime, act: ws_cluster.Act) -> ws_cluster.Cluster | None:
    """The shared registry with ``--redis`` (or a Redis Cluster); ``redis`` is imported only then."""
    url = run.settings.redis_url
    if not url:
        return None
    from propylon_proxy.websocket import cluster as ws_cluster

    return ws_cluster.Cluster(url, run.settings.ws_registry_ttl_seconds, act, redis_cluster=run.settings.redis_cluster)


RESOURCE = "websocket/sessions"


def shared(run: runtime.Runtime) -> Sessions:
    """The gateway's one set of open connections; it outlives every plan."""
    return run.resources.claim(RESOURCE, lambda: Sessions(run))


def retain(sessions: Sessions | None, served: tables.Tables | None) -> None:
    """The plan holder's hook after a swap (``Sessions.retain``)."""
    if sessions is not None and served is not None:
        sessions.retain(served)


async def shutdown(run: runtime.Runtime) -> None:
    if RESOURCE in run.resources.keys():  # noqa: SIM118 (Resources is not a dict)
        await shared(run).going_away()
