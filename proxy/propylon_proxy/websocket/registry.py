"""The connections this replica holds: id -> live connection, for @connections and shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from propylon_proxy.websocket import tables


@dataclasses.dataclass(slots=True)
class Connection:
    id: str
    stage_base_path: str
    socket: web.WebSocketResponse
    connected_at: float  # epoch seconds
    last_active_at: float
    source_ip: str
    user_agent: str
    domain_name: str = ""
    # The plan the connection opened with: it keeps it until a swap stops serving its stage.
    ws: tables.WsStage | None = None
    internal: bool = False  # opened on the internal listener (which serves PRIVATE stages too)
    # requestContext.authorizer, captured at $connect and sent with every event (as AWS does).
    authorizer: dict[str, Any] | None = None
    # The upgrade's headers and query pairs, for the CONNECT event only; dropped once $connect ran.
    handshake: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] | None = None
    queue: asyncio.Queue[str | bytes] = dataclasses.field(default_factory=lambda: asyncio.Queue(maxsize=64))
    # (code, reason) of the close that ended it, for the DISCONNECT event: the client's close
    # frame, or the gateway's own close (``close``). None while open.
    disconnect: tuple[int, str] | None = None

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        """Closes it from the gateway's side, noting the code and reason the DISCONNECT event
        reports (unless it had already ended: then that end is what it reports)."""
        if not self.socket.closed and self.disconnect is None:
            self.disconnect = (code, message.decode("utf-8", "replace"))
        await self.socket.close(code=code, message=message)


class Registry:
    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}

    def add(self, connection: Connection) -> None:
        self._connections[connection.id] = connection

    def remove(self, connection_id: str) -> None:
        self._connections.pop(connection_id, None)

    def get(self, connection_id: str, base_path: str) -> Connection | None:
        connection = self._connections.get(connection_id)
        if connection is None or connection.stage_base_path != base_path or connection.socket.closed:
            return None
        return connection

    def all(self) -> list[Connection]:
        return list(self._connections.values())
