"""Reaching a kind cluster from the tests: kubectl, port-forwards, plain HTTP, bounded waits.

Everything goes through the ``kubectl`` binary with the kubeconfig tools/kind/e2e.sh hands over
(``PROPYLON_KIND_KUBECONFIG``), the way a user pokes at a cluster, so no client library's
behaviour stands between the tests and the cluster. Nothing here knows Propylon's objects;
test_kind_e2e.py does.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

SKIP_REASON = (
    "needs a kind cluster with Propylon installed: run tools/kind/e2e.sh (Docker, kind, kubectl, helm), "
    "which sets PROPYLON_KIND_KUBECONFIG"
)
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What e2e.sh tells the tests: the cluster, the binaries, where the release lives."""

    kubeconfig: str
    kubectl: str
    helm: str
    release: str
    namespace: str

    @classmethod
    def from_environment(cls) -> Settings | None:
        kubeconfig = os.environ.get("PROPYLON_KIND_KUBECONFIG")
        if not kubeconfig:
            return None
        return cls(
            kubeconfig=kubeconfig,
            kubectl=os.environ.get("PROPYLON_KIND_KUBECTL", "kubectl"),
            helm=os.environ.get("PROPYLON_KIND_HELM", "helm"),
            release=os.environ.get("PROPYLON_KIND_RELEASE", "propylon"),
            namespace=os.environ.get("PROPYLON_KIND_NAMESPACE", "propylon-system"),
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}


class Kubectl:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.settings.kubectl, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.settings.env(),
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def get(self, *args: str) -> dict[str, Any] | None:
        """``kubectl get ARGS``: one object as JSON, or None when it does not exist."""
        done = self("get", *args, "-o", "json", "--ignore-not-found")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def apply(self, manifest: str) -> None:
        self("apply", "-f", "-", input=manifest)


def helm(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([settings.helm, *args], capture_output=True, text=True, timeout=timeout, env=settings.env())
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def eventually(probe: Callable[[], T | None], within: float, what: str, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within:g} s (last: {last!r})")
        time.sleep(interval)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class PortForward:
    """``kubectl port-forward svc/NAME :PORT`` on a free local port, restarted when it dies.

    A port-forward to a Service picks one of its pods when it starts and stays with it; when
    that pod goes away kubectl exits, and the next request starts a new one.
    """

    def __init__(self, kubectl: Kubectl, namespace: str, service: str, port: int = 80) -> None:
        self._kubectl = kubectl
        self._target = (namespace, service, port)
        self._process: subprocess.Popen[str] | None = None
        self._port = 0
        self._output: list[str] = []

    def _start(self) -> None:
        namespace, service, port = self._target
        settings = self._kubectl.settings
        process = subprocess.Popen(
            [settings.kubectl, "-n", namespace, "port-forward", "--address", "127.0.0.1", f"svc/{service}", f":{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=settings.env(),
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:
            # kubectl writes a line per connection; an unread pipe would fill and stall it.
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 30
        self._output = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self._output.append(line)
            found = _FORWARDING.search(line)
            if found:
                self._process, self._port = process, int(found.group(1))
                return
        process.kill()
        process.wait(timeout=10)
        raise AssertionError(f"kubectl port-forward svc/{service} did not start:\n{''.join(self._output)}")

    def port(self) -> int:
        if self._process is None or self._process.poll() is not None:
            self._start()
        return self._port

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        """One request through the forward; a broken forward is restarted (three tries in all)."""
        failure: Exception | None = None
        for _ in range(3):
            connection = http.client.HTTPConnection("127.0.0.1", self.port(), timeout=15)
            try:
                connection.request(method, path, body=body, headers=headers or {})
                answer = connection.getresponse()
                return Response(
                    status=answer.status,
                    headers={name.lower(): value for name, value in answer.getheaders()},
                    body=answer.read(),
                )
            except (ConnectionError, http.client.HTTPException, TimeoutError) as exc:
                failure = exc
                self.restart()
            finally:
                connection.close()
        raise AssertionError(f"{method} {path} through port-forward failed three times: {failure!r}")

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)
