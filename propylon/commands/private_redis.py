"""A private ``redis-server`` for ``serve --workers N`` when no ``--redis`` is given.

Limits and quotas must stay exact across worker processes, so they need one shared store. This
starts one on a unix socket in a fresh private folder (mode 0700, socket 0700, no TCP port, no
persistence), so nothing outside this user can reach it and nothing of it outlives ``serve``:
``stop`` kills it and removes the folder, and on Linux it dies with ``serve`` even on SIGKILL.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(signum: int) -> None:
    """Linux: have the kernel send ``signum`` to this process when its parent dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _kill_with_parent() -> None:
    die_with_parent(signal.SIGKILL)


class PrivateRedis:
    def __init__(self, executable: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="propylon-redis-"))
        self.socket_path = self.folder / "redis.sock"
        self._log = self.folder / "redis.log"
        argv = [executable, "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_kill_with_parent
            )

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until it answers PING; raises RuntimeError with its log if it exits or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.process.returncode}: {self._tail()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.settimeout(1.0)
                    conn.connect(str(self.socket_path))
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer within {timeout:g} s: {self._tail()}")

    def _tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-400:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def find() -> str | None:
    return shutil.which("redis-server")
