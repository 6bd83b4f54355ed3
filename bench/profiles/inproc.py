"""The plain route's Python cost per request, in process, without sockets (issue 15, perf-server2).

Run: ``python bench/profiles/inproc.py [--requests N] [--rounds R] [--conns C] [--headers K]
[--route hello|jwt|keyed|full|posted] [--cold N] [--redis URL]``.

``propylon-pool``'s path exactly as ``propylon serve`` runs it (bench/manifests compiled, the
same gateway-wide limit bench/run.py sets, fast_server's ``HttpConnection`` and the pooled
upstream client), but both transports are fakes: the client's request is fed to
``data_received``, and a backend write is answered with nginx's canned ``ok`` response on the
next loop iteration (as epoll would hand it over). ``--route keyed`` is propylon-keyed's
``/keyed/hello`` with its API key; ``--redis redis://127.0.0.1:PORT/0`` puts its limits in that
real redis-server (propylon-keyed-redis: the Redis socket is the one real one); ``--route full``
is propylon-full's ``POST /full/order`` (API key, plan throttles and quota, a warm JWT, the Order
body validated, the access log on: its lines go to stdout, so send stdout to /dev/null) and
``--route posted`` propylon-posted's same POST without any of it; ``--uvloop``
runs on uvloop, as ``serve`` does by default. What is left is what the gateway's own code costs
per request: parsing, the pipeline, the Task and the futures, the loop's hops; not the
``send``/``recv``/``epoll_wait`` system calls. Prints process-CPU µs per request, best of R
rounds, on stderr: a figure to compare two revisions with, not a bench figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if "--tree" in sys.argv:  # another checkout's code (``--tree /work/main``: the baseline)
    ROOT = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()
for sub in ("proxy", "operator", "."):
    sys.path.insert(0, str(ROOT / sub))

from propylon_compiler import compiler, manifests  # noqa: E402
from propylon_config import model  # noqa: E402
from propylon_proxy import fast_server, gateway, handling, redis_store, upstream_pool  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: jwt_tokens
from aiohttp import web  # noqa: E402

_NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Thu, 03 Dec 2026 18:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)


class _Backend(asyncio.Transport):
    """A backend socket: every request written is answered on the next loop iteration."""

    def __init__(self, conn: upstream_pool._Connection) -> None:
        super().__init__()
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._loop.call_soon(self._conn.data_received, _NGINX)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class _Client(asyncio.Transport):
    """The client's socket: counts responses (one write per response on this route)."""

    def __init__(self) -> None:
        super().__init__()
        self.done: asyncio.Future[None] | None = None
        self.last = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.last = bytes(data)
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _connect(self: upstream_pool.PooledUpstream, key: upstream_pool.PoolKey) -> upstream_pool._Connection:
    conn = upstream_pool._Connection(self, key)
    conn.connection_made(_Backend(conn))
    return conn


_KEY_SECRET = b"inproc-key-hashing-secret"
_API_KEY = b"x-api-key: bench-api-key-0123456789abcdef\r\n"  # bench/manifests/keyed.yaml
_ORDER = b'{"item": "green tea, loose leaf", "quantity": 3, "tags": ["a", "b", "c", "d", "e", "f", "g", "h"]}'


def _snapshot(work: Path, jwks_port: int) -> model.GatewayConfig:
    folder = work / "manifests"
    folder.mkdir()
    for source in (ROOT / "bench" / "manifests").glob("*.yaml"):
        text = source.read_text().replace("${stageVariables.backendPort}", "8081")
        (folder / source.name).write_text(text.replace("127.0.0.1:8082/", f"127.0.0.1:{jwks_port}/"))
    loaded = manifests.load_paths([str(folder)])
    throttle = model.Throttle(rate_limit=1_000_000, burst_limit=100_000)
    options = compiler.CompileOptions(gateway_throttle=throttle, api_key_secret=_KEY_SECRET)
    return compiler.compile(loaded.documents, options=options).snapshot


async def _jwks_server(folder: Path) -> tuple[web.AppRunner, int]:
    """The bench key's JWKS on a loopback port (fetched once, when the plan is swapped in)."""
    app = web.Application()
    app.router.add_get("/jwks.json", lambda _: web.FileResponse(folder / "jwks.json"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    return runner, int(server.sockets[0].getsockname()[1])


def _profiler() -> Any:
    """A cProfile profiler. This folder's profile.py shadows the standard library's ``profile``,
    which cProfile imports, so it is imported with this folder off the path."""
    here = str(Path(__file__).resolve().parent)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    sys.modules.pop("profile", None)
    try:
        import cProfile
    finally:
        sys.path[:] = saved
    return cProfile.Profile()


async def _run(
    requests: int,
    rounds: int,
    headers: int,
    conns: int,
    route: str,
    cold: int,
    redis: str | None,
    profile: str | None = None,
) -> list[float]:
    upstream_pool.PooledUpstream._connect = _connect  # type: ignore[method-assign]
    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    tokens: list[bytes] = []
    jwks_runner = None
    jwks_port = 8082
    if route in ("jwt", "full"):
        import jwt_tokens

        made = jwt_tokens.make(work / "jwt", max(1, cold))
        jwks_runner, jwks_port = await _jwks_server(work / "jwt")
        tokens = [made["warm"].encode()] if cold == 0 else made["tokens"].read_bytes().split()
    snapshot = _snapshot(work, jwks_port)
    store = redis_store.RedisStore(redis) if redis else None
    gw = gateway.Gateway(store=store, api_key_secret=_KEY_SECRET)
    gw.swap(snapshot)
    await asyncio.sleep(0.5)  # the key set's prefetch
    pipeline = handling.Pipeline(gw.runtime, gw.holder, "public")
    server = fast_server.FastServer(pipeline, gw.settings.listener, None, fallback=None)  # type: ignore[arg-type]
    pairs = []
    for _ in range(conns):
        conn, client = server(), _Client()
        conn.connection_made(client)
        pairs.append((conn, client))
    extra = b"".join(b"X-Header-%d: value-%d\r\n" % (i, i) for i in range(headers))
    path = {"keyed": b"/keyed/hello", "full": b"/full/order"}.get(route, b"/bench/" + route.encode())
    method, body = (b"POST", _ORDER) if route in ("full", "posted") else (b"GET", b"")
    head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" % (method, path) + extra
    head += _API_KEY if route in ("keyed", "full") else b""
    if body:
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    raws = [head + b"Authorization: Bearer " + t + b"\r\n\r\n" + body for t in tokens] or [head + b"\r\n" + body]
    sent = 0
    loop = asyncio.get_running_loop()

    async def one() -> None:
        # One request on each connection, all fed in the same iteration (wrk's batches).
        nonlocal sent
        waits = []
        for conn, client in pairs:
            client.done = loop.create_future()
            conn.data_received(raws[sent % len(raws)])
            sent += 1
            waits.append(client.done)
        for wait in waits:
            await wait

    for _ in range(2000 // conns):  # warm: the pool's connections, caches, the plan's series
        await one()
    last = pairs[0][1].last
    assert last.startswith(b"HTTP/1.1 200"), last[:200]
    gc.collect()
    gc.freeze()
    best: list[float] = []
    profiler = _profiler() if profile else None
    if profiler is not None:
        profiler.enable()
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests // conns):
            await one()
        best.append((time.process_time() - start) / (requests // conns * conns) * 1e6)
    if profiler is not None:  # the measured rounds only: no imports, compile or warm-up in it
        profiler.disable()
        profiler.dump_stats(str(profile))
    if jwks_runner is not None:
        await jwks_runner.cleanup()
    if store is not None:
        await store.close()
    tmp.cleanup()
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", help="run this checkout's proxy code instead (e.g. /work/main)")
    parser.add_argument("--conns", type=int, default=16, help="client connections, one request each per batch")
    parser.add_argument("--headers", type=int, default=0, help="extra request headers beyond Host (wrk sends none)")
    routes = ["hello", "jwt", "keyed", "full", "posted"]
    what = "GET /bench/<route> (keyed: /keyed/hello; full: POST /full/order; posted: POST /bench/posted)"
    parser.add_argument("--route", default="hello", choices=routes, help=what)
    parser.add_argument("--cold", type=int, default=0, help="jwt: cycle over this many new tokens (0: one warm token)")
    parser.add_argument("--redis", help="keyed: the limits in this redis-server (redis://127.0.0.1:PORT/0)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (serve's --loop auto) instead of asyncio")
    parser.add_argument("--cprofile", help="write cProfile stats of the measured rounds to this file (pstats)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run = _run(args.requests, args.rounds, args.headers, args.conns, args.route, args.cold, args.redis, args.cprofile)
    figures = asyncio.run(run)
    rounds = " ".join(f"{f:.2f}" for f in figures)
    print(f"µs/request best {min(figures):.2f}  rounds {rounds}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
