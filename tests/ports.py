"""Loopback ports for the servers a test starts (serve, backends, redis-server, etcd, ...).

A port the kernel picks (bind to port 0, release, hand the number to a child process) lies in the
kernel's ephemeral range, and between that pick and the child's own bind any outgoing connection
on the machine (a readiness poll, a proxy's upstream, a JWKS fetch) may be given the same number
as its local port; the child's bind then fails with "address already in use". The suite lost
tests/serve/test_cors.py so on 2026-12-06, as the bench lost nginx-proxy on 2026-12-04. A port
below that range is never handed to an outgoing connection, so only a listener could take it;
a port this process has handed out is not handed out again, so two servers of one test never
race for one number either.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 10000
_handed_out: set[int] = set()
_random = random.Random()


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, also_free: int | None = None) -> int:
    """A port nothing listens on, below the ephemeral range, not handed out before by this process.

    ``also_free`` asks that ``port + also_free`` be free (and below the range) too, as Redis
    Cluster wants for its bus port. Falls back to a kernel-picked port only when the ephemeral
    range leaves no room below it.
    """
    offset = also_free or 0
    top = ephemeral_low() - 1 - offset
    if top - _LOWEST > 1000:
        for _ in range(500):
            port = _random.randint(_LOWEST, top)
            if port in _handed_out or (offset and port + offset in _handed_out):
                continue
            if bindable(port) and (not offset or bindable(port + offset)):
                _handed_out.add(port)
                if offset:
                    _handed_out.add(port + offset)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
