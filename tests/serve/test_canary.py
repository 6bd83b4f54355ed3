"""Issue 13, canary Stages through `propylon serve` (DESIGN.md section 1, Stage ``canary``).

Two real loopback backends stand for the main and the canary Api. Over 2,000 requests the
share the canary backend sees stays within 5 points of ``percentTraffic``; canary requests
carry the canary's variables (compiled into the URL's header mapping, and read at run time by
a ``$stageVariables`` mapping); a ``x-propylon-canary-key`` keeps a client on one side; a
canary whose Api is missing sends everything to the main Api; the access log marks the side.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from propylon_proxy import canary
from tests.serve.test_serve import Served

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /who"
      integration:
        type: HTTP_PROXY
        url: "http://127.0.0.1:{main}/who"
        requestParameters:
          "overwrite:header.X-Table": "${{stageVariables.table}}"
          "append:querystring.alias": "$stageVariables.alias"
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users-v2, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /who"
      integration:
        type: HTTP_PROXY
        url: "http://127.0.0.1:{canary}/who"
        requestParameters:
          "overwrite:header.X-Table": "${{stageVariables.table}}"
          "append:querystring.alias": "$stageVariables.alias"
{stages}
"""

STAGE = """\
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: {name}, namespace: shop}}
spec:
  apiRef: users
  accessLog: {{enabled: true}}
  variables: {{table: users-prod, alias: prod}}
  canary:
    {api_ref}percentTraffic: {percent}
    variables: {{table: users-canary, alias: canary}}
"""

PERCENTS = {"p0": 0, "p10": 10, "p50": 50, "p100": 100}
REQUESTS = 2000


def _stages() -> str:
    stages = [STAGE.format(name=n, api_ref="apiRef: users-v2\n    ", percent=p) for n, p in PERCENTS.items()]
    stages.append(STAGE.format(name="same", api_ref="", percent=50))  # the canary uses the same Api
    stages.append(STAGE.format(name="gone", api_ref="apiRef: users-v3\n    ", percent=100))  # no such Api
    cached = STAGE.format(name="cached", api_ref="apiRef: users-v2\n    ", percent=50)
    stages.append(cached.replace("  accessLog:", "  cache: {enabled: true, ttlSeconds: 300}\n  accessLog:"))
    return "".join(stages)


class Backends:
    """The main and the canary backend: aiohttp servers on loopback in a thread of their own."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runners = [self.loop.run_until_complete(self._start(side)) for side in ("main", "canary")]
        self._ready.set()
        self.loop.run_forever()

    async def _start(self, side: str) -> web.AppRunner:
        async def who(request: web.Request) -> web.Response:
            return web.json_response(
                {"side": side, "table": request.headers.get("X-Table"), "alias": request.query.getall("alias", [])}
            )

        app = web.Application()
        app.router.add_get("/who", who)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.ports[side] = runner.addresses[0][1]
        return runner

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("canary")
    backends = Backends()
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(
        MANIFESTS.format(main=backends.ports["main"], canary=backends.ports["canary"], stages=_stages())
    )
    served = Served(folder, tmp)
    try:
        yield served
    finally:
        served.stop()
        backends.stop()


async def _ask(url: str, count: int, keys: list[str | None]) -> list[dict[str, object]]:
    """``count`` GETs over a few keep-alive connections; ``keys[i % len(keys)]`` is request i's sticky key."""
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int) -> dict[str, object]:
            key = keys[index % len(keys)]
            headers = {"x-propylon-canary-key": key} if key is not None else {}
            async with session.get(url, headers=headers) as response:
                assert response.status == 200, await response.text()
                body: dict[str, object] = await response.json()
                return body

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def _canary_share(answers: list[dict[str, object]]) -> float:
    return 100.0 * sum(a["side"] == "canary" for a in answers) / len(answers)


@pytest.mark.parametrize("stage", list(PERCENTS))
def test_split_follows_percent_traffic(gateway: Served, stage: str) -> None:
    answers = asyncio.run(_ask(gateway.url(f"/{stage}/who"), REQUESTS, [None]))
    share = _canary_share(answers)
    assert abs(share - PERCENTS[stage]) <= 5, f"{stage}: {share:.1f}% canary"


def test_split_by_sticky_keys_follows_percent_traffic(gateway: Served) -> None:
    keys: list[str | None] = [uuid.uuid4().hex for _ in range(REQUESTS)]
    share = _canary_share(asyncio.run(_ask(gateway.url("/p10/who"), REQUESTS, keys)))
    assert abs(share - 10) <= 5, f"{share:.1f}% canary"


def test_canary_requests_carry_canary_variables_and_reach_the_canary_api(gateway: Served) -> None:
    answers = asyncio.run(_ask(gateway.url("/p50/who"), 200, [None]))
    by_side = {str(a["side"]): a for a in answers}
    assert by_side["main"] == {"side": "main", "table": "users-prod", "alias": ["prod"]}
    assert by_side["canary"] == {"side": "canary", "table": "users-canary", "alias": ["canary"]}
    for answer in answers:  # never a mix of one side's backend and the other's variables
        assert answer == by_side[str(answer["side"])]


def test_canary_of_the_same_api_uses_the_canary_variables(gateway: Served) -> None:
    answers = asyncio.run(_ask(gateway.url("/same/who"), 200, [None]))
    assert {a["side"] for a in answers} == {"main"}  # one Api, one backend
    tables = {str(a["table"]): a["alias"] for a in answers}
    assert tables == {"users-prod": ["prod"], "users-canary": ["canary"]}


def test_sticky_key_lands_on_the_same_side_every_time(gateway: Served) -> None:
    sides: set[str] = set()
    for _ in range(20):
        key = uuid.uuid4().hex
        answers = asyncio.run(_ask(gateway.url("/p50/who"), 50, [key]))
        seen = {str(a["side"]) for a in answers}
        assert len(seen) == 1, f"key {key} saw {seen}"
        sides |= seen
    assert sides == {"main", "canary"}  # 20 keys at 50 %: both sides (odds of not: 2 in a million)


def test_missing_canary_api_sends_everything_to_the_main_api(gateway: Served) -> None:
    answers = asyncio.run(_ask(gateway.url("/gone/who"), 100, [None]))
    assert {str(a["side"]) for a in answers} == {"main"}
    assert {str(a["table"]) for a in answers} == {"users-prod"}
    assert "spec.canary.apiRef" in gateway.stderr()


def test_access_log_marks_canary_requests(gateway: Served) -> None:
    asyncio.run(_ask(gateway.url("/p100/who?mark=log"), 3, [None]))
    asyncio.run(_ask(gateway.url("/p0/who?mark=log"), 3, [None]))
    lines = [json.loads(line) for line in gateway.stdout_path.read_text().splitlines() if line.startswith("{")]
    marked = {(line["stage"], line["canary"]) for line in lines if line.get("path", "").startswith(("/p100/", "/p0/"))}
    assert ("p100", True) in marked and ("p0", False) in marked
    assert ("p100", False) not in marked and ("p0", True) not in marked


def test_cache_keeps_the_sides_apart(gateway: Served) -> None:
    keys = [uuid.uuid4().hex for _ in range(200)]
    main_key = next(k for k in keys if canary.key_position(k) >= 50)
    canary_key = next(k for k in keys if canary.key_position(k) < 50)
    url = gateway.url("/cached/who")
    first = asyncio.run(_ask(url, 1, [main_key]))  # stored for the main side
    assert [a["side"] for a in first] == ["main"]
    # A canary request for the same URL must not be answered from the main side's entry.
    assert [a["side"] for a in asyncio.run(_ask(url, 1, [canary_key]))] == ["canary"]
    assert [a["side"] for a in asyncio.run(_ask(url, 1, [main_key]))] == ["main"]
