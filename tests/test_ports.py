"""The suite's port helper: ports an outgoing connection can never be given, each handed out once."""

from __future__ import annotations

import socket

import pytest

from tests import ports


def test_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    low = ports.ephemeral_low()
    picked = [ports.free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)
    if low > 11000 + 1000:
        assert all(10000 <= port < low for port in picked)


def test_a_port_with_a_listener_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        # The helper's random pick is made to offer the listener's port first.
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            free = spare.getsockname()[1]
        offers = iter([taken, taken, free])
        monkeypatch.setattr(ports, "ephemeral_low", lambda: 65000)
        monkeypatch.setattr(ports._random, "randint", lambda low, high: next(offers))
        assert not ports.bindable(taken)
        assert ports.free_port() == free


def test_a_cluster_port_has_its_bus_port_free_too() -> None:
    port = ports.free_port(also_free=10000)
    assert ports.bindable(port) and ports.bindable(port + 10000)
    assert port + 10000 < ports.ephemeral_low() or ports.ephemeral_low() <= 21000
