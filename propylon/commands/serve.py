"""`propylon serve -f PATH ...`: the whole gateway from manifest files, no cluster needed.

This is the only place that wires the compiler to the data plane: manifests are loaded and
compiled here, and the proxy only ever sees the resulting snapshot. With ``--watch`` the files
are polled (no extra dependency) and recompiled; a broken edit is reported on stderr and never
replaces what was serving (the compiler's ``last_good`` rule, per object; ``LastGood`` here adds
the per-file part).

stdout carries only the access log (one JSON line per request); everything for humans —
diagnostics, the startup line, reload notices — goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from propylon.commands import event_loops, private_redis, shared_flags, validate, workers
from propylon_compiler import compiler, diagnostics, last_good, manifests
from propylon_config import model
from propylon_proxy import gateway, gc_tuning, limit_stores, log_writer, settings, upstreams

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    validate.add_file_arguments(parser)  # -f and --allow-cross-namespace, as validate and render take them
    parser.add_argument("--host", default="127.0.0.1", help="address all listeners bind (default 127.0.0.1)")
    parser.add_argument("--port", type=shared_flags.port, default=8080, help="public listener (default 8080)")
    parser.add_argument(
        "--internal-port", type=shared_flags.port, default=8081, help="in-cluster listener, PRIVATE stages too"
    )
    parser.add_argument(
        "--admin-port", type=shared_flags.port, default=9090, help="/healthz, /readyz, /metrics, /admin/*"
    )
    shared_flags.add_redis_arguments(parser, store="url", environment=False)
    shared_flags.add_trusted_proxies(parser)
    shared_flags.add_gateway_throttle(parser)
    shared_flags.add_slow_clients(parser, environment=False)
    shared_flags.add_drain_seconds(parser, signals="SIGTERM or Ctrl-C")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the ports (above 1: --redis, or a private redis-server when installed)",
    )
    parser.add_argument("--watch", action="store_true", help="reload when the files change")
    parser.add_argument(
        "--admin-token-file", metavar="FILE", help="bearer token for /admin/* (or PROPYLON_ADMIN_TOKEN)"
    )
    parser.add_argument(
        "--http-server",
        choices=settings.HTTP_SERVERS,
        default=settings.http_server_from_env(),
        help="the public listener's HTTP/1.1 server (or PROPYLON_HTTP_SERVER; default %(default)s); "
        "WebSocket upgrades, the internal and admin listeners always run aiohttp",
    )
    shared_flags.add_event_loop(parser)
    parser.add_argument("--upstream", choices=upstreams.KINDS, default="pool", help=argparse.SUPPRESS)
    parser.add_argument("--poll-interval", type=float, default=0.5, help=argparse.SUPPRESS)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- loading and compiling -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """One compile of the files: what to serve, and what to tell the user."""

    snapshot: model.GatewayConfig
    diagnostics: tuple[diagnostics.Diagnostic, ...]
    unreadable: bool  # a file could not be read or parsed
    any_valid: bool  # at least one object is in the snapshot (some of its routes may fail closed)
    kept: tuple[str, ...]  # objects served from their last good version, for the reload notice


class LastGood:
    """``serve``'s memory between reloads (DESIGN.md §8 "Broken objects").

    Per object, the compiler's ``last_good`` rule decides (the same function the operator
    calls). Per file, one thing only ``serve`` has: a file that no longer parses keeps all the
    documents it had. At startup nothing is remembered, so broken objects are simply left out.
    """

    def __init__(self) -> None:
        self._memory = last_good.Memory()
        self._files: dict[str, tuple[manifests.Document, ...]] = {}

    def compile(self, paths: Sequence[str], options: compiler.CompileOptions) -> Loaded:
        loaded = manifests.load_paths(paths)
        unreadable_files = {d.origin.file for d in loaded.diagnostics}
        documents = [d for d in loaded.documents if d.origin.file not in unreadable_files]
        kept: list[str] = []
        for file in sorted(unreadable_files):
            previous = self._files.get(file, ())
            documents.extend(previous)
            kept.extend(f"{d.kind} {d.namespace}/{d.name}" for d in previous)
        outcome = last_good.compile_keeping_last_good(documents, self._memory, options=options)
        self._memory = outcome.memory
        kept.extend(f"{k[0]} {k[1]}/{k[2]}" for k in sorted(outcome.substituted))
        for file in {d.origin.file for d in loaded.documents} - unreadable_files:
            self._files[file] = tuple(d for d in loaded.documents if d.origin.file == file)
        result = outcome.result
        return Loaded(
            snapshot=result.snapshot,
            diagnostics=tuple(dict.fromkeys((*loaded.diagnostics, *outcome.reported()))),
            unreadable=bool(loaded.diagnostics),
            any_valid=any(s.accepted for s in result.objects),
            kept=tuple(dict.fromkeys(kept)),
        )


def _fingerprint(paths: Sequence[str]) -> str:
    """A hash of every file's name and content: cheap for manifests, and immune to mtime granularity."""
    digest = hashlib.sha256()
    for display, path in manifests.expand_paths(paths):
        digest.update(display.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


# --- running ----------------------------------------------------------------------------------


def _describe(snapshot: model.GatewayConfig) -> list[str]:
    lines = []
    for stage in snapshot.stages:
        hosts = ",".join(stage.hosts) or "*"
        lines.append(
            f"  stage {stage.id} ({stage.endpoint.value}) at {stage.base_path} on {hosts}: "
            f"{len(stage.routes)} route{'s' if len(stage.routes) != 1 else ''}"
        )
    return lines


def _admin_token(args: argparse.Namespace) -> str | None:
    if args.admin_token_file:
        return Path(args.admin_token_file).read_text().strip() or None
    return os.environ.get("PROPYLON_ADMIN_TOKEN") or None


async def _watch(
    args: argparse.Namespace,
    memory: LastGood,
    gw: gateway.Gateway,
    options: compiler.CompileOptions,
    seen: str,
    say: Callable[[str], None] = _say,
) -> None:
    """Poll the files; ``seen`` is the fingerprint taken before the first load, so a file that
    appears (or changes) at any moment after that load started is picked up on the next poll.
    With ``--workers`` every worker watches (and compiles) for itself; only worker 0 ``say``s."""
    while True:
        await asyncio.sleep(args.poll_interval)
        current = await asyncio.to_thread(_fingerprint, args.paths)
        if current == seen:
            continue
        seen = current
        loaded = await asyncio.to_thread(memory.compile, args.paths, options)
        for diagnostic in loaded.diagnostics:
            say(str(diagnostic))
        if loaded.kept:
            say(f"propylon: kept the last good version of: {', '.join(loaded.kept)}")
        previous = gw.holder.current
        if previous is not None and previous.version == loaded.snapshot.version:
            say("propylon: files changed, served config unchanged")
            continue
        try:
            gw.swap(loaded.snapshot)
        except Exception as exc:  # a plan that does not build must not end the watch
            keeping = previous.version if previous is not None else "nothing"
            problem = f"{type(exc).__name__}: {exc}"
            say(f"propylon: could not serve config {loaded.snapshot.version} ({problem}); still serving {keeping}")
            continue
        say(f"propylon: reloaded, config {loaded.snapshot.version}")
        for line in _describe(loaded.snapshot):
            say(line)


async def _serve(
    args: argparse.Namespace,
    memory: LastGood,
    first: Loaded,
    seen: str,
    proxy_settings: settings.ProxySettings,
    token: str | None,
    options: compiler.CompileOptions,
    store_url: str | None = None,
    worker: int | None = None,
    ready: Callable[[], None] | None = None,
    channel: str | None = None,
) -> int:
    """One gateway. ``worker`` is its index under ``--workers`` (None: the only process): it then
    shares the traffic ports, only worker 0 has the admin listener and talks, and ``ready`` tells
    the parent it listens (the parent prints the startup line). ``channel`` is the workers'
    private folder: there each other worker serves its admin handler on a unix socket, for
    worker 0's listener to relay flushes and gather metrics (``Gateway.start``)."""
    say = _say if not worker else _quiet
    store = await limit_stores.open_store(
        store_url, cluster=args.redis_cluster, timeout=shared_flags.redis_timeout(args), say=say
    )
    gw = gateway.Gateway(proxy_settings, admin_token=token, api_key_secret=options.api_key_secret, store=store)
    gw.swap(first.snapshot)
    siblings: list[str] = []
    admin_socket: str | None = None
    if worker is not None and channel is not None:  # worker 0 speaks for the others (Gateway.start)
        if worker == 0:
            siblings = [_sibling_socket(channel, index) for index in range(1, args.workers)]
        else:
            admin_socket = _sibling_socket(channel, worker)
    try:
        addresses = await gw.start(
            args.host,
            args.port,
            args.internal_port,
            None if worker else args.admin_port,  # workers above 0: admin_socket
            reuse_port=worker is not None,
            admin_siblings=siblings,
            admin_socket=admin_socket,
        )
    except OSError as exc:
        _say(f"propylon: cannot listen: {exc}")
        await gw.stop()
        return 1
    gc_tuning.settle()  # start-up's objects out of the collector's scans (issue 15)
    if ready is not None:
        ready()
    else:
        _say_started(args, addresses, first.snapshot)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch(args, memory, gw, options, seen, say)) if args.watch else None
    try:
        await stop.wait()
    finally:
        if worker is None:
            _say(f"propylon: stopping (running requests get up to {args.drain_seconds:g} s)")
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await gw.stop(grace=args.drain_seconds)
        if worker is not None and channel is not None:  # also when the parent was killed
            with contextlib.suppress(OSError):
                os.unlink(_sibling_socket(channel, worker))
            with contextlib.suppress(OSError):
                os.rmdir(channel)  # the last worker out removes the folder
    return 0


def _sibling_socket(channel: str, index: int) -> str:
    return os.path.join(channel, f"worker-{index}.sock")


def _quiet(message: str) -> None:
    """Workers other than 0 keep quiet about what worker 0 already says."""


def _say_started(args: argparse.Namespace, addresses: gateway.Addresses, snapshot: model.GatewayConfig) -> None:
    urls = addresses.urls()
    workers_note = f", {args.workers} workers" if args.workers > 1 else ""
    loop = event_loops.resolve(args.loop)  # run() refused a loop that is not installed
    _say(
        f"propylon serve: public {urls['public']}  internal {urls['internal']}  admin {urls['admin']}  "
        f"(config {snapshot.version}, {loop}{workers_note}{', watching files' if args.watch else ''})"
    )
    for line in _describe(snapshot) or ["  no stages"]:
        _say(line)


def _check_workers(args: argparse.Namespace) -> str | None:
    """Why ``--workers`` cannot work with these arguments, or None."""
    if args.workers < 1:
        return "--workers must be at least 1"
    if args.workers == 1:
        return None
    if 0 in (args.port, args.internal_port, args.admin_port):
        return "--workers above 1 needs fixed ports (0 would give every worker a port of its own)"
    if not args.redis and private_redis.find() is None:
        return (
            "--workers above 1 needs a shared store so that limits and quotas stay exact across workers: "
            "give --redis URL, or install redis-server (serve then starts a private one)"
        )
    return None


def _serve_workers(
    args: argparse.Namespace,
    memory: LastGood,
    first: Loaded,
    seen: str,
    proxy_settings: settings.ProxySettings,
    token: str | None,
    options: compiler.CompileOptions,
) -> int:
    """``--workers N``: a shared store (``--redis`` or a private redis-server), then N workers."""
    private = None
    store_url = args.redis
    if not store_url:
        executable = private_redis.find()
        assert executable is not None  # _check_workers refused otherwise
        private = private_redis.PrivateRedis(executable)
        try:
            private.wait_ready()
        except RuntimeError as exc:
            _say(f"propylon: cannot start the private {exc}")
            private.stop()
            return 1
        _say(f"propylon: started a private redis-server on {private.socket_path} for {args.workers} workers")
    channel = tempfile.mkdtemp(prefix="propylon-workers-")  # mode 0700: the workers' admin sockets
    try:
        shared = store_url or (private.url if private is not None else None)
        proxy_settings = dataclasses.replace(proxy_settings, redis_url=shared)  # WebSockets across workers too

        # The workers share stdout: one lock keeps their access-log batches whole (log_writer).
        stream_lock = multiprocessing.get_context("fork").Lock()

        def run_worker(index: int, ready: Callable[[], None]) -> int:
            log_writer.share_stream_lock(stream_lock)
            main = _serve(args, memory, first, seen, proxy_settings, token, options, shared, index, ready, channel)
            return event_loops.run(main, args.loop)

        addresses = gateway.Addresses(args.host, args.port, args.internal_port, args.admin_port)
        supervisor = workers.Supervisor(args.workers, run_worker, args.drain_seconds, _say)
        return supervisor.run(lambda: _say_started(args, addresses, first.snapshot))
    finally:
        shutil.rmtree(channel, ignore_errors=True)
        if private is not None:
            private.stop()


def run(args: argparse.Namespace) -> int:
    refusal = _check_workers(args)
    if refusal is not None:
        _say(f"propylon: {refusal}")
        return EXIT_BAD_INPUT
    if args.redis_cluster and not args.redis:
        _say("propylon: --redis-cluster needs --redis URL (any node of the cluster)")
        return EXIT_BAD_INPUT
    if (refusal := shared_flags.redis_cluster_refusal(args.redis, args.redis_cluster)) is not None:
        _say(f"propylon: {refusal}")
        return EXIT_BAD_INPUT
    try:
        event_loops.resolve(args.loop)
    except event_loops.LoopUnavailable as exc:
        _say(f"propylon: {exc}")
        return EXIT_BAD_INPUT
    trusted = settings.parse_networks(args.trusted_proxies)  # shared_flags checked it while parsing
    try:
        token = _admin_token(args)
    except OSError as exc:
        _say(f"propylon: --admin-token-file: {exc}")
        return EXIT_BAD_INPUT
    # serve compiles and serves in one process, so the secret that seals HS* JWT secrets into
    # the snapshot and the key-hashing secret can be made here, fresh, and never leave this
    # process (a snapshot from another run matches no key and opens no secret, by design).
    sealing_secret = secrets.token_bytes(32)
    options = compiler.CompileOptions(
        allow_cross_namespace=args.allow_cross_namespace,
        load_order_wins=True,
        sealing_secret=sealing_secret,
        api_key_secret=secrets.token_bytes(32),
        gateway_throttle=shared_flags.gateway_throttle(args),
    )
    memory = LastGood()
    # Taken before the first load, never after: a file written while the gateway starts must
    # count as a change, not as what was already served.
    seen = _fingerprint(args.paths)
    first = memory.compile(args.paths, options)
    for diagnostic in first.diagnostics:
        _say(str(diagnostic))
    if first.unreadable:
        _say("propylon: a file could not be read or parsed; not starting")
        return EXIT_BAD_INPUT
    if not first.any_valid:
        _say("propylon: no valid object to serve; not starting")
        return EXIT_BAD_INPUT
    proxy_settings = settings.ProxySettings(
        listener=shared_flags.listener_settings(args),
        trusted_proxies=trusted,
        upstream_kind=args.upstream,
        http_server=args.http_server,
        sealing_secret=sealing_secret,
        redis_failure=args.redis_failure,
        redis_url=args.redis,
        redis_cluster=args.redis_cluster,
        ws_registry_ttl_seconds=shared_flags.ws_registry_ttl(args),
    )
    if args.workers > 1:
        return _serve_workers(args, memory, first, seen, proxy_settings, token, options)
    return event_loops.run(_serve(args, memory, first, seen, proxy_settings, token, options, args.redis), args.loop)
