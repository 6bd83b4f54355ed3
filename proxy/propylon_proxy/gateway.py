"""Running the data plane: three listeners around one plan holder.

``Gateway`` owns the lifecycle (listen, swap config, stop) and nothing else; what a request goes
through lives in ``handling`` and ``server``. Used by ``propylon serve`` and by the tests, which
start it in-process on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from aiohttp import web

from propylon_config import model
from propylon_proxy import (
    admin,
    endpoints,
    fast_server,
    handling,
    plans,
    runtime,
    server,
    settings,
    state,
    tracing,
    upstreams,
)
from propylon_proxy.websocket import session as ws_session

log = logging.getLogger("propylon.proxy")


@dataclasses.dataclass(frozen=True, slots=True)
class Addresses:
    host: str
    port: int
    internal_port: int
    admin_port: int

    def urls(self) -> dict[str, str]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "public": f"http://{host}:{self.port}",
            "internal": f"http://{host}:{self.internal_port}",
            "admin": f"http://{host}:{self.admin_port}",
        }


class Gateway:
    def __init__(
        self,
        proxy_settings: settings.ProxySettings | None = None,
        *,
        admin_token: str | None = None,
        log_stream: TextIO | None = None,
        store: state.StateStore | None = None,
        clock: Callable[[], float] = time.time,
        api_key_secret: bytes | None = None,
    ) -> None:
        """``store`` is the limit store (default in memory); ``clock`` the wall clock limits and
        quotas read (tests move it); ``api_key_secret`` the key-hashing secret the snapshots'
        API keys were compiled with (``propylon_config.key_hashing``)."""
        self.settings = proxy_settings or settings.ProxySettings()
        self.runtime = runtime.Runtime(
            upstream=upstreams.create(self.settings.upstream_kind),
            settings=self.settings,
            balancer=endpoints.Balancer(failure_seconds=self.settings.endpoint_failure_seconds),
            store=store if store is not None else state.MemoryStore(),
            clock=clock,
            log_stream=log_stream,
            api_key_secret=api_key_secret,
            spans=tracing.from_env(),
        )
        self.holder = plans.PlanHolder(self.runtime)
        self._admin_token = admin_token
        self._servers: list[tuple[asyncio.Server, web.Server | fast_server.FastServer]] = []
        self.addresses: Addresses | None = None

    def _count_rejected(self, status: int) -> None:
        """Requests refused before routing (bad framing, slow heads) count as unmatched."""
        labels = self.runtime.metrics.labels("", "", "")
        self.runtime.metrics.requests.inc((*labels, ("code_class", f"{status // 100}xx")))

    def swap(self, config: model.GatewayConfig) -> plans.Plan:
        """Serve ``config`` from now on; requests already running keep the plan they started with."""
        return self.holder.swap(config)

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        internal_port: int = 8081,
        admin_port: int | None = 9090,
        *,
        reuse_port: bool = False,
        admin_siblings: Sequence[str] = (),
        admin_socket: str | None = None,
    ) -> Addresses:
        """``reuse_port`` lets several worker processes share the public and internal ports
        (SO_REUSEPORT: the kernel spreads new connections); ``admin_port`` None starts no admin
        listener on TCP (``Addresses.admin_port`` is then 0).

        ``serve --workers`` (DESIGN §4: a flush flushes the stage's cache, /metrics counts what
        ``serve`` answered): worker 0's admin listener speaks for every worker, relaying to the
        others' unix sockets in ``admin_siblings``; each other worker serves its admin handler on
        ``admin_socket`` instead of TCP, without a token, trusted because only its ``serve`` can
        enter the socket's folder."""
        listener = self.settings.listener
        bound = []
        public = handling.Pipeline(self.runtime, self.holder, "public")
        internal = handling.Pipeline(self.runtime, self.holder, "internal")
        aiohttp_public = server.GatewayServer(public, listener, self._count_rejected)
        public_server: web.Server | fast_server.FastServer = aiohttp_public
        if self.settings.http_server == "httptools":  # upgrades still go to aiohttp_public
            public_server = fast_server.FastServer(public, listener, self._count_rejected, fallback=aiohttp_public)
        handlers: list[web.Server | fast_server.FastServer] = [
            public_server,
            server.GatewayServer(internal, listener, self._count_rejected),
        ]
        if admin_socket is None:
            handler = admin.AdminHandler(self.runtime, self.holder, self._admin_token, siblings=admin_siblings)
            handlers.append(server.GatewayServer(handler, listener))
        loop = asyncio.get_running_loop()
        try:
            for index, (web_server, wanted) in enumerate(
                zip(handlers, (port, internal_port, admin_port), strict=False)
            ):
                if wanted is None:
                    bound.append(0)
                    continue
                shared = reuse_port and index < 2  # traffic listeners only
                tcp = await loop.create_server(web_server, host, wanted, reuse_address=True, reuse_port=shared or None)
                self._servers.append((tcp, web_server))
                bound.append(tcp.sockets[0].getsockname()[1])
            if admin_socket is not None:
                trusted = web.Server(admin.AdminHandler(self.runtime, self.holder, None, trusted=True))
                self._servers.append((await loop.create_unix_server(trusted, admin_socket), trusted))
                bound.append(0)
        except BaseException:
            await self.stop()
            raise
        self.addresses = Addresses(host=host, port=bound[0], internal_port=bound[1], admin_port=bound[2])
        return self.addresses

    async def stop(self, grace: float = 25.0) -> None:
        """Shut down without failing a request that was accepted (DESIGN.md section 8, shutdown).

        Not ready first (``/readyz`` 503), then the public and internal listeners stop accepting
        while the requests they are running finish, up to ``grace`` seconds (``--drain-seconds``);
        the admin listener closes last so probes and metrics see the drain; then the runtime
        (resources, state store, upstream client) closes.
        """
        self.runtime.draining = True
        servers, self._servers = self._servers, []
        traffic, admin_side = servers[:2], servers[2:]
        for tcp, _ in traffic:
            tcp.close()
        await ws_session.shutdown(self.runtime)  # WebSockets close (1001) and run $disconnect
        await asyncio.gather(*(web_server.shutdown(grace) for _, web_server in traffic))
        for tcp, _ in traffic:
            await tcp.wait_closed()
        for tcp, web_server in admin_side:
            tcp.close()
            await web_server.shutdown(1.0)
            await tcp.wait_closed()
        await self.runtime.close()
