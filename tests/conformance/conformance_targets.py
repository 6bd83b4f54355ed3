"""The two places a case is played: ``propylon serve`` and the operator tier.

Both answer the same question, "on which port does the gateway serve this case", after
``ensure(case)`` has put the case in place (and taken the previous one away). The backend is
the same echo server for every case of a target; only its address differs:

* ``ServeTarget``: ``propylon serve -f DIR`` as a subprocess on free loopback ports, one
  process per case, the echo backend on 127.0.0.1 (``serve`` takes loopback endpoints).
* ``OperatorTarget``: one ``propylon operator`` and one local ``propylon proxy
  --config-secret`` for the whole session (no kubelet runs, so the proxy runs here, as a pod
  would). Cases are applied with kubectl one after the other, each in its own namespace, and
  deleted before the next. The API server refuses loopback endpoints, so the echo backend
  runs inside a test network namespace, at the address its veth pair gives it.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import conformance_cases as cases
import conformance_echo as echo
import yaml

from tests import processes
from tests.ports import free_port

READY_WITHIN = 60.0  # seconds for a process to listen, or for a case to be served


def http_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return 0, None


def eventually(check: Callable[[], Any], within: float, what: str, log: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not within {within:.0f} s: {what} (last: {last!r})\n{log()[-4000:]}")


Process = processes.PropylonProcess


class Target:
    """What the runner needs from a target; ``ensure`` switches cases lazily."""

    name = ""

    def __init__(self, backend: echo.Backend) -> None:
        self.backend = backend
        self.current: cases.Case | None = None
        self.broken: str | None = None
        self.namespace = ""

    def ensure(self, case: cases.Case) -> None:
        """Put ``case`` in place; a case that could not be deployed fails each of its rows at once."""
        if self.current is None or self.current.name != case.name:
            if self.current is not None:
                self._undeploy(self.current)
                self.current = None
            self.broken = None
            self.current = case  # before deploying: what was applied is removed even on failure
            try:
                self._deploy(case)
            except AssertionError as failure:
                self.broken = str(failure)
        if self.broken is not None:
            raise AssertionError(f"case {case.name} was not deployed:\n{self.broken}")

    def close(self) -> None:
        if self.current is not None:
            self._undeploy(self.current)
            self.current = None

    def values(self) -> dict[str, str]:
        host = f"{self.backend.host}:{self.backend.port}"
        return {"BACKEND_URL": f"http://{host}", "BACKEND_HOST": host, "NAMESPACE": self.namespace}

    def manifests(self, case: cases.Case) -> str:
        documents = cases.manifests_for(case, self.namespace, self.values(), (self.backend.host, self.backend.port))
        return yaml.safe_dump_all(documents, sort_keys=False)

    def port(self, listener: str) -> int:
        raise NotImplementedError

    def log(self) -> str:
        return ""

    def _deploy(self, case: cases.Case) -> None:
        raise NotImplementedError

    def _undeploy(self, case: cases.Case) -> None:
        raise NotImplementedError


class ServeTarget(Target):
    name = "serve"

    def __init__(self, backend: echo.Backend, workdir: pathlib.Path) -> None:
        super().__init__(backend)
        self.workdir = workdir
        self.process: Process | None = None
        self.ports: dict[str, int] = {}

    def port(self, listener: str) -> int:
        return self.ports[listener]

    def log(self) -> str:
        return self.process.log() if self.process else ""

    def _deploy(self, case: cases.Case) -> None:
        self.namespace = "conformance"
        folder = self.workdir / case.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifests.yaml").write_text(self.manifests(case))
        # As strict as the operator target, which waits for every object to be Ready: a case
        # whose manifests draw a diagnostic would otherwise play against part of itself.
        checked = subprocess.run(
            [sys.executable, "-m", "propylon", "validate", "-f", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, f"propylon validate:\n{checked.stdout}{checked.stderr}"
        self.ports = {"public": free_port(), "internal": free_port(), "admin": free_port()}
        argv = ["serve", "-f", str(folder), "--port", str(self.ports["public"])]
        argv += ["--internal-port", str(self.ports["internal"]), "--admin-port", str(self.ports["admin"])]
        self.process = Process(argv, self.workdir / f"{case.name}.log")
        readyz = f"http://127.0.0.1:{self.ports['admin']}/readyz"
        eventually(
            lambda: self.process is not None and self.process.alive() and http_json(readyz)[0] == 200,
            READY_WITHIN,
            f"propylon serve ready with case {case.name}",
            self.log,
        )

    def _undeploy(self, case: cases.Case) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class OperatorTarget(Target):
    name = "operator"
    GATEWAY = "gw"

    def __init__(
        self,
        backend: echo.Backend,
        workdir: pathlib.Path,
        kubectl: Callable[..., subprocess.CompletedProcess[str]],
        kubeconfig: pathlib.Path,
        case_names: Sequence[str],
    ) -> None:
        super().__init__(backend)
        self.workdir = workdir
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig
        suffix = uuid.uuid4().hex[:6]
        self.gateway_namespace = f"conformance-gw-{suffix}"
        self.namespaces = {name: f"conformance-{name}-{suffix}"[:63] for name in case_names}
        self.operator: Process | None = None
        self.proxy: Process | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> OperatorTarget:
        for namespace in (self.gateway_namespace, *self.namespaces.values()):
            self.kubectl("create", "namespace", namespace)
        argv = ["operator", "--kubeconfig", str(self.kubeconfig), "--standalone", "--replicas", "1"]
        argv += ["--gateway-name", self.GATEWAY, "--gateway-namespace", self.gateway_namespace]
        for namespace in self.namespaces.values():
            argv += ["--namespace", namespace]
        self.operator = Process(argv, self.workdir / "operator.log")
        eventually(
            lambda: self.operator is not None and self.operator.alive() and "first pass done" in self.operator.log(),
            READY_WITHIN,
            "the operator's first pass",
            self.log,
        )
        self.ports = {"public": free_port(), "internal": free_port(), "admin": free_port()}
        argv = ["proxy", "--config-secret", f"{self.gateway_namespace}/{self.GATEWAY}-snapshot"]
        argv += ["--kubeconfig", str(self.kubeconfig), "--host", "127.0.0.1", "--port", str(self.ports["public"])]
        argv += ["--internal-port", str(self.ports["internal"]), "--admin-port", str(self.ports["admin"])]
        # The Lease the proxy holds under this name is what makes a Stage Ready.
        self.proxy = Process(argv, self.workdir / "proxy.log", env={"POD_NAME": f"{self.GATEWAY}-conformance-0"})
        eventually(
            lambda: self.proxy is not None and self.proxy.alive() and self._served() is not None,
            READY_WITHIN,
            "the proxy serving a snapshot",
            self.log,
        )
        return self

    def stop(self) -> None:
        for process in (self.proxy, self.operator):
            if process is not None:
                process.stop()
        for namespace in (*self.namespaces.values(), self.gateway_namespace):
            self.kubectl("delete", "namespace", namespace, "--wait=false", check=False)

    def port(self, listener: str) -> int:
        return self.ports[listener]

    def log(self) -> str:
        parts = []
        for name, process in (("operator", self.operator), ("proxy", self.proxy)):
            if process is not None:
                parts.append(f"--- {name} log (tail) ---\n{process.log()[-3000:]}")
        return "\n".join(parts)

    def _served(self) -> dict[str, Any] | None:
        """The proxy's view: its config version and stage ids (admin API, loopback only)."""
        status, body = http_json(f"http://127.0.0.1:{self.ports['admin']}/admin/config")
        return body if status == 200 and isinstance(body, dict) else None

    def _get(self, kind: str) -> list[dict[str, Any]]:
        result = self.kubectl("get", kind, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(result.stdout).get("items", []) if result.returncode == 0 else []

    def _deploy(self, case: cases.Case) -> None:
        self.namespace = self.namespaces[case.name]
        self.kubectl("apply", "-f", "-", input=self.manifests(case))
        kinds = {m.get("kind") for m in case.manifests}
        eventually(lambda: self._serving(kinds), READY_WITHIN, f"case {case.name} served by the proxy", self.log)

    def _serving(self, kinds: set[Any]) -> bool:
        """Every Api and Stage of the case Ready, the Stages on one version, and the proxy on it."""
        if "Api" in kinds:
            for api in self._get("apis.propylon.dev"):
                if not _ready(api):
                    return False
        stages = self._get("stages.propylon.dev")
        versions = {(s.get("status") or {}).get("configVersion") for s in stages}
        if not stages or len(versions) != 1 or not all(_ready(s) for s in stages):
            return False
        served = self._served()
        return served is not None and served.get("version") == versions.pop()

    def _undeploy(self, case: cases.Case) -> None:
        kinds = "apis.propylon.dev,stages.propylon.dev,authorizers.propylon.dev,services,endpointslices"
        self.kubectl("delete", kinds, "--all", "-n", self.namespace, "--wait=true", "--timeout=60s", timeout=90)
        prefix = f"{self.namespace}/"
        eventually(
            lambda: (s := self._served()) is not None and not any(x["id"].startswith(prefix) for x in s["stages"]),
            READY_WITHIN,
            f"case {case.name} gone from the proxy",
            self.log,
        )


def _ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the object's current generation."""
    generation = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    if status.get("observedGeneration") != generation:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
