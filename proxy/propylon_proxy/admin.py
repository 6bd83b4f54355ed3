"""The admin listener: health, readiness, metrics, and the token-guarded ``/admin/*`` API.

Kept on its own port so that no user route can shadow it and no public client can reach it by
accident (DESIGN.md §6, §8 "Listeners"). ``/admin/*`` needs ``Authorization: Bearer <token>``
when a token is configured; without one it answers loopback peers only (socket peer, never a
forwarding header).
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from aiohttp import web

from propylon_proxy import plans, runtime


def _json(status: int, payload: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")


def _is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


class AdminHandler:
    def __init__(self, run: runtime.Runtime, holder: plans.PlanHolder, token: str | None) -> None:
        self._runtime = run
        self._holder = holder
        self._token = token or None

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        response = await self._answer(request)
        # aiohttp would say "Python/3.x aiohttp/3.x": no listener advertises versions.
        response.headers["Server"] = "propylon"
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
            return web.Response(
                body=self._runtime.metrics.render().encode(),
                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            )
        if path == "/admin" or path.startswith("/admin/"):
            refused = self._refuse(request)
            if refused is not None:
                return refused
            if path == "/admin/config" and request.method == "GET":
                if plan is None:
                    return _json(503, {"message": "Service Unavailable"})
                stages = [
                    {"id": s.id, "basePath": s.base_path, "endpoint": s.endpoint.value, "routes": len(s.routes)}
                    for s in plan.config.stages
                ]
                return _json(200, {"version": plan.version, "stages": stages})
        return _json(404, {"message": "Not Found"})

    def _refuse(self, request: web.BaseRequest) -> web.Response | None:
        if self._token is not None:
            sent = request.headers.get("Authorization", "")
            scheme, _, value = sent.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token.encode()):
                return None
            return _json(401, {"message": "Unauthorized"})
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer and _is_loopback(str(peer[0])):
            return None
        return _json(403, {"message": "Forbidden"})
