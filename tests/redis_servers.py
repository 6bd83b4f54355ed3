"""Real ``redis-server`` processes for tests: one on loopback, or a Redis Cluster of several.

Nothing is mocked: a test gets a server it can stop, restart, freeze (SIGSTOP: it keeps
accepting connections and never answers) and thaw. Data lives in a temporary folder; no
persistence beyond the process unless a test restarts it with the same folder.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.ports import free_port

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def require_redis() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are not installed (.ci/run installs them)")


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis wants it at most 55535."""
    return free_port(also_free=10000)


class RedisServer:
    def __init__(self, folder: pathlib.Path, *, port: int | None = None, cluster: bool = False) -> None:
        self.folder = folder
        self.port = port or (cluster_port() if cluster else free_port())
        self.cluster = cluster
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.cli("PING", check=False).strip() == "PONG":
                return self
            assert self.process.poll() is None, (self.folder / "redis.log").read_text()
            time.sleep(0.02)
        raise AssertionError(f"redis-server on {self.port} did not answer")

    def cli(self, *args: str, check: bool = True) -> str:
        assert REDIS_CLI is not None
        done = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """Keep the socket open but never answer: the kernel still accepts connections."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


class RedisCluster:
    """``size`` masters on loopback, joined with ``redis-cli --cluster create``."""

    def __init__(self, folder: pathlib.Path, size: int = 3) -> None:
        self.nodes = [RedisServer(folder / f"node{i}", cluster=True) for i in range(size)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        assert REDIS_CLI is not None
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in node.cli("CLUSTER", "INFO", check=False) for node in self.nodes):
                return self
            time.sleep(0.05)
        raise AssertionError("the cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def redis_server(folder: pathlib.Path) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(folder)
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def redis_cluster(folder: pathlib.Path, size: int = 3) -> Iterator[RedisCluster]:
    require_redis()
    cluster = RedisCluster(folder, size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()  # also the nodes that started when a later one did not
