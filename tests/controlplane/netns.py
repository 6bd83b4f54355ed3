"""Test hosts in network namespaces: real, non-loopback backend addresses that this run owns.

The API server refuses loopback addresses in EndpointSlices, and tests may send traffic only to
loopback or to hosts they created themselves. So each ``TestHost`` is a fresh network namespace
(``propylon-test-<random>``) joined to the host by a veth pair on a /30 taken from 10.203.0.0/16:
the host end gets ``.1``, the namespace end ``.2``, and an HTTP backend listens on ``.2`` inside
the namespace. Nothing else is ever dialled. ``close()`` always deletes the namespace (which
takes the veth pair with it). Needs root and iproute2.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

POOL = ipaddress.ip_network("10.203.0.0/16")
BACKEND_PORT = 8080  # the namespace is ours alone, so a fixed port cannot clash
ECHO_BACKEND = pathlib.Path(__file__).with_name("echo_backend.py")
READY_TIMEOUT = 20.0


def unavailable_reason() -> str | None:
    """Why test hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout
    networks = []
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            networks.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    return networks


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of the pool that no interface on the host uses (other test runs may hold some)."""
    used = _used_networks()
    candidates = list(POOL.subnets(new_prefix=30))
    for _ in range(200):
        subnet = random.choice(candidates)
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free /30 left in 10.203.0.0/16")


class TestHost:
    """One network namespace with one echo backend; ``address`` is where it listens."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, backend_name: str, *, function: str | None = None, path: str | None = None) -> None:
        token = secrets.token_hex(4)
        self.namespace = f"propylon-test-{token}"
        self.host_veth = f"pth{token}"  # interface names are at most 15 characters
        self.peer_veth = f"ptn{token}"
        self.backend_name = backend_name
        subnet = _free_subnet()
        hosts = list(subnet.hosts())
        self.gateway_address = str(hosts[0])
        self.address = str(hosts[1])
        self.port = BACKEND_PORT
        self.prefix = subnet.prefixlen
        self.process: subprocess.Popen[bytes] | None = None
        self.function, self.function_path = function, path

    def _command(self) -> list[str]:
        if self.function is not None:  # a Lambda handler as the function Service
            argv = [sys.executable, "-m", "propylon.function", self.function, "--path", self.function_path or "."]
            return [*argv, "--host", self.address, "--port", str(self.port)]
        argv = [sys.executable, str(ECHO_BACKEND), "--host", self.address, "--port", str(self.port)]
        return [*argv, "--name", self.backend_name]

    def start(self) -> TestHost:
        try:
            _ip("netns", "add", self.namespace)
            _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", self.peer_veth)
            _ip("link", "set", self.peer_veth, "netns", self.namespace)
            _ip("addr", "add", f"{self.gateway_address}/{self.prefix}", "dev", self.host_veth)
            _ip("link", "set", self.host_veth, "up")
            _ip("-n", self.namespace, "addr", "add", f"{self.address}/{self.prefix}", "dev", self.peer_veth)
            _ip("-n", self.namespace, "link", "set", self.peer_veth, "up")
            _ip("-n", self.namespace, "link", "set", "lo", "up")
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *self._command()],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"backend in {self.namespace} exited with {self.process.returncode}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"backend {self.address}:{self.port} in {self.namespace} not listening")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.process.pid, sig)
                    self.process.wait(timeout=10)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        _ip("netns", "del", self.namespace, check=False)
        _ip("link", "del", self.host_veth, check=False)
