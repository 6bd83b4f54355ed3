"""`propylon serve` as a user runs it: a subprocess on loopback, its files edited under it."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.ports import free_port

PROPYLON = [sys.executable, "-m", "propylon"]

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: demo}}
spec:
  routes:
    - routeKey: GET /hello
      integration:
        type: {hello_type}
        mock:
          statusCode: 200
          headers: {{Content-Type: application/json}}
          body: '{{"v": "{version}", "color": "${{stageVariables.color}}"}}'
    - routeKey: GET /stable
      integration:
        type: MOCK
        mock: {{statusCode: 200, body: 'ok'}}
"""

STAGE = """\
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: demo}}
spec:
  apiRef: shop
  basePath: /live
  variables: {{color: {color}}}
"""


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Served:
    def __init__(self, folder: Path, tmp: Path, *extra: str) -> None:
        self.port, self.internal, self.admin = free_port(), free_port(), free_port()
        self.stderr_path = tmp / "serve.stderr"
        self.stdout_path = tmp / "serve.stdout"
        command = [*PROPYLON, "serve", "-f", str(folder), "--port", str(self.port)]
        command += ["--internal-port", str(self.internal), "--admin-port", str(self.admin), *extra]
        with self.stderr_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited {self.process.returncode}: {self.stderr()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        pytest.fail("serve did not listen")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def serve_in_front(
    tmp_path: Path, manifests: Callable[[int], str], respond: backends.Respond, *extra: str
) -> Iterator[tuple[Served, backends.Backend]]:
    """A real backend answering with ``respond``, and ``serve`` (``extra`` its flags) of the
    manifests ``manifests(backend port)`` writes; both stopped when the caller is done."""
    backend = backends.Backend(respond)
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(manifests(backend.port))
    try:
        gateway = Served(folder, tmp_path, *extra)
    except BaseException:
        backend.close()
        raise
    try:
        yield gateway, backend
    finally:
        gateway.stop()
        backend.close()


def send(method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """The status and (lower-cased) headers of one request, whatever its status."""
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, {k.lower(): v for k, v in error.headers.items()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "api.yaml").write_text(API.format(hello_type="MOCK", version="v1"))
    (manifests / "stage.yaml").write_text(STAGE.format(color="blue"))
    return manifests


@pytest.fixture
def watched(folder: Path, tmp_path: Path) -> Iterator[Served]:
    served = Served(folder, tmp_path, "--watch")
    yield served
    served.stop()


def _write(path: Path, text: str) -> None:
    # Write then rename, as editors do, so the watcher never reads half a file.
    temp = path.with_name("." + path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Hammer:
    """A steady stream of requests on a route no edit touches; every failure is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = _get(self.url, timeout=5)
                if (status, body) != (200, b"ok"):
                    self.failures.append(f"{status} {body[:100]!r}")
            except Exception as exc:
                self.failures.append(repr(exc))
            self.count += 1
            time.sleep(0.01)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class FirstRead:
    """Wakes when another process first closes ``path`` after reading it (Linux inotify via
    libc), so a test can act in the instant between ``serve`` loading its files and anything
    after that."""

    IN_CLOSE_NOWRITE = 0x10

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        assert self._fd >= 0, os.strerror(ctypes.get_errno())
        wd = self._libc.inotify_add_watch(self._fd, str(path).encode(), self.IN_CLOSE_NOWRITE)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def wait(self, seconds: float) -> bool:
        try:
            ready, _, _ = select.select([self._fd], [], [], seconds)
            return bool(ready)
        finally:
            os.close(self._fd)


def test_watch_serves_a_file_written_the_moment_serve_starts(folder: Path, tmp_path: Path) -> None:
    """The watcher's baseline is taken before the first load: a manifest written right after
    serve has read its files (before it listens, before the watcher's first poll) is served."""
    extra = folder / "extra.yaml"
    first_read = FirstRead(folder / "stage.yaml")  # the last file of the folder to be read
    late_api = API.replace("shop", "late").format(hello_type="MOCK", version="late")
    late_stage = STAGE.replace("live", "late").replace("apiRef: shop", "apiRef: late").format(color="red")
    holder: list[Served] = []
    starting = threading.Thread(target=lambda: holder.append(Served(folder, tmp_path, "--watch")), daemon=True)
    starting.start()
    assert first_read.wait(30), "serve never read its files"
    _write(extra, late_api + "---\n" + late_stage)
    starting.join(35)
    served = holder[0]
    try:
        late = served.url("/late/hello")
        assert _wait_for(lambda: _get(late)[0] == 200, 3.0), served.stderr()
        assert _get(late)[1] == b'{"v": "late", "color": "red"}'
    finally:
        served.stop()


def test_watch_applies_edits_and_keeps_last_good_config(watched: Served, folder: Path) -> None:
    hello = watched.url("/live/hello")
    assert _get(hello) == (200, b'{"v": "v1", "color": "blue"}')
    with Hammer(watched.url("/live/stable")) as hammer:
        # 1. An edit to a route is served within 2 s.
        _write(folder / "api.yaml", API.format(hello_type="MOCK", version="v2"))
        assert _wait_for(lambda: _get(hello)[1] == b'{"v": "v2", "color": "blue"}', 2.0)

        # 2. Broken YAML: reported on stderr, the last good config keeps serving.
        _write(folder / "api.yaml", "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: [\n")
        assert _wait_for(lambda: "invalid YAML" in watched.stderr(), 2.0), watched.stderr()
        assert _get(hello) == (200, b'{"v": "v2", "color": "blue"}')

        # 3. A broken object keeps its last good version while another object's edit applies.
        _write(folder / "api.yaml", API.format(hello_type="NOT_A_TYPE", version="v3"))
        _write(folder / "stage.yaml", STAGE.format(color="green"))
        assert _wait_for(lambda: _get(hello)[1] == b'{"v": "v2", "color": "green"}', 2.0), watched.stderr()
        assert "NOT_A_TYPE" in watched.stderr() or "integration.type" in watched.stderr()
        assert "kept the last good version of: Api demo/shop" in watched.stderr()

        # 4. Fixed again: the new version is served.
        _write(folder / "api.yaml", API.format(hello_type="MOCK", version="v4"))
        assert _wait_for(lambda: _get(hello)[1] == b'{"v": "v4", "color": "green"}', 2.0)
    assert hammer.count > 20
    assert hammer.failures == []
    assert watched.stop() == 0
    assert "propylon: stopping" in watched.stderr()


def test_startup_line_names_listeners_and_stages(folder: Path, tmp_path: Path) -> None:
    served = Served(folder, tmp_path)
    try:
        assert _wait_for(lambda: "demo/live" in served.stderr(), 5)
        text = served.stderr()
        assert f"public http://127.0.0.1:{served.port}" in text
        assert f"admin http://127.0.0.1:{served.admin}" in text
        assert _get(f"http://127.0.0.1:{served.admin}/readyz")[0] == 200
        assert _get(f"http://127.0.0.1:{served.internal}/live/stable") == (200, b"ok")
    finally:
        assert served.stop() == 0


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROPYLON, "serve", *args], capture_output=True, text=True, timeout=timeout)


def test_unparsable_file_exits_2(folder: Path) -> None:
    (folder / "broken.yaml").write_text("kind: [\n")
    done = _run("-f", str(folder), "--port", "0")
    assert done.returncode == 2
    assert "broken.yaml: document 1" in done.stderr and "invalid YAML" in done.stderr


def test_no_valid_object_exits_2(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text(API.format(hello_type="NOPE", version="v1"))
    done = _run("-f", str(tmp_path))
    assert done.returncode == 2
    assert "no valid object" in done.stderr


def test_objects_with_only_failing_closed_routes_are_served(tmp_path: Path) -> None:
    # Every object has a diagnostic, yet both are in the snapshot: serve starts with them, and
    # only the routes with a broken reference refuse (DESIGN.md §8 "Broken objects").
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "api.yaml").write_text(
        """apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: a, namespace: t}
spec:
  routes:
    - routeKey: "GET /ok"
      integration: {type: MOCK, mock: {body: ok}}
    - routeKey: "GET /guarded"
      authorizer: missing
      integration: {type: MOCK, mock: {body: reached}}
    - routeKey: "GET /var"
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:9/${stageVariables.nope}"}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: s, namespace: t}
spec: {apiRef: a}
"""
    )
    served = Served(manifests, tmp_path)
    try:
        assert _get(served.url("/s/ok")) == (200, b"ok")
        assert _get(served.url("/s/guarded"))[0] == 500
        assert _get(served.url("/s/var"))[0] == 500
        assert "route 'GET /guarded' refuses every request" in served.stderr()
    finally:
        assert served.stop() == 0


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = _run("-f", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert "absent.yaml" in done.stderr


def test_workers_below_one_is_refused(folder: Path) -> None:
    # Above 1 without any store: tests/serve/test_workers.py.
    done = _run("-f", str(folder), "--workers", "0")
    assert done.returncode == 2
    assert "--workers must be at least 1" in done.stderr


@pytest.mark.parametrize("flag", ["--port", "--internal-port", "--admin-port"])
def test_a_port_out_of_range_is_refused(folder: Path, flag: str) -> None:
    # The socket layer would take 99999 modulo 65536 and listen on 34463.
    done = _run("-f", str(folder), flag, "99999")
    assert done.returncode == 2
    assert f"{flag}: must be a port number 0..65535, got '99999'" in done.stderr


def test_bad_trusted_proxies_is_refused(folder: Path) -> None:
    done = _run("-f", str(folder), "--trusted-proxies", "10.0.0.0/8,not-an-ip")
    assert done.returncode == 2
    assert "not-an-ip" in done.stderr


def _get_with(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_admin_token_file(folder: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-long-admin-token\n")
    served = Served(folder, tmp_path, "--admin-token-file", str(token_file))
    try:
        url = f"http://127.0.0.1:{served.admin}/admin/config"
        assert _get_with(url, {}) == 401
        assert _get_with(url, {"Authorization": "Bearer nope"}) == 401
        assert _get_with(url, {"Authorization": "Bearer a-long-admin-token"}) == 200
        assert _get_with(f"http://127.0.0.1:{served.admin}/healthz", {}) == 200
    finally:
        assert served.stop() == 0


def test_loop_watch_reports_the_serving_process_when_asked(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bench/run.py's latency rounds read these lines; without the variable serve writes none.
    watch = tmp_path / "loop-watch.jsonl"
    monkeypatch.setenv("PROPYLON_LOOP_WATCH", str(watch))
    served = Served(folder, tmp_path)
    try:
        assert _get(served.url("/live/stable"))[0] == 200
        assert _wait_for(lambda: watch.exists() and len(watch.read_text().splitlines()) >= 2, 20), served.stderr()
    finally:
        served.stop()
    lines = [json.loads(line) for line in watch.read_text().splitlines()]
    assert {line["pid"] for line in lines} == {served.process.pid}
    assert all(set(line["gc"]) == {"0", "1", "2"} and line["cpu_ms"] >= 0 for line in lines)
