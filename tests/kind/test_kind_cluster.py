"""kind_cluster.PortForward against a stand-in kubectl: parsing, draining, restarting.

The kind tests reach the gateway only through ``kubectl port-forward``, so the helper must cope
with what the real command does: announce the local port on stdout, write a line per
connection for as long as it runs, and exit when the pod behind it goes away. The stand-in
below does exactly that with a real HTTP server on loopback; it runs here, with no cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import kind_cluster
import pytest

# A port-forward look-alike: serves HTTP on 127.0.0.1, floods stdout per connection (more than a
# pipe holds, so an undrained pipe would block it), and exits after MAX_REQUESTS requests.
STAND_IN = """
import http.server, json, os, sys
MAX_REQUESTS = int(os.environ.get("MAX_REQUESTS", "1000"))
served = 0

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global served
        served += 1
        for _ in range(800):
            print("Handling connection for 80 " + "x" * 100, flush=True)
        body = json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

if os.environ.get("NEVER_FORWARD"):
    print("error: unable to forward port because pod is not running", flush=True)
    sys.exit(1)
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(f"Forwarding from 127.0.0.1:{server.server_address[1]} -> 8080", flush=True)
while served < MAX_REQUESTS:
    server.handle_request()
"""


def _forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> kind_cluster.PortForward:
    script = tmp_path / "kubectl.py"
    script.write_text(STAND_IN)
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    kubectl.chmod(0o755)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = kind_cluster.Settings(
        kubeconfig=str(tmp_path / "kubeconfig"), kubectl=str(kubectl), helm="helm", release="r", namespace="ns"
    )
    return kind_cluster.PortForward(kind_cluster.Kubectl(settings), "ns", "gateway")


def test_forward_names_the_service_and_serves_many_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = _forward(tmp_path, monkeypatch)
    try:
        pids = set()
        for number in range(5):
            answer = forward.get(f"/prod/{number}")
            assert answer.status == 200
            body = answer.json()
            assert body["path"] == f"/prod/{number}"
            pids.add(body["pid"])
        assert body["argv"] == ["-n", "ns", "port-forward", "--address", "127.0.0.1", "svc/gateway", ":80"]
        assert len(pids) == 1, "one kubectl process serves them all (its output is drained)"
    finally:
        forward.close()


def test_forward_is_restarted_when_kubectl_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = _forward(tmp_path, monkeypatch, MAX_REQUESTS="2")
    try:
        pids = [forward.get("/").json()["pid"] for _ in range(5)]
        assert len(set(pids)) == 3, pids  # 2 + 2 + 1 requests
    finally:
        forward.close()


def test_a_forward_that_never_starts_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = _forward(tmp_path, monkeypatch, NEVER_FORWARD="1")
    with pytest.raises(AssertionError, match="pod is not running"):
        forward.get("/")
