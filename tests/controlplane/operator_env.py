"""One gateway of the control-plane tier: namespaces, the operator and proxy processes, helpers.

Every operator test needs the same start-up: an app namespace the operator watches and a gateway
namespace, ``propylon operator`` run as a local process against the real API server, and a local
``propylon proxy --config-secret`` reading the snapshot Secret as a pod would (no kubelet runs
here). ``Env`` does that start-up and its teardown; the ``gateway`` fixture (conftest.py) gives
each test one. The tests import this module as ``op``.
"""

from __future__ import annotations

import json
import pathlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

import cluster

from tests import processes

CHANGE_WITHIN = 5.0  # seconds an edit may take to reach the proxy (operator debounce + proxy watch)
START_WITHIN = 40.0
GATEWAY = "gw"
REPLICA = "operator-test-0"


# ---------------------------------------------------------------- helpers


def eventually(check: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what} (last: {last!r})")


def get(url: str, token: str | None = None) -> tuple[int, str]:
    """Status and text of a GET (0 and the error when nothing answers), with a bearer ``token`` if given."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def get_json(plane: cluster.ControlPlane, *args: str) -> dict | None:
    result = plane.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj: dict | None, type_: str) -> dict:
    """The status condition of ``type_`` (Ready, Accepted, ...), or {} when there is none yet."""
    for found in ((obj or {}).get("status") or {}).get("conditions") or ():
        if found.get("type") == type_:
            return found
    return {}


Process = processes.PropylonProcess


class Env:
    """One gateway: an app namespace the operator watches, a gateway namespace, and processes."""

    def __init__(self, plane: cluster.ControlPlane, workdir: pathlib.Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.plane = plane
        self.workdir = workdir
        self.app_ns = f"app-{suffix}"
        self.gw_ns = f"gw-{suffix}"
        for namespace in (self.app_ns, self.gw_ns):
            plane.kubectl("create", "namespace", namespace)
        self.watched = self.app_ns  # the namespace the operator watches
        self.processes: list[Process] = []
        self.webhook_port: int | None = None

    def start_operator(self, *extra: str) -> Process:
        argv = [
            "operator",
            "--kubeconfig",
            str(self.plane.kubeconfig),
            "--namespace",
            self.watched,
            "--gateway-name",
            GATEWAY,
            "--gateway-namespace",
            self.gw_ns,
            "--replicas",
            "1",
            "--standalone",
            *extra,
        ]
        process = Process(argv, self.workdir / f"operator-{len(self.processes)}.log")
        self.processes.append(process)
        eventually(
            lambda: process.alive() and "first pass done" in process.log(), START_WITHIN, "operator's first pass"
        )
        return process

    def start_proxy(
        self, *, secret: str = f"{GATEWAY}-snapshot", kubeconfig: pathlib.Path | None = None
    ) -> tuple[Process, int]:
        """A local ``propylon proxy`` reading ``secret`` (as ``kubeconfig``'s user: admin by default)."""
        port, internal, admin = cluster.free_port(), cluster.free_port(), cluster.free_port()
        argv = [
            "proxy",
            "--config-secret",
            f"{self.gw_ns}/{secret}",
            "--kubeconfig",
            str(kubeconfig or self.plane.kubeconfig),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--internal-port",
            str(internal),
            "--admin-port",
            str(admin),
        ]
        process = Process(argv, self.workdir / "proxy.log", env={"POD_NAME": REPLICA})
        self.processes.append(process)
        eventually(
            lambda: process.alive() and get(f"http://127.0.0.1:{admin}/readyz")[0] == 200, START_WITHIN, "proxy ready"
        )
        return process, port

    def get(self, *args: str) -> dict | None:
        return get_json(self.plane, *args)

    def secret(self) -> dict | None:
        return self.get("secret", "-n", self.gw_ns, f"{GATEWAY}-snapshot")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for namespace in (self.app_ns, self.gw_ns):
            self.plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# ---------------------------------------------------------------- manifests


def api(namespace: str, backend: str, *, greeting: str = "hello", authorizer: str | None = None) -> str:
    """Api "pets": ``GET /hello`` (a MOCK answering ``greeting``) and ``GET /files/{proxy+}`` to ``backend``."""
    auth = f"\n      authorizer: {authorizer}" if authorizer else ""
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: pets, namespace: {namespace}}}
spec:
  routes:
    - routeKey: GET /hello{auth}
      integration:
        type: MOCK
        mock: {{statusCode: 200, headers: {{Content-Type: text/plain}}, body: "{greeting}"}}
    - routeKey: GET /files/{{proxy+}}
      integration:
        type: HTTP_PROXY
        url: "{backend}/{{proxy}}"
"""


def stage(namespace: str) -> str:
    """Stage "dev" of Api "pets", at /dev."""
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: {namespace}}}
spec:
  apiRef: pets
  basePath: /dev
"""
