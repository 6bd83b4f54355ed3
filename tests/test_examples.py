"""Every example works as its comments and the README say.

Each folder of examples/ must pass ``propylon validate``. The quickstart is also served for real
(``propylon serve`` in a subprocess, loopback only) and asked the requests the README shows; its
HTTP_PROXY route reaches a ``python -m http.server`` backend that this test starts. The
quickstart names port 9000 for that backend; the test serves a copy with a free port instead,
so it never collides with anything else on the machine.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
PROPYLON = [sys.executable, "-m", "propylon"]


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_validate(folder: Path) -> None:
    done = subprocess.run(
        [*PROPYLON, "validate", "-f", str(folder.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def api_server() -> Iterator[Any]:
    """The control-plane tier's etcd + kube-apiserver with the CRDs installed (skips without binaries)."""
    sys.path.insert(0, str(ROOT / "tests" / "controlplane"))
    try:
        import cluster
    finally:
        sys.path.pop(0)
    missing = cluster.binaries_missing()
    if missing:
        pytest.skip(f"control-plane binaries missing: {', '.join(missing)} (run tools/controlplane/build.sh)")
    plane = cluster.ControlPlane()
    try:
        plane.start()
        plane.install_crds()
        yield plane
    finally:
        plane.stop()


@pytest.mark.controlplane
@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_by_the_api_server(folder: Path, api_server: Any) -> None:
    """What `propylon validate` accepts, the API server (schemas, CEL rules) accepts too."""
    namespaces = set()
    for file in sorted(folder.rglob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if doc and doc.get("kind") != "Namespace":
                namespaces.add((doc.get("metadata") or {}).get("namespace") or "default")
    for namespace in sorted(namespaces):
        api_server.kubectl("create", "namespace", namespace, check=False)
    done = api_server.kubectl("apply", "--server-side", "-R", "-f", str(folder), check=False)
    assert done.returncode == 0, done.stderr


# --- the quickstart, served --------------------------------------------------------------------


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not listen on {port} within {seconds} s:\n{log.read_text(errors='replace')}")


def _serve_is_built() -> bool:
    done = subprocess.run([*PROPYLON, "serve", "--help"], capture_output=True, text=True, timeout=60)
    return done.returncode == 0 and "--port" in done.stdout


@contextlib.contextmanager
def _process(command: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:<public port>
    log: Path  # stdout and stderr of `propylon serve` (the access log goes to stdout)
    files: Path  # the folder the file backend serves
    down_base: str  # a second gateway whose file backend is not running


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def _request(url: str, method: str = "GET", body: bytes | None = None) -> Answer:
    request = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def _quickstart_copy(tmp: Path, backend_port: int) -> Path:
    folder = tmp / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", folder)
    for file in folder.glob("*.yaml"):
        text = file.read_text()
        assert "127.0.0.1:9000" in text or file.name != "petstore.yaml"
        file.write_text(text.replace("127.0.0.1:9000", f"127.0.0.1:{backend_port}"))
    return folder


def _start_gateway(folder: Path, tmp: Path, name: str, stack: contextlib.ExitStack) -> tuple[str, Path]:
    port, internal, admin = free_port(), free_port(), free_port()
    log = tmp / f"{name}.log"
    command = [*PROPYLON, "serve", "-f", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--internal-port", str(internal), "--admin-port", str(admin)]
    process = stack.enter_context(_process(command, cwd=tmp, log=log))
    _wait_for_port(port, process, "propylon serve", log)
    return f"http://127.0.0.1:{port}", log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not _serve_is_built():
        pytest.skip("`propylon serve` is not built yet")
    tmp = tmp_path_factory.mktemp("quickstart")
    files = tmp / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello from the file server\n")
    (files / "docs").mkdir()
    (files / "docs" / "guide.txt").write_text("a nested file\n")

    with contextlib.ExitStack() as stack:
        backend_port = free_port()
        backend_log = tmp / "backend.log"
        backend = stack.enter_context(
            _process(
                [sys.executable, "-m", "http.server", str(backend_port), "--bind", "127.0.0.1"],
                cwd=files,
                log=backend_log,
            )
        )
        _wait_for_port(backend_port, backend, "python -m http.server", backend_log)
        base, log = _start_gateway(_quickstart_copy(tmp / "up", backend_port), tmp, "serve", stack)
        # The same quickstart, pointing at a port where nothing listens.
        down_base, _ = _start_gateway(_quickstart_copy(tmp / "down", free_port()), tmp, "serve-down", stack)
        yield Served(base=base, log=log, files=files, down_base=down_base)


def test_hello_answers_with_stage_variables_and_the_request_id(served: Served) -> None:
    answer = _request(f"{served.base}/dev/hello")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body == {
        "message": "Hello from Propylon",
        "stage": "development",
        "requestId": answer.headers["x-request-id"],
    }


def test_each_request_gets_its_own_id(served: Served) -> None:
    first = _request(f"{served.base}/dev/hello").json()
    second = _request(f"{served.base}/dev/hello").json()
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["requestId"] != second["requestId"]


def test_pets_mocks(served: Served) -> None:
    pets = _request(f"{served.base}/dev/pets")
    assert pets.status == 200
    assert [p["name"] for p in pets.json()] == ["Rex", "Tom"]  # type: ignore[union-attr]

    one = _request(f"{served.base}/dev/pets/42")
    assert one.status == 200
    assert one.json()["name"] == "Rex"  # type: ignore[index]

    created = _request(f"{served.base}/dev/pets", method="POST", body=b'{"name": "Kitty"}')
    assert created.status == 201
    assert created.headers["location"] == "/dev/pets/3"


def test_wrong_method_and_unknown_path_get_the_overridden_404(served: Served) -> None:
    for method, path in (("GET", "/dev/nowhere"), ("DELETE", "/dev/pets/1")):
        answer = _request(f"{served.base}{path}", method=method)
        assert answer.status == 404, (method, path)
        assert answer.headers["x-propylon-error-type"] == "RESOURCE_NOT_FOUND"
        assert answer.headers["content-type"] == "application/json"
        assert "Try GET /dev/hello" in answer.json()["message"]  # type: ignore[index]


def test_paths_outside_the_stage_get_the_builtin_404(served: Served) -> None:
    answer = _request(f"{served.base}/hello")
    assert answer.status == 404
    assert answer.json() == {"message": "Not Found"}
    assert answer.headers["x-request-id"]


def test_files_route_reaches_the_http_server(served: Served) -> None:
    answer = _request(f"{served.base}/dev/files/hello.txt")
    assert answer.status == 200
    assert answer.body == b"hello from the file server\n"
    nested = _request(f"{served.base}/dev/files/docs/guide.txt")
    assert nested.status == 200
    assert nested.body == b"a nested file\n"
    missing = _request(f"{served.base}/dev/files/absent.txt")
    assert missing.status == 404  # the backend's own 404, passed through
    assert "x-propylon-error-type" not in missing.headers


def test_files_route_without_backend_gets_the_overridden_502(served: Served) -> None:
    answer = _request(f"{served.down_base}/dev/files/hello.txt")
    assert answer.status == 502
    assert answer.headers["x-propylon-error-type"] == "INTEGRATION_FAILURE"
    assert "python -m http.server 9000" in answer.json()["message"]  # type: ignore[index]


def test_access_log_has_one_json_line_per_request(served: Served) -> None:
    marker = "/dev/pets/access-log-probe"
    assert _request(f"{served.base}{marker}").status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in served.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("path") == marker:
                    assert entry["routeKey"] == "GET /pets/{id}"
                    assert entry["status"] == 200
                    assert entry["stage"] in ("dev", "demo/dev")
                    assert entry["httpMethod"] == "GET"
                    return
        time.sleep(0.1)
    pytest.fail(f"no access-log line for {marker}:\n{served.log.read_text(errors='replace')[-3000:]}")


# --- the kubernetes example, served without a cluster ------------------------------------------
# `propylon serve` resolves `service:` targets from EndpointSlice manifests, loopback included.
# The test runs the echo backend's own script (taken from the example's ConfigMap) on a free
# loopback port, and adds the EndpointSlice that Kubernetes would have made for the Service.


def _echo_script(port: int) -> str:
    documents = yaml.safe_load_all((ROOT / "examples" / "kubernetes" / "echo-backend.yaml").read_text())
    config_map = next(d for d in documents if d and d["kind"] == "ConfigMap")
    script = config_map["data"]["echo.py"]
    assert '("", 8080)' in script
    return script.replace('("", 8080)', f'("127.0.0.1", {port})')


def _endpoint_slice(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "echo-local", "namespace": "demo", "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


@pytest.fixture(scope="module")
def kubernetes_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _serve_is_built():
        pytest.skip("`propylon serve` is not built yet")
    tmp = tmp_path_factory.mktemp("kubernetes")
    with contextlib.ExitStack() as stack:
        echo_port = free_port()
        (tmp / "echo.py").write_text(_echo_script(echo_port))
        echo_log = tmp / "echo.log"
        echo = stack.enter_context(_process([sys.executable, "-u", str(tmp / "echo.py")], cwd=tmp, log=echo_log))
        _wait_for_port(echo_port, echo, "the echo backend", echo_log)
        folder = tmp / "manifests"
        shutil.copytree(ROOT / "examples" / "kubernetes", folder)
        (folder / "zz-endpointslice.yaml").write_text(yaml.safe_dump(_endpoint_slice(echo_port)))
        base, _ = _start_gateway(folder, tmp, "serve-kubernetes", stack)
        yield base


def test_kubernetes_example_forwards_the_path_minus_the_base_path(kubernetes_served: str) -> None:
    answer = _request(f"{kubernetes_served}/prod/echo/a/b?x=1", method="POST", body=b"hi")
    assert answer.status == 200
    seen = answer.json()
    assert isinstance(seen, dict)
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/a/b?x=1"
    assert seen["body"] == "hi"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-request-id"] == answer.headers["x-request-id"]
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_kubernetes_example_rewrites_the_users_path_with_a_stage_variable(kubernetes_served: str) -> None:
    answer = _request(f"{kubernetes_served}/prod/users/42")
    assert answer.status == 200
    assert answer.json()["path"] == "/v1/users/42"  # type: ignore[index]


def test_kubernetes_example_health_is_a_mock(kubernetes_served: str) -> None:
    answer = _request(f"{kubernetes_served}/prod/health")
    assert answer.status == 200
    assert answer.json() == {"status": "ok", "requestId": answer.headers["x-request-id"]}


# --- the README tells the truth ------------------------------------------------------------------


def test_readme_starts_with_the_two_commands() -> None:
    first, second = (line.strip() for line in (ROOT / "README.md").read_text().splitlines()[:2])
    assert first == "pip install . && propylon serve -f examples/quickstart"
    assert second == "bash tools/setup.sh && python3 -m pytest"
    # CI runs exactly the README's test command, so the two can never drift apart.
    assert second in (ROOT / ".ci" / "run").read_text().splitlines()
    assert (ROOT / "examples" / "quickstart").is_dir()


def _readme_answers() -> dict[str, str]:
    """`$ curl URL` lines of the README, each with the JSON printed after it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    out = {}
    for line, after in itertools.pairwise(lines):
        if line.startswith("$ curl http://127.0.0.1:8080/") and after[:1] in ("{", "["):
            out[line.removeprefix("$ curl http://127.0.0.1:8080").split()[0]] = after
    return out


def test_readme_outputs_are_what_the_quickstart_answers(served: Served) -> None:
    answers = _readme_answers()
    assert {"/dev/hello", "/dev/pets"} <= set(answers)
    for path, printed in answers.items():
        answer = _request(f"{served.base}{path}")
        assert answer.status == 200, path
        expected = json.loads(printed.replace('"…"', '"<request id>"'))
        actual = answer.json()
        if isinstance(expected, dict) and expected.get("requestId") == "<request id>":
            assert isinstance(actual, dict)
            actual = {**actual, "requestId": "<request id>"}
        assert actual == expected, path
