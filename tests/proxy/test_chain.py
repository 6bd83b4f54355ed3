"""The step chain (issue 7): steps that answer, refuse with headers, and act on the way out.

Test steps are added the way a feature adds its own: a factory in ``chains.STEP_FACTORIES``,
built once per plan by a real gateway, driven by real HTTP requests to a loopback backend.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import aiohttp
import multidict
import pytest

from propylon_config import model
from propylon_proxy import chains, context, replies, steps
from tests.proxy import conftest as c


class Recorder:
    """A step that records its calls and does what it is told."""

    def __init__(self, name: str, log: list[str], before: steps.Outcome = None, header: str | None = None) -> None:
        self.name = name
        self._log = log
        self._before = before
        self._header = header
        self.after: steps.AfterHook | None = self._after if header else None

    async def before(self, ctx: context.RequestContext) -> steps.Outcome:
        self._log.append(f"before:{self.name}")
        return self._before

    async def _after(self, ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply:
        self._log.append(f"after:{self.name}:{reply.status}")
        assert self._header is not None
        reply.headers.append((self._header, str(reply.status)))
        return reply


def _install(monkeypatch: pytest.MonkeyPatch, *made: Callable[[steps.RouteSetup], steps.Step | None]) -> None:
    monkeypatch.setattr(chains, "STEP_FACTORIES", (*made, *chains.STEP_FACTORIES))


async def _get(gw, path: str) -> tuple[int, multidict.CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["public"] + path) as resp:
        return resp.status, multidict.CIMultiDict(resp.headers), await resp.read()


async def test_a_step_that_answers_stops_the_chain_and_skips_the_integration(monkeypatch, start_gateway, backend):
    log: list[str] = []
    answer = replies.Reply(status=204, headers=[("X-Answered", "by-step")])
    _install(
        monkeypatch,
        lambda setup: Recorder("outer", log, header="X-Outer"),
        lambda setup: Recorder("answering", log, before=answer, header="X-Own"),
        lambda setup: Recorder("never", log),
    )
    gw = await start_gateway(c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))])))
    status, headers, body = await _get(gw, "/prod/x")
    assert status == 204
    assert headers["X-Answered"] == "by-step"
    assert headers["X-Outer"] == "204"  # the earlier step's after saw the answer
    assert "X-Own" not in headers  # a step never post-processes its own answer
    assert body == b""
    assert log == ["before:outer", "before:answering", "after:outer:204"]
    assert backend.received == []


async def test_a_refusal_carries_its_headers_and_the_stages_override(monkeypatch, start_gateway, backend):
    refusal = replies.refuse("THROTTLED", ("Retry-After", "7"), ("X-Limit", "plan"))
    _install(monkeypatch, lambda setup: Recorder("limit", [], before=refusal))
    override = model.GatewayResponse(
        status_code=429, body='{"message":"slow down","type":"$context.error.responseType"}'
    )
    snapshot = c.config(
        c.stage([("GET /x", c.http_proxy(backend.url + "/x"))], gateway_responses=(("THROTTLED", override),))
    )
    gw = await start_gateway(snapshot)
    status, headers, body = await _get(gw, "/prod/x")
    assert status == 429
    assert headers["Retry-After"] == "7"  # the step's value replaces the rendered default
    assert headers["X-Limit"] == "plan"
    assert headers["x-propylon-error-type"] == "THROTTLED"
    assert json.loads(body) == {"message": "slow down", "type": "THROTTLED"}
    assert backend.received == []


async def test_an_overrides_own_headers_win_over_the_refusals_and_vary_is_joined(monkeypatch, start_gateway, backend):
    # DESIGN.md §1's own example override sets Retry-After: what the Api's owner wrote is sent.
    refusal = replies.refuse("THROTTLED", ("Retry-After", "7"), ("Vary", "Origin"), ("X-Limit", "plan"))
    _install(monkeypatch, lambda setup: Recorder("limit", [], before=refusal))
    override = model.GatewayResponse(
        status_code=429, headers=(("Retry-After", "30"), ("Vary", "Accept")), body='{"message":"slow down"}'
    )
    snapshot = c.config(
        c.stage([("GET /x", c.http_proxy(backend.url + "/x"))], gateway_responses=(("THROTTLED", override),))
    )
    gw = await start_gateway(snapshot)
    status, headers, body = await _get(gw, "/prod/x")
    assert status == 429
    assert headers.getall("Retry-After") == ["30"]
    assert headers.getall("Vary") == ["Accept, Origin"]  # a cache still keys on the gateway's Origin
    assert headers["X-Limit"] == "plan"
    assert json.loads(body) == {"message": "slow down"}


async def test_after_hooks_run_in_reverse_order_and_see_the_integrations_response(monkeypatch, start_gateway, backend):
    log: list[str] = []
    _install(
        monkeypatch,
        lambda setup: Recorder("first", log, header="X-First"),
        lambda setup: Recorder("second", log, header="X-Second"),
    )
    gw = await start_gateway(c.config(c.stage([("GET /x", c.http_proxy(backend.url + "/x"))])))
    status, headers, body = await _get(gw, "/prod/x")
    assert status == 200
    assert json.loads(body)["target"] == "/x"  # the backend's streamed body, untouched
    assert headers["X-Backend"] == "echo"
    assert headers["X-First"] == headers["X-Second"] == "200"
    assert log == ["before:first", "before:second", "after:second:200", "after:first:200"]


async def test_steps_are_built_once_per_plan_not_per_request(monkeypatch, start_gateway):
    built: list[str] = []

    def factory(setup: steps.RouteSetup) -> steps.Step | None:
        built.append(setup.route.id)
        return None

    _install(monkeypatch, factory)
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock()), ("GET /y", c.mock())])))
    for _ in range(3):
        assert (await _get(gw, "/prod/x"))[0] == 200
    assert sorted(built) == ["shop/prod/GET /x", "shop/prod/GET /y"]


async def test_what_a_step_learns_reaches_mappings_and_the_access_log(monkeypatch, start_gateway, backend):
    async def learn(ctx: context.RequestContext) -> None:
        ctx.principal_id = "user-42"
        ctx.claims = {"sub": "user-42", "email": "a@example.com", "admin": True}
        ctx.authorizer_context = {"tenant": "acme"}
        ctx.api_key_id = "alice"
        ctx.cache = "miss"
        return None

    _install(monkeypatch, lambda setup: steps.BeforeOnly(name="learn", check=learn))
    mapping = [
        model.ParameterMapping(
            action=model.MappingAction.OVERWRITE,
            target=model.MappingTarget.HEADER,
            name=name,
            value=value,
        )
        for name, value in [
            ("X-User", "$context.authorizer.claims.sub"),
            ("X-Email", "$context.authorizer.claims.email"),
            ("X-Admin", "$context.authorizer.claims.admin"),
            ("X-Tenant", "$context.authorizer.tenant"),
            ("X-Principal", "$context.authorizer.principalId"),
        ]
    ]
    integration = c.http_proxy(backend.url + "/x", request_parameters=tuple(mapping))
    stream = io.StringIO()
    gw = await start_gateway(c.config(c.stage([("GET /x", integration)], access_log=True)), log_stream=stream)
    status, headers, _ = await _get(gw, "/prod/x")
    assert status == 200
    sent = dict(backend.received[0]["headers"])
    assert sent["X-User"] == "user-42"
    assert sent["X-Email"] == "a@example.com"
    assert sent["X-Admin"] == "true"
    assert sent["X-Tenant"] == "acme"
    assert sent["X-Principal"] == "user-42"
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["principalId"] == "user-42"
    assert line["apiKeyId"] == "alice"
    assert line["cache"] == "miss"
    assert line["requestId"] == headers["x-request-id"]
