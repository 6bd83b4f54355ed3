"""Which side a request lands on (issue 13): the injected draw, the sticky hash, the bounds."""

from __future__ import annotations

import dataclasses

from propylon_config import model
from propylon_proxy import canary, hygiene, routing
from tests.proxy import conftest as c


def _stage(percent: float) -> model.Stage:
    main = c.stage([("GET /x", c.mock(body="main"))])
    side = model.Canary(
        percent_traffic=percent, api="shop/users-v2", routes=(c.route("GET /x", c.mock(body="canary")),)
    )
    return dataclasses.replace(main, canary=side)


def _side(table: routing.StageTable, key: str | None = None) -> bool:
    _, match, _ = table.find("GET", "h", hygiene.split_target("/prod/x"), canary_key=key)
    assert match is not None
    assert match.route.integration.mock is not None
    assert (match.route.integration.mock.body == "canary") is match.canary
    return match.canary


def test_draw_below_the_percentage_is_canary() -> None:
    draws = iter([0.0999, 0.1, 0.5, 0.0])
    table = routing.StageTable([_stage(10)], draw=lambda: next(draws))
    assert [_side(table) for _ in range(4)] == [True, False, False, True]


def test_zero_and_hundred_never_draw() -> None:
    def no_draw() -> float:
        raise AssertionError("a 0 % or 100 % canary needs no draw")

    assert _side(routing.StageTable([_stage(0)], draw=no_draw)) is False
    assert _side(routing.StageTable([_stage(100)], draw=no_draw)) is True


def test_sticky_key_ignores_the_draw_and_follows_its_hash() -> None:
    def no_draw() -> float:
        raise AssertionError("a sticky request must not draw")

    table = routing.StageTable([_stage(37.5)], draw=no_draw)
    for key in ("alice", "bob", "a" * 300, "ünïcode"):
        assert _side(table, key) is (canary.key_position(key) < 37.5)


def test_key_position_is_stable_and_spread() -> None:
    # Fixed values: a replica built elsewhere or later must place a key identically.
    # blake2b-64 of the UTF-8 value, big-endian, scaled to [0, 100); documented in docs/canary.md.
    assert round(canary.key_position("alice"), 6) == 30.436588
    assert round(canary.key_position("bob"), 6) == 45.683546
    positions = [canary.key_position(f"user-{i}") for i in range(10_000)]
    assert all(0.0 <= p < 100.0 for p in positions)
    assert 9.0 < 100.0 * sum(p < 10.0 for p in positions) / len(positions) < 11.0
