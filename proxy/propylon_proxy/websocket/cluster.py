"""WebSocket connections across replicas (``--redis``): a shared registry and a channel per replica.

A connection lives on the replica whose socket holds it, but an @connections call may land on
any replica. So each replica writes its connections to Redis (``propylon:ws:conn:{<id>}``, one
JSON value with the owner replica, stage base path, connectedAt, lastActiveAt and identity,
written with its TTL in one ``SET ... PX`` so no entry can ever lack its expiry) and refreshes
every one of them from a heartbeat every third of the TTL. A replica that dies (even SIGKILL,
which runs no cleanup) stops refreshing, so its connections leave the registry within one TTL
and calls for them answer 410. The connection id is the key's hash tag: whatever else a
connection's entry ever needs stays in its slot on a Redis Cluster.

A replica subscribes to its own channel (``propylon:ws:replica:<replica id>``); a POST or
DELETE for a connection held elsewhere is published there and the owner acts on it. ``PUBLISH``
says how many subscribers got the message: none means the owner is gone, which is 410 too
(and the stale entry is deleted at once rather than waiting for the TTL). GET is answered from
the registry alone. Redis errors never break a local connection: registration is retried by
the next heartbeat and the subscriber reconnects by itself.

With ``--redis-cluster`` the registry goes through the cluster client (each entry to its slot's
node) and the channels stay classic pub/sub, which a cluster delivers to every node. But
``PUBLISH`` counts only the subscribers of the node it ran on, so a replica subscribes on the
node that owns its channel name's slot and callers publish on that same node: the count stays
exact, and "no receiver" still means the owner is gone. A subscriber checks that owner at
every heartbeat and moves when the slot moved (resharding, failover).
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
from redis.asyncio import cluster as aiocluster

from propylon_proxy.websocket import registry

log = logging.getLogger("propylon.websocket")

PREFIX = "propylon:ws:"
CALL_TIMEOUT = 1.0  # seconds for one registry call; the registry is not on the message path
CLOSE_WAIT = 2.0  # seconds ``close`` waits for the heartbeat and subscriber to end
Act = Callable[[str, str, str, str | bytes | None], None]  # (op, connection id, base, data)


def _key(connection_id: str) -> str:
    return f"{PREFIX}conn:{{{connection_id}}}"


def _channel(replica: str) -> str:
    return f"{PREFIX}replica:{replica}"


def _stop_if_cancelled() -> None:
    """Raises CancelledError when this task was asked to stop: redis-py's timed reads can turn
    a cancellation into a timeout (then "no message", or a TimeoutError the loop would retry),
    and a loop that only awaits such reads would never end (``serve`` hung after SIGTERM)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Unavailable(Exception):
    """Redis did not answer: the caller answers 503 rather than guess 410."""


class Cluster:
    def __init__(self, url: str, ttl_seconds: float, act: Act, *, redis_cluster: bool = False) -> None:
        self.replica = secrets.token_hex(8)
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": CALL_TIMEOUT,
            "socket_connect_timeout": CALL_TIMEOUT,
        }
        self._redis_cluster = redis_cluster
        self._client: Any = (
            aiocluster.RedisCluster.from_url(url, **options)
            if redis_cluster
            else aioredis.Redis.from_url(url, **options)
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

    def _entry(self, c: registry.Connection) -> str:
        return json.dumps(
            {
                "replica": self.replica,
                "base": c.stage_base_path,
                "connectedAt": repr(c.connected_at),
                "lastActiveAt": repr(c.last_active_at),
                "sourceIp": c.source_ip,
                "userAgent": c.user_agent,
            }
        )

    async def register(self, connections: list[registry.Connection]) -> None:
        if not connections:
            return
        pipe = self._client.pipeline(transaction=False)
        for c in connections:
            pipe.set(_key(c.id), self._entry(c), px=self.ttl_ms)
        try:
            await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("websocket registry: could not register %d connection(s): %s", len(connections), exc)

    async def unregister(self, connection_id: str) -> None:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await self._client.delete(_key(connection_id))

    async def lookup(self, connection_id: str, base: str) -> dict[str, str] | None:
        try:
            raw = await self._client.get(_key(connection_id))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise Unavailable(str(exc)) from exc
        try:
            found = json.loads(raw) if raw else None
        except ValueError:
            found = None
        if not isinstance(found, dict) or found.get("base") != base:
            return None
        return {str(k): str(v) for k, v in found.items()}

    async def forward(self, entry: dict[str, str], op: str, connection_id: str, data: str | bytes | None) -> bool:
        """Publishes ``op`` to the owner replica; False when no replica is listening there."""
        message: dict[str, Any] = {"op": op, "id": connection_id, "base": entry["base"]}
        if isinstance(data, bytes):
            message["binary"] = base64.b64encode(data).decode()
        elif data is not None:
            message["text"] = data
        try:
            receivers = await self._publish(_channel(entry["replica"]), json.dumps(message))
            if receivers == 0:
                await self._client.delete(_key(connection_id))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise Unavailable(str(exc)) from exc
        return bool(receivers)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            await self.register(self._local())
            _stop_if_cancelled()  # a cancel that landed inside redis-py's timed call

    async def _publish(self, channel: str, message: str) -> int:
        if not self._redis_cluster:
            return int(await self._client.publish(channel, message))
        node = await self._channel_node(channel)
        return int(await self._client.execute_command("PUBLISH", channel, message, target_nodes=node))

    async def _channel_node(self, channel: str) -> Any:
        """The cluster node owning ``channel``'s slot: where its subscriber and publishers meet."""
        await self._client.initialize()
        return self._client.get_node_from_key(channel)

    async def _subscriber(self) -> tuple[Any, str | None]:
        """A client to subscribe with (on a cluster: one to the channel's node) and that node."""
        if not self._redis_cluster:
            return self._client, None
        node = await self._channel_node(_channel(self.replica))
        pool = aioredis.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
        return aioredis.Redis(connection_pool=pool), str(node.name)

    async def _moved(self, name: str | None) -> bool:
        """On a cluster: the channel's slot has another owner now (so resubscribe there)."""
        if name is None:
            return False
        try:
            node = await self._channel_node(_channel(self.replica))
        except (redis.exceptions.RedisError, OSError):
            return False
        return str(node.name) != name

    async def _subscribe(self) -> None:
        """Listens on this replica's channel for as long as the replica runs.

        After a failure the broken subscription is dropped before the pause, not after it: a
        connection Redis still counts as subscribed while nobody reads it would make ``PUBLISH``
        answer 1 for a message that is then lost (the caller told 200/204 for nothing)."""
        while True:
            try:
                await self._listen()
            except (redis.exceptions.RedisError, OSError) as exc:
                _stop_if_cancelled()
                log.warning("websocket channel: %s; resubscribing", exc)
                await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        """One subscription, until it fails or (on a cluster) its slot moves.

        Each read waits a third of the TTL at most and an idle wait answers None: with no
        timeout given, redis-py reads with the client's 1 s ``socket_timeout`` and every idle
        second of the channel became an error and a resubscription, with messages lost in
        between. A cancellation that redis-py's timed read turns into "nothing came" is
        noticed here (``_stop_if_cancelled``), so ``close`` never waits on this loop."""
        client: Any = None
        pubsub: Any = None
        try:
            client, node = await self._subscriber()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(_channel(self.replica))
            await self.register(self._local())  # entries written while Redis was away
            while True:
                message = await pubsub.get_message(timeout=self.ttl_ms / 3000)
                _stop_if_cancelled()
                if message is not None and message.get("type") == "message":
                    self._dispatch(message["data"])
                elif message is None and await self._moved(node):
                    log.info("websocket channel: its slot moved; resubscribing on the new owner")
                    return
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if client is not None and client is not self._client:
                with contextlib.suppress(Exception):
                    await client.aclose()

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
        """Stops the heartbeat and the subscriber; waits ``CLOSE_WAIT`` at most, so a task that
        still does not end (a cancel lost in a library) cannot hold the shutdown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=CLOSE_WAIT)
            if pending:
                log.warning("websocket channel: %d task(s) did not stop; leaving them", len(pending))
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._client.aclose()
