"""WebSocket soak: many idle connections on one `propylon serve`, then a broadcast through @connections.

What it measures (issue 14's bench):
  memory per connection   the serve process's RSS (from /proc) after ``--connections`` clients
                          connected and went idle, minus its RSS with one connection, divided by
                          the number of connections
  messages/s delivered    messages the clients received per second while the script POSTs to
                          ``/<base>/@connections/<id>`` for every connection, round after round,
                          for ``--seconds``; each message is counted when a client has read it
  CPU µs per message      the serve process's CPU time (utime + stime from /proc) over that phase,
                          per delivered message: on a shared machine the steadier figure

The gateway runs on core 0 and this script (the clients, the $connect backend that learns the
connection ids, the POSTing loop) on core 1 when the machine has two cores (``sched_setaffinity``).
The Api is one WebSocket stage: $connect (HTTP, to this script: it records
``x-propylon-connection-id``) and a MOCK $default; connections stay idle (no pings).

Run: ``python bench/ws_soak.py`` (about a minute); ``--help`` for options. It checks
``ulimit -n`` first (both processes need one descriptor per connection, plus some) and raises
the soft limit to the hard one when that is enough. Results: a summary on stdout, and with
``--json PATH`` the raw figures. See bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from run import free_port  # bench/ is on sys.path when run as a script: ports below the ephemeral range
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: soak, namespace: bench}}
spec:
  protocol: WEBSOCKET
  routes:
    - routeKey: "$connect"
      integration: {{type: HTTP, url: "{backend}/connect"}}
    - routeKey: "$default"
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: soak, namespace: bench}}
spec: {{apiRef: soak, basePath: /soak}}
"""



def check_descriptors(needed: int) -> int:
    """The soft RLIMIT_NOFILE, raised to the hard one if needed; exits when even that is short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        sys.exit(f"ws_soak: ulimit -n is {soft}, {needed} needed; raise it (ulimit -n {needed}) or use fewer")
    return soft


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ids: list[str] = []  # connection ids in the order $connect saw them
        self.received = 0
        self.port, self.internal, self.admin = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    async def _connect_backend(self, request: web.Request) -> web.Response:
        self.ids.append(request.headers["x-propylon-connection-id"])
        return web.Response(text="")

    def start_gateway(self, folder: Path, log: Path) -> None:
        argv = [sys.executable, "-m", "propylon", "serve", "-f", str(folder), "--port", str(self.port)]
        argv += ["--internal-port", str(self.internal), "--admin-port", str(self.admin)]
        two_cores = (os.cpu_count() or 1) >= 2
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if two_cores else None,
            )
        if two_cores:
            os.sched_setaffinity(0, {1})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError("serve did not listen")

    def stop_gateway(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    async def _reader(self, client: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for _ in client:
                self.received += 1

    async def _open(self, count: int, url: str) -> list[ClientConnection]:
        clients: list[ClientConnection] = []
        for start in range(0, count, 100):  # in batches: a burst of 2,000 handshakes tests the backlog
            batch = await asyncio.gather(
                *(connect(url, ping_interval=None, open_timeout=60) for _ in range(min(100, count - start)))
            )
            clients.extend(batch)
        return clients

    async def run(self, folder: Path, log: Path) -> dict[str, Any]:
        args = self.args
        app = web.Application()
        app.router.add_post("/connect", self._connect_backend)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        backend_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", backend_port).start()
        (folder / "soak.yaml").write_text(MANIFESTS.format(backend=f"http://127.0.0.1:{backend_port}"))
        await asyncio.to_thread(self.start_gateway, folder, log)
        assert self.process is not None
        pid = self.process.pid
        url = f"ws://127.0.0.1:{self.port}/soak"
        clients: list[ClientConnection] = []
        readers: list[asyncio.Task[None]] = []
        try:
            clients = await self._open(1, url)
            readers.append(asyncio.create_task(self._reader(clients[0])))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
                await self._broadcast(http, 1.0)  # warm: the first plan, the management path, buffers
                await asyncio.sleep(1.0)
                rss_one = rss_bytes(pid)
                opened = await self._open(args.connections, url)
                clients.extend(opened)
                readers.extend(asyncio.create_task(self._reader(c)) for c in opened)
                await asyncio.sleep(args.settle)  # idle: whatever the gateway frees after the handshakes
                rss_all = rss_bytes(pid)
                assert len(self.ids) == args.connections + 1, "every connection passed $connect"
                self.received = 0
                cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
                posted, refused = await self._broadcast(http, args.seconds)
                await self._drain(posted)
                cpu_used, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
            delivered = self.received
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.close()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.to_thread(self.stop_gateway)
            await runner.cleanup()
        return {
            "connections": args.connections,
            "rss_one_connection_bytes": rss_one,
            "rss_all_connections_bytes": rss_all,
            "bytes_per_connection": (rss_all - rss_one) / args.connections,
            "broadcast_seconds": wall,
            "posted": posted,
            "refused": refused,
            "delivered": delivered,
            "messages_per_second": delivered / wall,
            "gateway_cpu_seconds": cpu_used,
            "gateway_cpu_us_per_message": cpu_used * 1e6 / delivered if delivered else None,
            "load_average": os.getloadavg(),
        }

    async def _broadcast(self, http: aiohttp.ClientSession, seconds: float) -> tuple[int, int]:
        """POST one message to every connection, round after round, until ``seconds`` passed."""
        base = f"http://127.0.0.1:{self.internal}/soak/@connections/"
        posted = refused = 0
        deadline = time.monotonic() + seconds
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=self.args.concurrency * 2)

        async def worker() -> None:
            nonlocal posted, refused
            while True:
                connection_id = await queue.get()
                async with http.post(base + connection_id, data=b"tick") as answer:
                    await answer.read()
                    if answer.status == 200:
                        posted += 1
                    else:
                        refused += 1
                queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(self.args.concurrency)]
        try:
            while time.monotonic() < deadline:
                for connection_id in list(self.ids):
                    await queue.put(connection_id)
                    if time.monotonic() >= deadline:
                        break
            await queue.join()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return posted, refused

    async def _drain(self, posted: int) -> None:
        """Until every accepted POST reached its client (or nothing moves for 5 s)."""
        last, still = -1, time.monotonic()
        while self.received < posted and time.monotonic() - still < 5:
            if self.received != last:
                last, still = self.received, time.monotonic()
            await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the broadcast phase")
    parser.add_argument("--concurrency", type=int, default=32, help="@connections POSTs in flight")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before RSS is read")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)
    limit = check_descriptors(args.connections + args.concurrency + 256)
    print(f"ulimit -n: {limit} (needed {args.connections + args.concurrency + 256})")
    with tempfile.TemporaryDirectory(prefix="ws-soak-") as tmp:
        folder = Path(tmp) / "manifests"
        folder.mkdir()
        result = asyncio.run(Soak(args).run(folder, Path(tmp) / "serve.stderr"))
    print(
        f"{result['connections']} idle connections: RSS {result['rss_one_connection_bytes'] / 2**20:.1f} MiB with one, "
        f"{result['rss_all_connections_bytes'] / 2**20:.1f} MiB with all: "
        f"{result['bytes_per_connection'] / 1024:.1f} KiB per connection"
    )
    print(
        f"broadcast: {result['posted']} POSTs accepted ({result['refused']} refused), {result['delivered']} delivered "
        f"in {result['broadcast_seconds']:.1f} s: {result['messages_per_second']:.0f} messages/s; gateway CPU "
        f"{result['gateway_cpu_us_per_message']:.0f} µs per message; load {result['load_average']}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
