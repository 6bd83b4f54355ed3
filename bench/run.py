"""Throughput and latency of Propylon's proxy path against the references that frame it.

One run starts every target, then drives each with ``wrk`` in interleaved rounds (the order
rotates each round, so drift in the machine spreads over all targets instead of biasing one):

  backend          nginx answering ``ok`` by itself: the most a request can cost nothing
  nginx-proxy      nginx as a keep-alive reverse proxy in front of the backend: the bar to compare with
  aiohttp-hello    an aiohttp server answering ``ok``: the ceiling of the Python runtime on one core
  mini-aiohttp     bench/mini_proxy.py over upstream_aiohttp (aiohttp server + ClientSession)
  mini-pool        bench/mini_proxy.py over upstream_pool (aiohttp server + httptools pool)
  propylon-aiohttp ``propylon serve -f bench/manifests`` with PROPYLON_UPSTREAM=aiohttp
  propylon-pool    the same with PROPYLON_UPSTREAM=pool
  propylon-aiohttp-server the same with ``--http-server aiohttp`` (aiohttp's web.Server on the public
                   listener instead of the default, fast_server.py on httptools)
  propylon-jwt     propylon-pool's server, on a route with a JWT authorizer (RS256), one token
                   sent again and again: warm, answered from the verified-token cache
  propylon-jwt-cold  the same route with a new token on every request (bench/jwt_tokens.py):
                   every request pays a full signature check
  propylon-keyed   the pool serve's "full policy" route: API key, plan per-route and per-key throttles,
                   stage throttle and quota (bench/manifests/keyed.yaml), limits in memory
  propylon-keyed-redis  the same with ``--redis``: a redis-server on the load core decides every request
  propylon-validated the pool server, POST /bench/validated: a JSON body (bench/validated.lua)
                   validated against a draft-4 model before it is proxied
  propylon-posted  the same POST to POST /bench/posted, a route without validation
  propylon-templated the same POST to POST /templated/orders: validated as above, then a request
                   template renders the upstream body of an HTTP integration (bench/manifests/templated.yaml)
  propylon-function the same server (pool), GET /bench/fn: a FUNCTION route to bench/function_handler.py
                   under ``python -m propylon.function`` (on the load core, like the backend)
  propylon-cached  the same server (pool), GET /cached/hello: a stage-cached route, every request a hit
                   (bench/manifests/cached.yaml)
  propylon-full    the same server, POST /full/order: the "full policy" route (API key, plan throttles
                   and quota in memory, JWT with a warm token, the body validated, access log on;
                   bench/manifests/keyed.yaml), against propylon-posted (the same POST, no policy)
  propylon-catchall  the same server, GET /any/bench/hello on an ``ANY /{proxy+}`` route
                   (bench/manifests/catchall.yaml), beside propylon-pool's literal ``GET /hello``
  propylon-routes10, propylon-routes10k  ``serve`` of bench/scale.py's manifests alone: 1 Api x 10
                   routes, and 1,000 Apis x 10 routes on 1,000 Stages; both ask a literal route of the
                   last Stage. propylon-routes10k's RSS is read after its rounds
  propylon-workers2  propylon-pool's manifests under ``serve --workers 2`` (its private redis-server),
                   on both cores (so it shares core 1 with wrk and the backend): reported, no target
  propylon-*@REV   with ``--baseline REV``: the same, running the code (proxy/, operator/, propylon/) of REV
                   on the same manifests, tokens, JWKS and backend (every propylon-* target but
                   propylon-workers2; propylon-keyed-redis@REV keeps its counters in its own redis db)
  client-aiohttp   no server at all: bench/client_loop.py drives upstream_aiohttp against the backend
  client-pool      the same for upstream_pool: the client's own cost, without any server in front

The target under test runs on core 0; wrk and the proxied backend share core 1 (``taskset``;
for client-*, the client loop is the target and wrk is not used). The
backend is nginx rather than aiohttp because it is the cheapest server at hand: on the shared core
it must take as little as possible from wrk, and it must never be what limits a proxy.

Besides wrk's figures, each measurement records the CPU time the target's own processes used
(from /proc), as CPU microseconds per request. The machine is shared with other work, which moves
requests/s a lot from one round to the next; CPU per request moves much less, so "requests/s per
core" (its inverse) is the figure to compare implementations by.

Besides the wrk rounds (issue 15): the real compiler is timed in this process on 1,000 Apis x 10
routes before anything starts; after the rounds, the added latency of propylon-pool over the
direct backend is measured at one connection (wrk -t1 -c1, p50) and open loop (bench/open_loop.py,
p99) in interleaved rounds, each at half the peak wrk measures on propylon-pool just before it.
Beside each open-loop p99 the run prints what a p99 on a shared machine needs to be read: the
rate achieved (below the rate asked: the target fell behind and the figure is its queue's), the
target's run-queue wait and busy share (schedstat), the hypervisor's steal, the generator's own
lateness, and propylon-pool's loop watch (PROPYLON_LOOP_WATCH: the loop held by its own work,
GC); a round is flagged ``starved``, ``overloaded`` or ``generator late``, and the TARGETS row
says how many rounds were. ``--latency-fifo`` runs those rounds' processes under SCHED_FIFO: what
the gateway adds when it has its core (bench/RESULTS.md, "The open-loop tail").

Output: a table on stdout (req/s, p50, p99, ratios; medians over rounds), then the TARGETS table
(bench/goals.py: each issue-15 target, its figure, the bar, PASS/FAIL), and in bench/out/ a JSON
file of every raw measurement and a PNG chart (the targets in its lower panel). Processes are
started in their own sessions and killed at the end, on error too. See bench/RESULTS.md for
figures and how to read them.

WebSocket soak (idle connections, @connections broadcast): its own script, bench/ws_soak.py.

Run: ``python bench/run.py`` (about 8 minutes with the defaults: 20 targets x 3 rounds x 5 s, then
the latency rounds; the aiohttp-upstream targets only when asked for); ``--help`` for options.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import goals  # bench/ is on sys.path when run as a script
import scale

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
TARGET_CPU = "0"
LOAD_CPU = "1"

REFERENCES = ("backend", "nginx-proxy", "aiohttp-hello")
KEY_HEADER = "x-api-key: bench-api-key-0123456789abcdef"  # bench/manifests/keyed.yaml
KEYED = ("propylon-keyed", "propylon-keyed-redis")
# propylon-workers2 takes both cores: no --baseline twin.
NO_TWIN = ("propylon-workers2",)
# The scale targets (bench/scale.py): (Apis, routes per Api) each serves.
SCALE = {"propylon-routes10": (1, 10), "propylon-routes10k": (1000, 10)}


@dataclasses.dataclass
class Target:
    name: str
    url: str = ""
    skipped: str = ""  # why it could not be measured
    client_loop: str = ""  # for client-*: the upstream kind bench/client_loop.py drives
    wrk_args: list[str] = dataclasses.field(default_factory=list)  # before the URL (-H, -s)
    cold_tokens: Path | None = None  # propylon-jwt-cold: the token file its wrk script reads
    cold_count: int = 0  # how many tokens that file holds
    ready_url: str = ""  # where readiness is polled, when the target URL itself needs credentials
    headers: tuple[str, ...] = ()  # extra request headers for wrk and the readiness poll ("Name: value")


@dataclasses.dataclass
class Measurement:
    target: str
    round: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_us_per_request: float | None = None  # CPU time of the target's processes per request


# -- processes -------------------------------------------------------------------------------


class Processes:
    """Every process the run starts, each in its own session so its whole group can be killed."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.port_of_backend = 0  # the proxied backend's port, once started
        self.loop_watch: Path | None = None  # propylon-pool's loop-watch lines (PROPYLON_LOOP_WATCH)

    def start(self, name: str, argv: list[str], *, cpu: str, env: dict[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()
        self.running.append((name, proc))

    def cpu_seconds(self, name: str) -> float:
        """User + system CPU time used so far by every live process of ``name``'s session
        (nginx: master and worker), read from /proc."""
        sessions = {p.pid for n, p in self.running if n == name and p.poll() is None}
        ticks = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            # After the ")" that closes the command name: state is field 3, so field n is fields[n - 3].
            if int(fields[6 - 3]) in sessions:
                ticks += int(fields[14 - 3]) + int(fields[15 - 3])
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_mib(self, name: str) -> list[float]:
        """Resident set size of each live process of ``name``'s session that runs Python (a
        ``--workers`` parent and its workers; not a private redis-server), MiB."""
        sessions = {p.pid for n, p in self.running if n == name and p.poll() is None}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[6 - 3]) in sessions and "python" in stat.split("(", 1)[1].split(")")[0]:
                    found.append(scale.rss_mib(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # the process ended meanwhile
        return found

    def pids(self, name: str) -> list[int]:
        """Every live process of ``name``'s session (nginx: master and worker)."""
        sessions = {p.pid for n, p in self.running if n == name and p.poll() is None}
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[6 - 3]) in sessions:
                        found.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue  # the process ended meanwhile
        return found

    def set_fifo(self, name: str) -> None:
        """Every thread of ``name``'s session under SCHED_FIFO (``--latency-fifo``)."""
        for pid in self.pids(name):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):  # the thread ended meanwhile
                    fifo(int(task.name))

    def alive(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p in self.running)

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        for _, proc in self.running:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for _, proc in self.running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.running.clear()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port the kernel handed out (bind to 0)
    is in that range, and between this check and the server's own bind any outgoing connection
    (a readiness poll, a gateway's upstream or JWKS fetch) may be given it: the 2026-12-04 run
    lost nginx-proxy so ("bind() ... Address already in use")."""
    low = _ephemeral_low()
    if low > 11000:
        for _ in range(200):
            port = random.randrange(10000, low - 1)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, procs: Processes, name: str, timeout: float = 20.0, headers: tuple[str, ...] = ()) -> str:
    """Poll until ``url`` answers 200; return "" when ready, else why not."""
    request = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not procs.alive(name):
            return f"exited: {procs.log_tail(name) or 'no output'}"
        try:
            with urllib.request.urlopen(request, timeout=1) as resp:
                if resp.status == 200:
                    return ""
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    return f"not ready after {timeout:g}s: {last}"


# -- nginx ------------------------------------------------------------------------------------


def nginx_conf(prefix: Path, port: int, proxy_to: int | None) -> Path:
    if proxy_to is None:
        location = "default_type text/plain; return 200 'ok';"
        upstream = ""
    else:
        # keepalive + HTTP/1.1 + an empty Connection header: nginx reuses upstream connections.
        location = 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
        upstream = f"upstream backend {{ server 127.0.0.1:{proxy_to}; keepalive 64; keepalive_requests 1000000; }}"
    conf = f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    {upstream}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ {location} }}
    }}
}}
"""
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def start_nginx(procs: Processes, name: str, work: Path, port: int, cpu: str, proxy_to: int | None = None) -> None:
    conf = nginx_conf(work / name, port, proxy_to)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs.start(name, [nginx, "-p", str(work / name), "-c", str(conf), "-g", "daemon off;"], cpu=cpu)


# -- propylon ---------------------------------------------------------------------------------


def propylon_manifests(work: Path, backend_port: int, jwks_port: int | None = None, function_port: int = 9000) -> Path:
    """bench/manifests with the backend's (and function's) port put into the Stage variables (and
    the bench JWKS server's port into the Authorizer's jwksUri)."""
    folder = work / "manifests"
    folder.mkdir(exist_ok=True)
    for source in sorted((BENCH / "manifests").glob("*.yaml")):
        text = re.sub(r'backendPort: "\d+"', f'backendPort: "{backend_port}"', source.read_text())
        text = re.sub(r'functionPort: "\d+"', f'functionPort: "{function_port}"', text)
        if jwks_port is not None:
            text = text.replace("127.0.0.1:8082/", f"127.0.0.1:{jwks_port}/")
        (folder / source.name).write_text(text)
    return folder


def baseline_tree(work: Path, rev: str) -> str:
    """The code (``proxy/``, ``operator/``, ``propylon/``) as it was at git revision ``rev``,
    extracted under ``work``; the returned PYTHONPATH entries go first, so its packages shadow
    the working tree's (the whole program, since ``serve`` and the data plane change together)."""
    archive = subprocess.run(
        ["git", "-C", str(BENCH.parent), "archive", "--format=tar", rev, "proxy", "operator", "propylon", "crds"],
        capture_output=True,
        check=True,
    ).stdout
    folder = work / f"baseline-{re.sub(r'[^A-Za-z0-9._-]', '_', rev)}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return os.pathsep.join(str(p) for p in (folder / "proxy", folder / "operator", folder))


def has_baseline_twin(name: str) -> bool:
    """Which targets ``--baseline`` doubles: every propylon-* one but those in NO_TWIN."""
    return name.startswith("propylon-") and "@" not in name and name not in NO_TWIN


def _knows_gateway_rate(proxy_code: str) -> bool:
    """Whether a ``baseline_tree``'s ``serve`` takes ``--gateway-rate`` (so a twin runs with the
    same gateway-wide limit as its target; trees from before the flag keep their default)."""
    flags = Path(proxy_code.split(os.pathsep)[-1]) / "propylon" / "commands" / "shared_flags.py"
    return flags.is_file() and "--gateway-rate" in flags.read_text()


def split_name(name: str) -> tuple[str, str | None]:
    """``propylon-pool@HEAD~3`` -> (``propylon-pool``, ``HEAD~3``); no ``@``: no revision."""
    base, _, rev = name.partition("@")
    return base, rev or None


def start_propylon(
    procs: Processes,
    name: str,
    work: Path,
    port: int,
    backend_port: int,
    proxy_code: str | None = None,
    jwks_port: int | None = None,
    function_port: int = 9000,
    serve_args: tuple[str, ...] = (),
    manifests: Path | None = None,
    cpu: str = TARGET_CPU,
    watch: Path | None = None,
) -> None:
    """``propylon serve`` with the upstream client chosen by PROPYLON_UPSTREAM and, while serve
    has it, its (hidden) ``--upstream`` flag; without the flag if this serve does not know it.
    ``proxy_code``: a ``baseline_tree`` to run the code from instead of the working tree;
    ``serve_args``: more ``serve`` options (``--redis`` for propylon-keyed-redis);
    ``manifests``: a folder to serve instead of bench/manifests (the scale targets);
    ``watch``: where its loop watch writes (``propylon_proxy.loop_watch``; None: no watch)."""
    # Every target but propylon-aiohttp runs the default server (the pool); only the route differs.
    kind = "aiohttp" if split_name(name)[0] == "propylon-aiohttp" else "pool"
    if manifests is None:
        manifests = propylon_manifests(work, backend_port, jwks_port, function_port)
    # -P: never the working directory first on sys.path, so a baseline tree really shadows this one.
    argv = [sys.executable, "-P", "-m", "propylon", "serve", "-f", str(manifests), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--internal-port", str(free_port()), "--admin-port", str(free_port()), *serve_args]
    if proxy_code is None or _knows_gateway_rate(proxy_code):
        # bench measures the proxy, not the default gateway-wide limit (older trees lack the flags)
        argv += ["--gateway-rate", "1000000", "--gateway-burst", "100000"]
    env = {"PROPYLON_UPSTREAM": kind}
    if watch is not None:
        env["PROPYLON_LOOP_WATCH"] = str(watch)
    if proxy_code is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (proxy_code, os.environ.get("PYTHONPATH")) if p)
    procs.start(name, [*argv, "--upstream", kind], cpu=cpu, env=env)
    deadline = time.monotonic() + 10
    while procs.alive(name) and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    if not procs.alive(name) and "unrecognized arguments: --upstream" in procs.log_tail(name):
        procs.start(name, argv, cpu=cpu, env=env)


# -- wrk --------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    extra: list[str] | None = None,
    script_args: list[str] | None = None,
    raw: list[str] | None = None,
    headers: tuple[str, ...] = (),
    prefix: list[str] | None = None,
) -> dict[str, float]:
    """One wrk run. ``extra`` goes before the URL (``-H``, ``-s``), ``script_args`` after it (a
    script's arguments); ``headers``: request headers (``-H`` each); ``raw``, when given, receives
    wrk's whole output; ``prefix``: a command wrk runs under (``chrt -f 1``, ``--latency-fifo``)."""
    argv = [
        *(prefix or []),
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
    ]
    for header in headers:
        argv += ["-H", header]
    argv += [*(extra or []), url, *(script_args or [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0 or "Requests/sec" not in done.stdout:
        raise RuntimeError(f"wrk failed on {url}: {done.stdout}{done.stderr}")
    if raw is not None:
        raw.append(done.stdout)
    return parse_wrk(done.stdout)


def parse_wrk(out: str) -> dict[str, float]:
    """The figures of one ``wrk --latency`` report."""
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in socket_errors.groups()) if socket_errors else 0,
    }


# -- the run ----------------------------------------------------------------------------------


def start_targets(procs: Processes, work: Path, wanted: list[str], cold_tokens: int = 1) -> list[Target]:
    backend_port = free_port()  # the proxied backend, on the load core
    procs.port_of_backend = backend_port
    start_nginx(procs, "upstream-backend", work, backend_port, LOAD_CPU)
    problem = wait_ready(f"http://127.0.0.1:{backend_port}/hello", procs, "upstream-backend")
    if problem:
        raise RuntimeError(f"backend nginx did not start: {problem}")

    python = sys.executable
    targets: list[Target] = []
    jwt: dict[str, Any] | None = None
    jwks_port: int | None = None
    if any(split_name(n)[0].startswith(("propylon-jwt", "propylon-full")) for n in wanted):
        import jwt_tokens  # bench/ is on sys.path when run as a script

        cold = sum(split_name(n)[0] == "propylon-jwt-cold" for n in wanted)  # a twin sends its own tokens
        signed = cold_tokens * cold if cold else 1
        print(f"  signing {signed:,} RS256 tokens for the JWT targets", file=sys.stderr)
        jwt = jwt_tokens.make(work / "jwt", signed)
        jwks_port = free_port()
        argv = [python, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1", "--directory", str(work / "jwt")]
        procs.start("jwks", argv, cpu=LOAD_CPU)
        problem = wait_ready(f"http://127.0.0.1:{jwks_port}/jwks.json", procs, "jwks")
        if problem:
            raise RuntimeError(f"the bench JWKS server did not start: {problem}")
    function_port = 9000  # the manifests' default: nothing listens there unless propylon-function is wanted
    if any(split_name(n)[0] == "propylon-function" for n in wanted):
        function_port = free_port()
        argv = [python, "-m", "propylon.function", "function_handler.handler", "--path", str(BENCH)]
        procs.start("function", [*argv, "--host", "127.0.0.1", "--port", str(function_port)], cpu=LOAD_CPU)
    redis_args: tuple[str, ...] = ()
    if any(split_name(n)[0] == "propylon-keyed-redis" for n in wanted):
        redis_port = free_port()
        redis_argv = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        procs.start("redis", [*redis_argv, "--appendonly", "no"], cpu=LOAD_CPU)
        time.sleep(0.5)
        redis_args = ("--redis", f"redis://127.0.0.1:{redis_port}")
    for name in wanted:
        base, rev = split_name(name)
        port = free_port()
        path = "/hello"
        if name == "backend":
            start_nginx(procs, name, work, port, TARGET_CPU)
        elif name == "nginx-proxy":
            start_nginx(procs, name, work, port, TARGET_CPU, proxy_to=backend_port)
        elif name == "aiohttp-hello":
            procs.start(name, [python, str(BENCH / "hello_aiohttp.py"), "--port", str(port)], cpu=TARGET_CPU)
        elif name.startswith("mini-"):
            argv = [python, str(BENCH / "mini_proxy.py"), "--port", str(port), "--backend-port", str(backend_port)]
            procs.start(name, [*argv, "--upstream", name.removeprefix("mini-")], cpu=TARGET_CPU)
        elif name.startswith("client-"):
            targets.append(
                Target(name, f"http://127.0.0.1:{backend_port}/hello", client_loop=name.removeprefix("client-"))
            )
            continue
        elif name.startswith("propylon-"):
            code = baseline_tree(work, rev) if rev else None
            # A baseline twin counts in its own redis db: the two gateways never share a bucket.
            serve_args = (redis_args[0], f"{redis_args[1]}/{1 if rev else 0}") if base == "propylon-keyed-redis" else ()
            serve_args = ("--http-server", "aiohttp") if base == "propylon-aiohttp-server" else serve_args
            serve_args = ("--workers", "2") if base == "propylon-workers2" else serve_args
            folder = None
            if base in SCALE:
                apis, routes = SCALE[base]
                folder = scale.write_manifests(work / f"scale-{name}", apis, routes, backend_port)
                path = scale.probe_path(apis)
            cpu = f"{TARGET_CPU},{LOAD_CPU}" if base == "propylon-workers2" else TARGET_CPU
            watch = None
            if name == "propylon-pool":  # the latency rounds' target: 200 probes/s, ~0.1 % of its CPU
                watch = procs.loop_watch = work / "loop-watch.jsonl"
            start_propylon(
                procs, name, work, port, backend_port, code, jwks_port, function_port, serve_args, folder, cpu, watch
            )
            path = "/keyed/hello" if base in KEYED else "/bench/fn" if base == "propylon-function" else "/bench/hello"
            path = "/cached/hello" if base == "propylon-cached" else path
            path = {"propylon-validated": "/bench/validated", "propylon-posted": "/bench/posted"}.get(base, path)
            path = {"propylon-full": "/full/order", "propylon-catchall": "/any/bench/hello"}.get(base, path)
            path = scale.probe_path(SCALE[base][0]) if base in SCALE else path
            path = "/templated/orders" if base == "propylon-templated" else path
        else:
            raise SystemExit(f"unknown target {name}")
        target = Target(name, f"http://127.0.0.1:{port}{path}")
        if base in KEYED:
            target.headers = (KEY_HEADER,)
        if base in ("propylon-validated", "propylon-posted", "propylon-templated", "propylon-full"):
            # Ready when the plain route answers; wrk POSTs the body.
            target.ready_url = f"http://127.0.0.1:{port}/bench/hello"
            target.wrk_args = ["-s", str(BENCH / "validated.lua")]
        if base == "propylon-full" and jwt is not None:
            target.headers = (KEY_HEADER, f"Authorization: Bearer {jwt['warm']}")
        if base.startswith("propylon-jwt") and jwt is not None:
            target.ready_url, target.url = target.url, f"http://127.0.0.1:{port}/bench/jwt"
            if base == "propylon-jwt-cold":
                target.wrk_args, target.cold_tokens = ["-s", str(jwt["script"])], jwt["tokens"]
                target.cold_count = jwt["count"]
            else:
                target.wrk_args = ["-H", f"Authorization: Bearer {jwt['warm']}"]
        targets.append(target)
    for target in targets:
        if target.client_loop:
            continue
        ready_headers = () if target.ready_url else target.headers
        # The 10,000-route serve compiles first: give it the time it takes on a loaded machine.
        timeout = 60.0 if split_name(target.name)[0] in SCALE else 20.0
        target.skipped = wait_ready(
            target.ready_url or target.url, procs, target.name, timeout=timeout, headers=ready_headers
        )
        if target.skipped:
            print(f"  {target.name}: skipped ({target.skipped})", file=sys.stderr)
    return targets


def run_client_loop(target: Target, *, seconds: float, warmup: float, connections: int) -> dict[str, float | None]:
    port = target.url.split(":")[2].split("/")[0]
    argv = ["taskset", "-c", TARGET_CPU, sys.executable, str(BENCH / "client_loop.py"), "--upstream"]
    argv += [target.client_loop, "--port", port, "--seconds", str(seconds), "--warmup", str(warmup)]
    argv += ["--concurrency", str(connections)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + warmup + 60)
    if done.returncode != 0:
        raise RuntimeError(f"client loop failed: {done.stdout}{done.stderr}")
    result = json.loads(done.stdout)
    result.pop("wall_s", None)
    return result  # type: ignore[no-any-return]


def rotations(items: list[Target], rounds: int) -> Iterator[tuple[int, Target]]:
    for r in range(rounds):
        shift = r % len(items)
        for target in items[shift:] + items[:shift]:
            yield r + 1, target


def summarize(measurements: list[Measurement], names: list[str]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        rows = [m for m in measurements if m.target == name]
        if not rows:
            continue
        rps = [m.requests_per_s for m in rows]
        summary[name] = {
            "requests_per_s": statistics.median(rps),
            "requests_per_s_min": min(rps),
            "requests_per_s_max": max(rps),
            "p50_ms": statistics.median(m.p50_ms for m in rows),
            "p99_ms": statistics.median(m.p99_ms for m in rows),
            "errors": sum(m.non_2xx + m.socket_errors for m in rows),
        }
        cpu = [m.cpu_us_per_request for m in rows if m.cpu_us_per_request]
        if cpu:
            summary[name]["cpu_us_per_request"] = statistics.median(cpu)
            # What one dedicated core would serve at that cost: robust to other load on the machine.
            summary[name]["requests_per_core_s"] = 1e6 / statistics.median(cpu)
    for row in summary.values():
        for ref in REFERENCES:
            if ref in summary:
                row[f"vs_{ref}"] = row["requests_per_s"] / summary[ref]["requests_per_s"]
                if "requests_per_core_s" in row and "requests_per_core_s" in summary[ref]:
                    row[f"per_core_vs_{ref}"] = row["requests_per_core_s"] / summary[ref]["requests_per_core_s"]
    return summary


def table(summary: dict[str, dict[str, float]]) -> str:
    refs = [r for r in REFERENCES if r in summary]
    head = ["target", "req/s (median)", "min..max", "p50 ms", "p99 ms", "errors", *(f"vs {r}" for r in refs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        cells = [
            name,
            f"{row['requests_per_s']:,.0f}",
            f"{row['requests_per_s_min']:,.0f}..{row['requests_per_s_max']:,.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['errors']:.0f}",
            *(f"{row[f'vs_{r}']:.2f}x" for r in refs),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU cost of the target (its own processes only; on a shared machine this is the steadier figure):",
        "",
    ]
    head = ["target", "CPU us/request", "req/s per core", *(f"per core vs {r}" for r in refs)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        if "cpu_us_per_request" not in row:
            continue
        cells = [
            name,
            f"{row['cpu_us_per_request']:.1f}",
            f"{row['requests_per_core_s']:,.0f}",
            *(f"{row[f'per_core_vs_{r}']:.2f}x" if f"per_core_vs_{r}" in row else "-" for r in refs),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(
    summary: dict[str, dict[str, float]], path: Path, title: str, verdicts: list[dict[str, Any]] | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    rps = [summary[n]["requests_per_s"] for n in names]
    low = [summary[n]["requests_per_s"] - summary[n]["requests_per_s_min"] for n in names]
    high = [summary[n]["requests_per_s_max"] - summary[n]["requests_per_s"] for n in names]
    # grey: references; blue: proxies under test; orange: an upstream client alone (no server).
    colors = ["#7f7f7f" if n in REFERENCES else "#ff7f0e" if n.startswith("client-") else "#1f77b4" for n in names]
    rows = len(verdicts or ())
    fig = plt.figure(figsize=(16, 0.6 * len(names) + 2 + (0.45 * rows + 1.5 if rows else 0)))
    grid = fig.add_gridspec(
        2 if rows else 1, 3, height_ratios=[0.6 * len(names) + 2, 0.45 * rows + 1.5][: 2 if rows else 1]
    )
    ax1 = fig.add_subplot(grid[0, 0])
    ax3 = fig.add_subplot(grid[0, 1], sharey=ax1)
    ax2 = fig.add_subplot(grid[0, 2], sharey=ax1)
    if verdicts:
        chart_goals(fig.add_subplot(grid[1, :]), verdicts)
    ax1.barh(names, rps, xerr=[low, high], color=colors, capsize=3)
    pad = max(rps) * 0.02
    for y, name in enumerate(names):
        ax1.text(summary[name]["requests_per_s_max"] + pad, y, f"{rps[y]:,.0f}", va="center", fontsize=8)
    ax1.set_xlim(0, max(summary[n]["requests_per_s_max"] for n in names) * 1.15)
    ax1.set_xlabel("requests/s measured (median of rounds, whiskers min..max)")
    ax1.invert_yaxis()
    per_core = [summary[n].get("requests_per_core_s", 0.0) for n in names]
    ax3.barh(names, per_core, color=colors)
    for y, value in enumerate(per_core):
        ax3.text(value + max(per_core) * 0.02, y, f"{value:,.0f}", va="center", fontsize=8)
    ax3.set_xlim(0, max(per_core) * 1.2 or 1)
    ax3.set_xlabel("requests/s per core of CPU time (1 / CPU per request)")
    p50 = [summary[n]["p50_ms"] for n in names]
    p99 = [summary[n]["p99_ms"] for n in names]
    ys = range(len(names))
    ax2.barh([y - 0.2 for y in ys], p50, height=0.4, label="p50", color="#2ca02c")
    ax2.barh([y + 0.2 for y in ys], p99, height=0.4, label="p99", color="#d62728")
    ax2.set_xlabel("latency, ms")
    ax2.legend(loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"Model name:\s+(.+)", lscpu)
        model = found.group(1).strip() if found else ""
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    import aiohttp

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "nginx": nginx,
        "wrk": wrk[0] if wrk else "",
    }


# -- the latency and scaling targets (issue 15) -------------------------------------------------


def latency_phase(
    live: list[Target],
    procs: Processes,
    backend_url: str,
    *,
    rounds: int,
    seconds: float,
    connections: int,
    watch: Path | None = None,
    realtime: bool = False,
) -> dict[str, Any]:
    """Added latency of the plain route over the direct backend, two ways, in interleaved rounds:
    p50 at one connection (wrk -t1 -c1, closed loop: at one connection nothing queues), and p99
    open loop (bench/open_loop.py) at half the plain route's peak.

    On a shared machine a p99 is mostly the machine's unless shown otherwise, so each round
    (see ``open_loop_round``) measures the peak immediately before (wrk, same connections as the
    rounds) and asks for half of *that*, then reports beside the p99: the rate achieved (below
    the one asked: the target could not keep up, the figure is a queue's), the target's run-queue
    wait (schedstat: time it was runnable with no CPU), the generator's own lateness, and the
    gateway's loop watch (``propylon_proxy.loop_watch``: the loop held by its own work, GC).
    ``realtime`` (``--latency-fifo``): the backend, the gateway, wrk and the generator run under
    SCHED_FIFO for these rounds, so what is measured is the gateway, not the machine's other work."""
    plain = next((t for t in live if t.name == "propylon-pool"), None)
    if plain is None:
        return {}
    pairs = [("backend-direct", backend_url, "upstream-backend"), ("propylon-pool", plain.url, plain.name)]
    if realtime:
        for _, _, name in pairs:
            procs.set_fifo(name)
    prefix = ["chrt", "-f", "1"] if realtime else []
    one: dict[str, list[float]] = {name: [] for name, _, _ in pairs}
    opened: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in pairs}
    peaks: list[float] = []
    for r in range(rounds):
        run_wrk(plain.url, seconds=1, connections=connections, threads=2, prefix=prefix)  # warm, unmeasured
        cpu_before = procs.cpu_seconds(plain.name)
        peak = run_wrk(plain.url, seconds=2, connections=connections, threads=2, prefix=prefix)
        peak_cpu_us = (procs.cpu_seconds(plain.name) - cpu_before) * 1e6 / max(1, peak["requests"])
        peaks.append(peak["requests_per_s"])
        rate = round(peak["requests_per_s"] * 0.5)
        for name, url, proc_name in pairs[r % 2 :] + pairs[: r % 2]:
            one[name].append(run_wrk(url, seconds=seconds, connections=1, threads=1, prefix=prefix)["p50_ms"])
            o = open_loop_round(url, procs.pids(proc_name), rate, seconds, prefix)
            o["peak_per_s"], o["peak_cpu_us_per_request"] = peak["requests_per_s"], peak_cpu_us
            if name == "propylon-pool":
                o.update(watched(watch, o["window_wall_from"], seconds))
            opened[name].append(o)
            print(
                f"  latency round {r + 1} {name:15} 1 conn p50 {one[name][-1]:.3f} ms; open loop"
                f" {rate}/s (half of {peak['requests_per_s']:,.0f}/s just measured), achieved"
                f" {o['achieved_per_s']:,.0f}/s: p50 {o['p50_ms']:.2f} p99 {o['p99_ms']:.2f} max {o['max_ms']:.1f} ms;"
                f" run-queue wait {o['runqueue_share'] * 100:.0f}% of the window, busy {o['busy_share'] * 100:.0f}%,"
                f" steal {o['steal_share'] * 100:.0f}%;"
                f" generator late by p99 {o['generator_lag_p99_ms']:.2f} ms"
                f" (it waited {o['generator_runqueue_wait_ms'] / (seconds * 10):.0f}% for a CPU)"
                + (
                    f"; loop held max {o['held_max_ms']:.1f} ms, GC {o['gc_count']} x {o['gc_ms']:.1f} ms"
                    if "held_max_ms" in o
                    else ""
                )
                + (f"  [{', '.join(o['flags'])}]" if o["flags"] else ""),
                file=sys.stderr,
            )
    p50 = {name: statistics.median(v) for name, v in one.items()}
    p99 = {name: statistics.median(o["p99_ms"] for o in v) for name, v in opened.items()}
    gateway = opened["propylon-pool"]
    added = [g["p99_ms"] - d["p99_ms"] for g, d in zip(gateway, opened["backend-direct"], strict=True)]
    clean = [
        a
        for a, g, d in zip(added, gateway, opened["backend-direct"], strict=True)
        if not {"starved", "overloaded", "generator late"} & set(g["flags"]) and "generator late" not in d["flags"]
    ]
    costlier = [g["cpu_us_per_request"] / g["peak_cpu_us_per_request"] for g in gateway if g["peak_cpu_us_per_request"]]
    return {
        "added_p50_1conn_ms": p50["propylon-pool"] - p50["backend-direct"],
        "added_p99_open_loop_ms": p99["propylon-pool"] - p99["backend-direct"],
        # The same difference, per round, over only the rounds where the gateway had its core and
        # kept up (not starved, not overloaded) and the generator sent on time in both of the
        # round's measurements: what the gateway adds.
        "added_p99_open_loop_clean_ms": statistics.median(clean) if clean else None,
        "open_loop_rounds": len(gateway),
        "open_loop_clean_rounds": len(clean),
        "open_loop_starved_rounds": sum("starved" in g["flags"] for g in gateway),
        "open_loop_overloaded_rounds": sum("overloaded" in g["flags"] for g in gateway),
        "open_loop_runqueue_share": statistics.median(g["runqueue_share"] for g in gateway),
        "open_loop_busy_share": statistics.median(g["busy_share"] for g in gateway),
        "open_loop_steal_share": max(g["steal_share"] for g in gateway),
        "open_loop_generator_lag_p99_ms": statistics.median(
            o["generator_lag_p99_ms"] for v in opened.values() for o in v
        ),
        "open_loop_achieved_ratio": statistics.median(g["achieved_per_s"] / g["rate"] for g in gateway),
        "open_loop_held_max_ms": max((g.get("held_max_ms", 0.0) for g in gateway), default=0.0),
        "open_loop_gc_ms": sum(g.get("gc_ms", 0.0) for g in gateway),
        # Requests one at a time cost more than wrk's saturated batches: "half the peak" in
        # requests is more than half the core (busy_share says how much).
        "open_loop_cpu_vs_peak": statistics.median(costlier) if costlier else None,
        "open_loop_rate": statistics.median(round(p * 0.5) for p in peaks),
        "p50_1conn_ms": p50,
        "open_loop_p99_ms": p99,
        "open_loop_raw": opened,
    }


#: A round is "starved" when the target waited this share of the window for a CPU: on a 2 ms
#: budget, 5 % of a 3 s window (150 ms, in slices of a few ms each) is already the whole tail.
STARVED_SHARE = 0.05


def open_loop_round(url: str, pids: list[int], rate: int, seconds: float, prefix: list[str]) -> dict[str, Any]:
    """One bench/open_loop.py run against ``url`` (on the load core), with the run-queue wait of
    ``pids`` over its window, and the round's flags: ``overloaded`` (achieved under 97 % of the
    rate asked), ``starved`` (run-queue wait over STARVED_SHARE of the window), ``generator
    late`` (its own sends late by more than 1 ms at p99: its figures carry its lag)."""
    port, path = url.split(":")[2].split("/", 1)
    argv = [*prefix, "taskset", "-c", LOAD_CPU, sys.executable, str(BENCH / "open_loop.py"), "--port", port]
    argv += ["--path", "/" + path, "--rate", str(rate), "--seconds", str(seconds), "--connections", "16"]
    for pid in pids:
        argv += ["--pid", str(pid)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"open loop failed: {done.stdout}{done.stderr}")
    o: dict[str, Any] = json.loads(done.stdout)
    window_ms = seconds * 1000
    o["runqueue_share"] = o["target_runqueue_wait_ms"] / window_ms
    o["busy_share"] = o["target_cpu_window_ms"] / window_ms
    o["cpu_us_per_request"] = o["target_cpu_window_ms"] * 1000 / max(1.0, o["requests"])
    o["steal_share"] = max(o["steal_ms_per_cpu"], default=0.0) / window_ms  # the hypervisor's, worst vCPU
    o["flags"] = [
        flag
        for flag, raised in (
            ("overloaded", o["achieved_per_s"] < 0.97 * rate),
            ("starved", o["runqueue_share"] > STARVED_SHARE),
            ("generator late", o["generator_lag_p99_ms"] > 1.0),
        )
        if raised
    ]
    return o


def watched(path: Path | None, wall_from: float, seconds: float) -> dict[str, Any]:
    """The gateway's loop-watch lines (``propylon_proxy.loop_watch``) of one window, summed."""
    if path is None or not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    inside = [w for w in lines if wall_from < w["t"] <= wall_from + seconds + 0.25]
    if not inside:
        return {}
    return {
        "held_max_ms": max(w["held_max_ms"] for w in inside),
        "loop_lag_max_ms": max(w["lag_max_ms"] for w in inside),
        "gc_count": sum(g[0] for w in inside for g in w["gc"].values()),
        "gc_ms": sum(g[1] for w in inside for g in w["gc"].values()),
        "watch_runqueue_wait_ms": sum(w["runqueue_wait_ms"] for w in inside),
    }


def fifo(tid: int) -> None:
    """Thread ``tid`` under SCHED_FIFO at the lowest real-time priority (needs CAP_SYS_NICE). It
    then runs whenever it is runnable, ahead of every ordinary process; the kernel still keeps
    5 % of each core for those (sched_rt_runtime_us), and the gateway is at most ~90 % busy here."""
    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))


def compile_phase() -> dict[str, float]:
    """The real compiler on 1,000 Apis x 10 routes, in this process (bench/scale.py)."""
    print("  compiling 1,000 Apis x 10 routes (3 times)", file=sys.stderr)
    timed = scale.compile_seconds(1000, 10)
    return {"compile_1000x10_s": timed["median_s"], "compile_1000x10_best_s": timed["best_s"]}


def chart_goals(ax: Any, rows: list[dict[str, Any]]) -> None:
    """Each goal as its figure relative to its bar (1.0 = at the bar, right of it = met), with
    the figure and the bar written beside it; reported-only goals in grey, at their ratio."""
    names, widths, colors, labels = [], [], [], []
    for row in rows:
        value, target = row["figure"], row["target"]
        names.append(row["goal"] if len(row["goal"]) < 70 else row["goal"][:67] + "...")
        if value is None:
            widths.append(0.0)
            colors.append("#cccccc")
            labels.append("n/a")
            continue
        shown = f"{value:.2f}{'x' if row['unit'] == 'x' else ' ' + row['unit']}"
        if target is None:
            # A reported ratio is drawn at its value; a reported share or time only written (drawn
            # at its value, 33 % or 9 ms would squeeze every ratio's bar to nothing).
            widths.append(value if row["unit"] == "x" else 0.0)
            colors.append("#7f7f7f")
            labels.append(f"{shown} (reported)")
            continue
        bar = float(target.split()[1].rstrip("xmsMiB"))
        better_high = target.startswith(">")
        widths.append(value / bar if better_high else bar / value if value > 0 else 10.0)
        colors.append("#2ca02c" if row["verdict"] == "PASS" else "#d62728")
        labels.append(f"{shown}  (target {target}: {row['verdict']})")
    ax.barh(names, widths, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    for y, label in enumerate(labels):
        ax.text(widths[y] + 0.02, y, label, va="center", fontsize=8)
    ax.set_xlim(0, max([*widths, 1.0]) * 1.6)
    ax.set_xlabel("issue 15 targets: figure relative to its target (right of the line = met)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)


ALL_TARGETS = [
    "backend",
    "nginx-proxy",
    "aiohttp-hello",
    "mini-aiohttp",
    "mini-pool",
    "propylon-aiohttp",
    "propylon-pool",
    "propylon-aiohttp-server",
    "propylon-jwt",
    "propylon-jwt-cold",
    "propylon-function",
    "propylon-cached",
    "propylon-posted",
    "propylon-validated",
    "propylon-templated",
    "propylon-keyed",
    "propylon-keyed-redis",
    "propylon-full",
    "propylon-catchall",
    "propylon-routes10",
    "propylon-routes10k",
    "propylon-workers2",
    "client-aiohttp",
    "client-pool",
]
# The default run leaves out the aiohttp upstream client's targets (not serve's default since
# 1ccfa43; ``--targets`` still runs them), so that every issue-15 target fits in 10 minutes.
DEFAULT_TARGETS = [t for t in ALL_TARGETS if t not in ("mini-aiohttp", "propylon-aiohttp", "client-aiohttp")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated (default: %(default)s), from: {','.join(ALL_TARGETS)}",
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=3.0, help="per round of each latency measurement (0: none)"
    )
    parser.add_argument(
        "--latency-fifo",
        action="store_true",
        help="run the latency rounds' backend, gateway, wrk and open-loop generator under SCHED_FIFO (needs "
        "CAP_SYS_NICE): on a shared machine, what the gateway adds when it has its core rather than what the "
        "machine's other work adds (for about a minute it takes core 0 from everything else). Off by default",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip timing the compiler on 1,000 Apis x 10")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4, help="measured seconds per target and round")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before each measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure each propylon-* target (but propylon-workers2) with the code (proxy/, operator/, "
        "propylon/) of git revision REV, as propylon-<kind>@REV, in the same interleaved rounds: a before/after "
        "that machine load cannot skew",
    )
    args = parser.parse_args()
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.baseline:
        # Each baseline twin right after its target, so the tables read as before/after pairs.
        wanted = [twin for t in wanted for twin in ([t, f"{t}@{args.baseline}"] if has_baseline_twin(t) else [t])]
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("warning: fewer than 2 cores; core pinning cannot separate load from target", file=sys.stderr)

    # Processes run in their own sessions, so a terminal's Ctrl-C does not reach them; turn SIGTERM
    # into an exception too, so that the cleanup below runs however the run is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    command = " ".join([Path(sys.executable).name, "bench/run.py", *sys.argv[1:]])
    started = time.monotonic()
    load_before = os.getloadavg()
    measurements: list[Measurement] = []
    extra: dict[str, Any] = {} if args.no_compile else compile_phase()  # before any load: a quiet core
    tokens_reused = 0  # propylon-jwt-cold requests that resent one of their own run's tokens (still cold)
    with tempfile.TemporaryDirectory(prefix="propylon-bench-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        procs = Processes(work / "logs")
        try:
            print(f"starting targets: {', '.join(wanted)}", file=sys.stderr)
            # Enough for ~4,000 requests/s through every run without a token sent twice; faster,
            # the wrk script goes on from the file's start, still cold (bench/jwt_tokens.py).
            cold_tokens = 4000 * (args.seconds + args.warmup) * args.rounds
            targets = start_targets(procs, work, wanted, cold_tokens)
            token_cursor = 0
            live = [t for t in targets if not t.skipped]
            for round_no, target in rotations(live, args.rounds):
                if target.client_loop:
                    result = run_client_loop(
                        target, seconds=args.seconds, warmup=args.warmup, connections=args.connections
                    )
                else:

                    def wrk(seconds: float, target: Target = target) -> dict[str, float]:
                        nonlocal token_cursor, tokens_reused
                        raw: list[str] = []
                        script_args = None
                        if target.cold_tokens is not None:
                            # Past the end, on from the start: every other token comes first.
                            offset = token_cursor % max(1, target.cold_count)
                            script_args = [str(target.cold_tokens), str(offset), str(args.threads)]
                        figures = run_wrk(
                            target.url,
                            seconds=seconds,
                            connections=args.connections,
                            threads=args.threads,
                            extra=target.wrk_args,
                            script_args=script_args,
                            raw=raw,
                            headers=target.headers,
                        )
                        if target.cold_tokens is not None:
                            import jwt_tokens

                            used, reused = jwt_tokens.parse_used(raw[0])
                            token_cursor += used * args.threads
                            tokens_reused += reused
                        return figures

                    if args.warmup > 0:
                        wrk(args.warmup)
                    cpu_before = procs.cpu_seconds(target.name)
                    result = dict[str, float | None](wrk(args.seconds))
                    cpu = procs.cpu_seconds(target.name) - cpu_before
                    requests = result["requests"]
                    result["cpu_us_per_request"] = cpu * 1e6 / requests if requests else None
                m = Measurement(target=target.name, round=round_no, **result)  # type: ignore[arg-type]
                measurements.append(m)
                print(
                    f"  round {round_no} {target.name:17} {m.requests_per_s:10,.0f} req/s"
                    f"  p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms"
                    f"  {m.cpu_us_per_request or 0:7.1f} CPU us/req"
                    + (f"  errors {m.non_2xx + m.socket_errors}" if m.non_2xx + m.socket_errors else ""),
                    file=sys.stderr,
                )
            for name in SCALE.keys() & {t.name for t in live}:
                rss = procs.rss_mib(name)  # after its rounds: routes used, pools and caches warm
                extra[f"rss_{name}_mib"] = max(rss) if rss else None
            if "propylon-routes10k" in {t.name for t in live} and extra.get("rss_propylon-routes10k_mib"):
                extra["rss_10k_mib"] = extra["rss_propylon-routes10k_mib"]
            if args.latency_seconds > 0:
                backend_url = f"http://127.0.0.1:{procs.port_of_backend}/hello"
                extra.update(
                    latency_phase(
                        live,
                        procs,
                        backend_url,
                        rounds=args.rounds,
                        seconds=args.latency_seconds,
                        connections=args.connections,
                        watch=procs.loop_watch,
                        realtime=args.latency_fifo,
                    )
                )
        finally:
            procs.stop_all()

    summary = summarize(measurements, [t.name for t in targets if not t.skipped])
    scalars = {k: float(v) for k, v in extra.items() if isinstance(v, int | float)}
    per_round: dict[str, dict[int, float]] = {}
    for m in measurements:
        if m.cpu_us_per_request:
            per_round.setdefault(m.target, {})[m.round] = m.cpu_us_per_request
    figures = goals.Figures(summary=summary, extra=scalars, rounds=per_round)
    verdicts = goals.evaluate(figures)
    # The same ratios on the baseline twins: a before/after of every goal in one run.
    twin_verdicts = goals.evaluate(figures, args.baseline) if args.baseline else []
    info = machine()
    title = (
        f"Propylon bench {stamp}: {info['nproc']} cores, {info['cpu']}; wrk -t{args.threads} -c{args.connections} "
        f"{args.seconds:g}s x {args.rounds} rounds; target on core {TARGET_CPU}, wrk+backend on core {LOAD_CPU}"
    )
    skipped = {t.name: t.skipped for t in targets if t.skipped}
    report = {
        "date": stamp,
        "command": command,
        "machine": info,
        "settings": vars(args),
        "skipped": skipped,
        "summary": summary,
        "measurements": [dataclasses.asdict(m) for m in measurements],
        "elapsed_s": round(time.monotonic() - started, 1),
        "jwt_cold_tokens_reused": tokens_reused,
        "targets": verdicts,  # issue 15's goals: figure, bar, verdict
        "baseline_targets": twin_verdicts,  # the same goals on the --baseline twins
        "extra": extra,
        # The machine is shared: a high load average before the run means noisy figures.
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    json_path = OUT / f"bench-{stamp}.json"
    png_path = OUT / f"bench-{stamp}.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    if summary:
        chart(summary, png_path, title, verdicts)
        shutil.copyfile(png_path, OUT / "latest.png")
    shutil.copyfile(json_path, OUT / "latest.json")

    print(title)
    print()
    print(table(summary))
    print("\nTARGETS (issue 15; ratios per core = inverse CPU per request, medians of the rounds):\n")
    print(goals.table(verdicts))
    if twin_verdicts:
        print(f"\nTHE SAME on the baseline twins (@{args.baseline}, the code of that revision):\n")
        print(goals.table(twin_verdicts))
    for name, why in skipped.items():
        print(f"\nskipped {name}: {why}")
    if tokens_reused:
        print(
            f"\nnote: propylon-jwt-cold resent {tokens_reused} tokens within one wrk run, each after every"
            " other token of the file (more than the gateway's token cache holds: still cold)"
        )
    print(f"\nload average before/after (1, 5, 15 min): {load_before} / {report['loadavg_after']}")
    print(f"\nraw results: {json_path}\nchart: {png_path}\nelapsed: {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
