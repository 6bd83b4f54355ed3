"""Snapshots with usage plans and API keys, built as the compiler would (keys hashed with a
test secret), and a clock the tests move instead of sleeping."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from propylon_config import key_hashing, model
from tests.proxy import conftest as c

SECRET = b"proxy-tests-key-hashing-secret!!"
ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdefgh"
CAROL = "carol-key-0123456789abcdef"  # disabled
DAVE = "dave-key-0123456789abcdefg"  # in a plan that does not cover the stage
# A Wednesday, 10:00 UTC: far from any DAY, WEEK or MONTH boundary.
START = datetime.datetime(2026, 3, 11, 10, 0, tzinfo=datetime.UTC).timestamp()


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def key(name: str, value: str, plans: tuple[str, ...], *, enabled: bool = True) -> model.ApiKey:
    return model.ApiKey(
        id=f"shop/{name}",
        namespace="shop",
        name=name,
        plans=plans,
        enabled=enabled,
        digest=key_hashing.digest(SECRET, value.encode()) if enabled else "",
    )


def keyed_config(
    backend_url: str,
    *,
    plan: dict[str, Any] | None = None,
    stage_kwargs: dict[str, Any] | None = None,
    route_settings: dict[str, model.Throttle] | None = None,
    secret: bytes = SECRET,
    gateway_throttle: model.Throttle | None = None,
) -> model.GatewayConfig:
    """Stage shop/prod: ``GET /keyed`` and ``GET /other`` need a key, ``GET /open`` does not."""
    routes = []
    for path, required in (("/keyed", True), ("/other", True), ("/open", False)):
        route = dataclasses.replace(c.route(f"GET {path}", c.http_proxy(backend_url + path)), api_key_required=required)
        stage_throttle = (stage_kwargs or {}).get("throttle")
        own = (route_settings or {}).get(route.route_key)
        route = dataclasses.replace(route, throttle=own or stage_throttle, throttle_from_route_settings=own is not None)
        routes.append(route)
    stage = dataclasses.replace(c.stage([], **(stage_kwargs or {})), routes=tuple(routes))
    basic = model.UsagePlan(id="shop/basic", namespace="shop", name="basic", **(plan or {}))
    if not basic.stages:
        basic = dataclasses.replace(basic, stages=(model.PlanStage(stage="shop/prod"),))
    elsewhere = model.UsagePlan(
        id="shop/elsewhere", namespace="shop", name="elsewhere", stages=(model.PlanStage(stage="shop/beta"),)
    )
    settings = model.Settings(gateway_throttle=gateway_throttle) if gateway_throttle else model.Settings()
    return c.config(
        stage,
        usage_plans=(basic, elsewhere),
        api_keys=(
            key("alice", ALICE, ("shop/basic",)),
            key("bob", BOB, ("shop/basic",)),
            key("carol", CAROL, ("shop/basic",), enabled=False),
            key("dave", DAVE, ("shop/elsewhere",)),
        ),
        key_hashing=model.KeyHashing(key_id=key_hashing.key_id(secret)),
        settings=settings,
    )
