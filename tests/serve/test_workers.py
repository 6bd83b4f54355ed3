"""`propylon serve --workers 2` as a user runs it: real processes, a real private redis-server.

Two workers share the public port (SO_REUSEPORT) and one store, so 400 concurrent requests on
fresh connections admit exactly a key's quota of 100, and the admin port's metrics count all
of them (tests/serve/test_audit_workers.py: both workers serve, and a flush reaches both).
SIGTERM stops the parent, every worker and the private redis-server, and removes its folder;
a worker that dies stops ``serve`` (exit 1); with no ``--redis`` and no redis-server
installed, ``serve --workers 2`` refuses to start, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import redis_servers
from tests.serve.test_usage_plans import KEYS, PROPYLON, _get, write_manifests

pytestmark = pytest.mark.timeout(180)


class Workers:
    """One `propylon serve --workers N` process tree."""

    def __init__(self, folder: Path, logs: Path, *extra: str, workers: int = 2, stdout_pipe: bool = False) -> None:
        self.port, self.admin = redis_servers.free_port(), redis_servers.free_port()
        self.stderr_path = logs / "serve.stderr"
        command = [*PROPYLON, "serve", "-f", str(folder), "--workers", str(workers), "--port", str(self.port)]
        command += ["--internal-port", str(redis_servers.free_port()), "--admin-port", str(self.admin), *extra]
        with (logs / "serve.stdout").open("ab") as out, self.stderr_path.open("ab") as err:
            stdout = subprocess.PIPE if stdout_pipe else out  # a pipe: what a container runtime reads
            self.process = subprocess.Popen(command, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while "propylon serve: public" not in self.stderr():  # printed once every worker listens
            if self.process.poll() is not None:
                pytest.fail(f"serve exited {self.process.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not get ready: {self.stderr()}")
            time.sleep(0.05)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """The parent's child processes, pid -> command name."""
        found = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                found[int(pid)] = Path(f"/proc/{pid}/comm").read_text().strip()
        return found

    def private_redis_folder(self) -> Path:
        match = re.search(r"private redis-server on (\S+)/redis\.sock", self.stderr())
        assert match, self.stderr()
        return Path(match.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def workers(folder: Path, logs: Path, *extra: str, stdout_pipe: bool = False) -> Iterator[Workers]:
    served = Workers(folder, logs, *extra, stdout_pipe=stdout_pipe)
    pids = list(served.children())
    try:
        yield served
    finally:
        served.stop()
        for pid in pids:  # never leave a worker or redis-server behind, even on failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _fresh_connections(url: str, headers: dict[str, str], n: int) -> list[int]:
    """``n`` concurrent requests, each on a new connection (so the kernel picks a worker for each)."""
    connector = aiohttp.TCPConnector(limit=100, force_close=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), connector=connector) as session:

        async def one() -> int:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one() for _ in range(n))))


def _worker0_requests(served: Workers) -> float:
    status, _, body = _get(f"http://127.0.0.1:{served.admin}/metrics")
    assert status == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "propylon_requests_total" and sample.labels.get("route") == "GET /quota"
    )


def test_two_workers_admit_exactly_the_quota_and_stop_with_the_parent(tmp_path):
    redis_servers.require_redis()
    folder = write_manifests(tmp_path / "manifests", quota=100)
    with workers(folder, tmp_path) as served:
        children = served.children()
        assert sorted(name == "redis-server" for name in children.values()) == [False, False, True], children
        private = served.private_redis_folder()
        assert private.is_dir() and (private / "redis.sock").exists()

        statuses = asyncio.run(
            _fresh_connections(f"http://127.0.0.1:{served.port}/live/quota", {"x-api-key": KEYS["key0"]}, 400)
        )
        assert statuses.count(200) == 100, sorted(set(statuses))
        assert statuses.count(429) == 300
        # Worker 0 answers the admin port for both workers: /metrics counts all 400.
        assert _worker0_requests(served) == 400
        # Its usage report reads the shared store: the use of both workers.
        report = json.loads(_get(f"http://127.0.0.1:{served.admin}/admin/usage/demo/gold")[2])
        assert report["keys"]["key0"]["used"] == 100, report

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0, served.stderr()
        assert [pid for pid in children if _alive(pid)] == []
        assert not private.exists()


def test_a_worker_that_dies_stops_serve_with_status_1(tmp_path):
    redis_servers.require_redis()
    folder = write_manifests(tmp_path / "manifests")
    with workers(folder, tmp_path) as served:
        children = served.children()
        victim = next(pid for pid, name in children.items() if name != "redis-server")
        os.kill(victim, signal.SIGKILL)
        assert served.process.wait(timeout=60) == 1
        assert f"(pid {victim}) exited with signal SIGKILL; stopping the others" in served.stderr()
        assert [pid for pid in children if _alive(pid)] == []
        assert not served.private_redis_folder().exists()


def test_workers_die_with_a_killed_parent(tmp_path):
    redis_servers.require_redis()
    folder = write_manifests(tmp_path / "manifests")
    with workers(folder, tmp_path) as served:
        children = served.children()
        served.process.kill()
        served.process.wait(timeout=10)
        deadline = time.monotonic() + 60  # the kernel signals them (PR_SET_PDEATHSIG); workers drain first
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in children if _alive(pid)] == []
        # SIGKILL leaves no chance to remove the private folder; the test does it.
        folder_left = served.private_redis_folder()
        subprocess.run(["rm", "-rf", str(folder_left)], check=True)


def test_two_workers_share_a_given_redis(tmp_path):
    redis_servers.require_redis()
    folder = write_manifests(tmp_path / "manifests", quota=100)
    with (
        redis_servers.redis_server(tmp_path / "redis") as redis,
        workers(folder, tmp_path, "--redis", redis.url) as served,
    ):
        names = list(served.children().values())
        assert len(names) == 2 and "redis-server" not in names  # no private redis-server
        statuses = asyncio.run(
            _fresh_connections(f"http://127.0.0.1:{served.port}/live/quota", {"x-api-key": KEYS["key1"]}, 400)
        )
        assert statuses.count(200) == 100 and statuses.count(429) == 300


def test_two_workers_without_any_redis_refuse_to_start(tmp_path):
    folder = write_manifests(tmp_path / "manifests")
    empty = tmp_path / "empty-path"
    empty.mkdir()  # PROPYLON starts python by its absolute path, so an empty PATH still runs it
    done = subprocess.run(
        [*PROPYLON, "serve", "-f", str(folder), "--workers", "2"],
        env={**os.environ, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers above 1 needs a shared store" in done.stderr
    assert "--redis URL" in done.stderr and "install redis-server" in done.stderr


async def _bodies(url: str, n: int) -> list[bytes]:
    connector = aiohttp.TCPConnector(limit=20, force_close=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), connector=connector) as session:

        async def one() -> bytes:
            async with session.get(url) as resp:
                return await resp.read()

        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_every_worker_reloads_with_watch(tmp_path):
    redis_servers.require_redis()
    folder = write_manifests(tmp_path / "manifests")
    with workers(folder, tmp_path, "--watch", "--poll-interval", "0.1") as served:
        url = f"http://127.0.0.1:{served.port}/live/open"
        assert set(asyncio.run(_bodies(url, 40))) == {b"ok"}
        manifest = folder / "shop.yaml"
        old = "GET /open\n      integration: {type: MOCK, mock: {statusCode: 200, body: ok}}"
        assert old in manifest.read_text()
        manifest.write_text(manifest.read_text().replace(old, old.replace("body: ok", "body: changed")))
        deadline = time.monotonic() + 60  # each worker polls the files itself
        while set(bodies := asyncio.run(_bodies(url, 40))) != {b"changed"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(bodies) == {b"changed"}
        assert served.stderr().count("propylon: reloaded") == 1  # worker 0 alone reports it


LOGGED = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: logged, namespace: demo}
spec:
  routes:
    - routeKey: GET /hello
      integration: {type: MOCK, mock: {statusCode: 200, body: hello}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: live, namespace: demo}
spec:
  apiRef: logged
  basePath: /live
  accessLog: {enabled: true}
"""


def test_two_workers_access_log_lines_stay_whole_on_a_shared_pipe(tmp_path):
    """Both workers write batches of lines to the one stdout pipe; a write over PIPE_BUF is not
    atomic, so without the shared lock their batches interleaved mid-line (log_writer)."""
    redis_servers.require_redis()
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "logged.yaml").write_text(LOGGED)
    requests, agent = 3000, "agent-" + "x" * 12_000  # 12 KB lines: every batch is many PIPE_BUFs
    with workers(folder, tmp_path, stdout_pipe=True) as served:
        assert served.process.stdout is not None
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.extend(served.process.stdout), daemon=True)
        reader.start()
        statuses = asyncio.run(
            _fresh_connections(f"http://127.0.0.1:{served.port}/live/hello", {"User-Agent": agent}, requests)
        )
        assert statuses == [200] * requests
        served.stop()  # the workers write what they queued, then the pipe closes
        reader.join(timeout=60)
    entries = [line for line in lines if b"requestId" in line or b"\xff" in line or len(line) > 1000]
    broken = []
    for line in entries:
        try:
            json.loads(line)
        except ValueError:
            broken.append(line[:80])
    assert broken == [], f"{len(broken)} of {len(entries)} lines are not JSON: {broken[:3]}"
    assert len(entries) == requests
