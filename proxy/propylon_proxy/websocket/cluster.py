"""WebSocket connections across replicas (``--redis``): a shared registry and a channel per replica.

A connection lives on the replica whose socket holds it, but an @connections call may land on
any replica. So each replica writes its connections to Redis (``propylon:ws:conn:<id>``, a hash
with the owner replica, stage base path, connectedAt, lastActiveAt and identity) with a TTL,
and refreshes every one of them from a heartbeat every third of the TTL. A replica that dies
(even SIGKILL, which runs no cleanup) stops refreshing, so its connections leave the registry
within one TTL and calls for them answer 410.

A replica subscribes to its own channel (``propylon:ws:replica:<replica id>``); a POST or
DELETE for a connection held elsewhere is published there and the owner acts on it. ``PUBLISH``
says how many subscribers got the message: none means the owner is gone, which is 410 too
(and the stale entry is deleted at once rather than waiting for the TTL). GET is answered from
the registry alone. Redis errors never break a local connection: registration is retried by
the next heartbeat and the subscriber reconnects by itself.

Plain Redis only: with ``--redis-cluster`` the registry stays per replica (documented).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from propylon_proxy.websocket import registry

log = logging.getLogger("propylon.websocket")

PREFIX = "propylon:ws:"
CALL_TIMEOUT = 1.0  # seconds for one registry call; the registry is not on the message path
Act = Callable[[str, str, str, str | bytes | None], None]  # (op, connection id, base, data)


def _key(connection_id: str) -> str:
    return f"{PREFIX}conn:{connection_id}"


def _channel(replica: str) -> str:
    return f"{PREFIX}replica:{replica}"


class Unavailable(Exception):
    """Redis did not answer: the caller answers 503 rather than guess 410."""


class Cluster:
    def __init__(self, url: str, ttl_seconds: float, act: Act) -> None:
        self.replica = secrets.token_hex(8)
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._client: Any = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=CALL_TIMEOUT, socket_connect_timeout=CALL_TIMEOUT
        )
        self._act = act
        self._tasks: list[asyncio.Task[None]] = []
        self._local: Callable[[], list[registry.Connection]] = list

    def start(self, local: Callable[[], list[registry.Connection]]) -> None:
        """Heartbeat and subscriber; started on the first connection (inside the event loop)."""
        if self._tasks:
            return
        self._local = local
        self._tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._subscribe())]

    def _fields(self, c: registry.Connection) -> dict[str, str]:
        return {
            "replica": self.replica,
            "base": c.stage_base_path,
            "connectedAt": repr(c.connected_at),
            "lastActiveAt": repr(c.last_active_at),
            "sourceIp": c.source_ip,
            "userAgent": c.user_agent,
        }

    async def register(self, connections: list[registry.Connection]) -> None:
        if not connections:
            return
        pipe = self._client.pipeline(transaction=False)
        for c in connections:
            pipe.hset(_key(c.id), mapping=self._fields(c))
            pipe.pexpire(_key(c.id), self.ttl_ms)
        try:
            await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("websocket registry: could not register %d connection(s): %s", len(connections), exc)

    async def unregister(self, connection_id: str) -> None:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await self._client.delete(_key(connection_id))

    async def lookup(self, connection_id: str, base: str) -> dict[str, str] | None:
        try:
            found: dict[str, str] = await self._client.hgetall(_key(connection_id))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise Unavailable(str(exc)) from exc
        if not found or found.get("base") != base:
            return None
        return found

    async def forward(self, entry: dict[str, str], op: str, connection_id: str, data: str | bytes | None) -> bool:
        """Publishes ``op`` to the owner replica; False when no replica is listening there."""
        message: dict[str, Any] = {"op": op, "id": connection_id, "base": entry["base"]}
        if isinstance(data, bytes):
            message["binary"] = base64.b64encode(data).decode()
        elif data is not None:
            message["text"] = data
        try:
            receivers = await self._client.publish(_channel(entry["replica"]), json.dumps(message))
            if receivers == 0:
                await self._client.delete(_key(connection_id))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise Unavailable(str(exc)) from exc
        return bool(receivers)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            await self.register(self._local())

    async def _subscribe(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(_channel(self.replica))
                await self.register(self._local())  # entries written while Redis was away
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("websocket channel: %s; resubscribing", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            data: str | bytes | None = message.get("text")
            if "binary" in message:
                data = base64.b64decode(message["binary"])
            self._act(str(message["op"]), str(message["id"]), str(message["base"]), data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("websocket channel: ignored a malformed message: %s", exc)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._client.aclose()
