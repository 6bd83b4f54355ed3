"""The admin listener: health, readiness, metrics, and the token-guarded ``/admin/*`` API.

Kept on its own port so that no user route can shadow it and no public client can reach it by
accident (DESIGN.md §6, §8 "Listeners"). ``/admin/*`` needs ``Authorization: Bearer <token>``
when a token is configured; without one it answers loopback peers only (socket peer, never a
forwarding header).

Under ``serve --workers`` worker 0's listener speaks for every worker: ``/metrics`` is the sum
of every worker's page and a cache flush reaches every worker's cache. It asks its siblings
over their unix sockets (``siblings``: each worker's own handler, ``trusted``: the socket sits
in a folder only this ``serve`` can enter). A sibling that does not answer within
``SIBLING_TIMEOUT`` makes the call 503: a partial count would read as a counter reset, and a
partial flush would leave stale entries behind a 200.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from propylon_proxy import cache, gateway_responses, ids, metrics, plans, runtime, state, usage

SIBLING_TIMEOUT = 5.0


def _json(status: int, payload: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")


def _error(error_type: str) -> web.Response:
    """A section-3 response, rendered as every gateway error is (its ``x-request-id`` included)."""
    rendered = gateway_responses.render(error_type, ids.request_id())
    return web.Response(status=rendered.status, body=rendered.body, headers=rendered.headers)


def _is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


class AdminHandler:
    def __init__(
        self,
        run: runtime.Runtime,
        holder: plans.PlanHolder,
        token: str | None,
        *,
        siblings: Sequence[str] = (),
        trusted: bool = False,
    ) -> None:
        self._runtime = run
        self._holder = holder
        self._token = token or None
        self._siblings = tuple(siblings)  # the other workers' unix sockets (worker 0 only)
        self._trusted = trusted  # a sibling's private socket: no token, no peer check

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        response = await self._answer(request)
        # aiohttp would say "Python/3.x aiohttp/3.x": no listener advertises versions.
        response.headers["Server"] = "propylon"
        # DESIGN.md §8: every response carries x-request-id, the admin listener's too.
        response.headers.setdefault("x-request-id", ids.request_id())
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        plan = self._holder.current
        if path == "/healthz":
            return _json(200, {"status": "ok"})
        if path == "/readyz":
            if self._runtime.draining:
                return _json(503, {"status": "draining"})
            if plan is None:
                return _json(503, {"status": "not ready"})
            return _json(200, {"status": "ready", "version": plan.version})
        if path == "/metrics":
            page = self._runtime.metrics.render()
            if self._siblings:
                try:
                    page = metrics.merge([page, *await self._ask_siblings("GET", "/metrics")])
                except (OSError, aiohttp.ClientError, TimeoutError, ValueError):
                    return _error(gateway_responses.SERVICE_UNAVAILABLE)
            return web.Response(
                body=page.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
            )
        if path == "/admin" or path.startswith("/admin/"):
            refused = self._refuse(request)
            if refused is not None:
                return refused
            if path == "/admin/config" and request.method == "GET":
                if plan is None:
                    return _error(gateway_responses.SERVICE_UNAVAILABLE)
                stages = [
                    {"id": s.id, "basePath": s.base_path, "endpoint": s.endpoint.value, "routes": len(s.routes)}
                    for s in plan.config.stages
                ]
                return _json(200, {"version": plan.version, "stages": stages})
            if path.startswith("/admin/stages/") and path.endswith("/cache/flush") and request.method == "POST":
                stage_id = path.removeprefix("/admin/stages/").removesuffix("/cache/flush")
                return await self._flush(plan, stage_id, request.raw_path)
            if path.startswith("/admin/usage/") and request.method == "GET":
                return await self._usage(plan, path.removeprefix("/admin/usage/"))
        return _error(gateway_responses.RESOURCE_NOT_FOUND)

    async def _usage(self, plan: plans.Plan | None, plan_id: str) -> web.Response:
        limiter = self._runtime.limiter
        if plan is None or limiter is None:
            return _error(gateway_responses.SERVICE_UNAVAILABLE)
        try:
            found = await usage.report(plan.config, plan_id, self._runtime.clock(), limiter)
        except state.StoreUnavailable:
            return _error(gateway_responses.SERVICE_UNAVAILABLE)
        if found is None:
            return _error(gateway_responses.RESOURCE_NOT_FOUND)
        return _json(200, found)

    async def _flush(self, plan: plans.Plan | None, stage_id: str, raw_path: str) -> web.Response:
        """Every worker's cache of the stage (each has its own); ``flushed``: whether any had one."""
        if plan is None:
            return _error(gateway_responses.SERVICE_UNAVAILABLE)
        stage = next((s for s in plan.config.stages if s.id == stage_id), None)
        if stage is None:
            return _error(gateway_responses.RESOURCE_NOT_FOUND)
        flushed = cache.flush(self._runtime, stage)
        if self._siblings:
            try:
                answers = await self._ask_siblings("POST", raw_path)
                flushed = any([flushed, *(json.loads(answer)["flushed"] is True for answer in answers)])
            except (OSError, aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
                return _error(gateway_responses.SERVICE_UNAVAILABLE)
        return _json(200, {"stage": stage.id, "flushed": flushed})

    async def _ask_siblings(self, method: str, raw_path: str) -> list[str]:
        """Every sibling's 200 answer to ``method raw_path``, at once; raises when one fails."""

        async def ask(socket_path: str) -> str:
            connector = aiohttp.UnixConnector(path=socket_path)
            async with aiohttp.ClientSession(connector=connector) as session:
                url = "http://worker" + raw_path
                async with session.request(method, url, skip_auto_headers=("User-Agent",)) as response:
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
                    return await response.text()

        async with asyncio.timeout(SIBLING_TIMEOUT):
            return list(await asyncio.gather(*(ask(path) for path in self._siblings)))

    def _refuse(self, request: web.BaseRequest) -> web.Response | None:
        if self._trusted:
            return None
        if self._token is not None:
            sent = request.headers.get("Authorization", "")
            scheme, _, value = sent.partition(" ")
            # surrogateescape: a header's bytes that are not UTF-8 are a wrong token, not a 500.
            sent_token = value.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() == "bearer" and hmac.compare_digest(sent_token, self._token.encode()):
                return None
            return _error(gateway_responses.UNAUTHORIZED)
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer and _is_loopback(str(peer[0])):
            return None
        return _error(gateway_responses.ACCESS_DENIED)
