"""`propylon proxy --config-secret NS/NAME`: the data plane as the operator deploys it.

Flags become a ``propylon_proxy.gateway.Gateway`` (the same listeners as ``propylon serve``) fed
by ``propylon_proxy.kube.sources.SecretSource`` instead of files. The listeners open at once;
``/readyz`` answers ready only once a first snapshot is served, which is what keeps a new pod
out of its Service until it has a config. Heavy imports happen in ``run`` so ``propylon --help``
stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from propylon.commands import shared_flags
from propylon_proxy import settings  # light: dataclasses and ipaddress only


def _secret_ref(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return namespace, name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-secret",
        required=True,
        type=_secret_ref,
        metavar="NS/NAME",
        help="the Secret holding the compiled snapshot (key snapshot.json or snapshot.json.gz)",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    parser.add_argument("--host", default="0.0.0.0", help="address of all three listeners (default 0.0.0.0)")
    parser.add_argument("--port", type=shared_flags.port, default=8080, help="public listener")
    parser.add_argument(
        "--internal-port", type=shared_flags.port, default=8081, help="in-cluster listener (PRIVATE stages)"
    )
    parser.add_argument(
        "--admin-port", type=shared_flags.port, default=9090, help="/healthz, /readyz, /metrics, /admin/*"
    )
    parser.add_argument("--admin-token-file", default=None, help="bearer token for /admin/* (or PROPYLON_ADMIN_TOKEN)")
    shared_flags.add_trusted_proxies(parser)
    shared_flags.add_slow_clients(parser, environment=True)
    shared_flags.add_drain_seconds(parser, signals="SIGTERM")
    parser.add_argument(
        "--replica-name",
        default=None,
        help="name in this replica's status Lease (default: $POD_NAME, then the hostname)",
    )
    shared_flags.add_redis_arguments(parser, store="url", environment=True)
    parser.add_argument(
        "--http-server",
        choices=settings.HTTP_SERVERS,
        default=settings.http_server_from_env(),
        help="the public listener's HTTP/1.1 server (or PROPYLON_HTTP_SERVER; default %(default)s)",
    )
    shared_flags.add_event_loop(parser)
    parser.add_argument("--log-level", default=os.environ.get("PROPYLON_LOG_LEVEL", "INFO"))


def run(args: argparse.Namespace) -> int:
    import logging

    from propylon.commands import event_loops

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The gateway writes its own JSON access log; aiohttp's would repeat every request in another format.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        event_loops.resolve(args.loop)
    except event_loops.LoopUnavailable as error:
        print(f"propylon proxy: {error}", file=sys.stderr)
        return 2
    if (refusal := shared_flags.redis_cluster_refusal(args.redis, args.redis_cluster)) is not None:
        print(f"propylon proxy: {refusal}", file=sys.stderr)
        return 2
    try:
        return event_loops.run(_serve(args), args.loop)
    except KeyboardInterrupt:
        return 0


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _admin_token(args: argparse.Namespace) -> str | None:
    if args.admin_token_file:
        with open(args.admin_token_file, encoding="utf-8") as handle:
            return handle.read().strip() or None
    return os.environ.get("PROPYLON_ADMIN_TOKEN") or None


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    import sys

    from propylon.commands import event_loops
    from propylon_proxy import gateway, gc_tuning, limit_stores
    from propylon_proxy.kube import clients, sources

    log = logging.getLogger("propylon.proxy")
    namespace, name = args.config_secret
    trusted = settings.parse_networks(args.trusted_proxies)  # shared_flags checked it while parsing
    try:
        api_client = clients.api_client(args.kubeconfig)
    except Exception as error:  # a missing or unreadable kubeconfig: say so, no traceback
        print(f"propylon proxy: cannot configure the Kubernetes client: {error}", file=sys.stderr)
        return 2

    store = await limit_stores.open_store(
        args.redis, cluster=args.redis_cluster, timeout=shared_flags.redis_timeout(args), say=log.info
    )
    gw = gateway.Gateway(
        settings.ProxySettings(
            listener=shared_flags.listener_settings(args),
            trusted_proxies=trusted,
            http_server=args.http_server,
            redis_failure=args.redis_failure,
            redis_url=args.redis,  # WebSocket registry across Pods
            redis_cluster=args.redis_cluster,
            ws_registry_ttl_seconds=shared_flags.ws_registry_ttl(args),
        ),
        admin_token=_admin_token(args),
        store=store,
    )

    def use_key_secret(secret: bytes | None) -> None:
        gw.runtime.api_key_secret = secret

    def use_sealing_secret(secret: bytes | None) -> None:
        # Plans read it when built, and the source tells it before the snapshot it came with.
        gw.runtime.settings = dataclasses.replace(gw.runtime.settings, sealing_secret=secret)

    source = sources.SecretSource(
        api_client=api_client,
        namespace=namespace,
        name=name,
        apply=gw.swap,
        replica=args.replica_name,
        key_secret=use_key_secret,
        sealing_secret=use_sealing_secret,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        addresses = await gw.start(args.host, args.port, args.internal_port, args.admin_port)
    except OSError as error:
        print(f"propylon proxy: cannot listen: {error}", file=sys.stderr)
        return 2
    gc_tuning.settle()  # start-up's objects out of the collector's scans (issue 15)
    urls = addresses.urls()
    log.info(
        "listening: public %s, internal %s, admin %s; config from Secret %s/%s; event loop %s",
        urls["public"],
        urls["internal"],
        urls["admin"],
        namespace,
        name,
        event_loops.resolve(args.loop),
    )
    # POD_IP comes from the downward API in a pod; a proxy run by hand is reached on loopback.
    source.lease.admin_url = f"http://{_url_host(os.environ.get('POD_IP') or '127.0.0.1')}:{addresses.admin_port}"
    source.start()
    try:
        await stop.wait()
    finally:
        log.info("stopping: draining for up to %s s", args.drain_seconds)
        gw.runtime.draining = True  # /readyz says so at once
        await source.close()  # gives the Lease back first: this replica stops counting as serving
        await gw.stop(grace=args.drain_seconds)
        api_client.close()
    return 0
