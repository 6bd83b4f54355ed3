"""A body model the validator cannot build fails its route closed; the plan still builds.

The compiler refuses such models (tests/compiler/testdata/apis-models-unbuildable.in.yaml); a
snapshot written by a compiler that did not check them must still never take the gateway down,
and a ``$ref`` outside the model is never fetched.
"""

from __future__ import annotations

import dataclasses
import json

import aiohttp
from aiohttp import web

from propylon_config import model
from tests.proxy import conftest as c


def _validated(route: model.Route, body_model: str) -> model.Route:
    return dataclasses.replace(route, request_validation=model.RequestValidation(body_model=body_model))


async def test_an_unbuildable_model_answers_500_and_is_never_fetched(start_gateway) -> None:
    fetched: list[str] = []

    async def remote(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.json_response({"type": "string"})

    app = web.Application()
    app.router.add_get("/remote.json", remote)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        schemas = {
            "Remote": {"type": "object", "properties": {"a": {"$ref": f"http://127.0.0.1:{port}/remote.json"}}},
            "Dangling": {"type": "object", "properties": {"a": {"$ref": "#/definitions/Nope"}}},
            "Fine": {"type": "object", "required": ["a"]},
        }
        stage = c.stage([(f"POST /{name}", c.mock()) for name in schemas])
        stage = dataclasses.replace(stage, routes=tuple(_validated(r, r.path[1:]) for r in stage.routes))
        snapshot = c.config(stage)
        api = dataclasses.replace(snapshot.apis[0], models=tuple((n, json.dumps(s)) for n, s in schemas.items()))
        gw = await start_gateway(dataclasses.replace(snapshot, apis=(api,)))
        url = gw.addresses.urls()["public"] + "/prod/"
        async with aiohttp.ClientSession() as session:
            for name in ("Remote", "Dangling"):
                async with session.post(url + name, json={"a": "x"}) as resp:
                    assert resp.status == 500, name
                    assert resp.headers["x-propylon-error-type"] == "API_CONFIGURATION_ERROR"
            async with session.post(url + "Fine", json={"a": "x"}) as resp:
                assert resp.status == 200
            async with session.post(url + "Fine", json={}) as resp:
                assert resp.status == 400
        assert fetched == []
    finally:
        await runner.cleanup()
