"""A tiny aiohttp reverse proxy over one ``Upstream`` implementation: bench's in-process harness.

It does what any HTTP_PROXY route must do and nothing of Propylon's policy (no routing trie,
throttles, logs): forward method, target, headers and body; stream the response back without
hop-by-hop headers. Comparing it run with ``--upstream aiohttp`` and ``--upstream pool`` isolates
the cost of the upstream client, which is what bench/RESULTS.md sets out to measure.

Run: ``python bench/mini_proxy.py --port 8083 --backend-port 8081 --upstream pool``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from propylon_proxy import upstream, upstream_aiohttp, upstream_pool

# Content-Length is not hop-by-hop here: kept, it lets both sides skip chunked framing.
HOP_BY_HOP = frozenset(
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]
)


def make_app(kind: str, backend_host: str, backend_port: int) -> web.Application:
    client: upstream.Upstream = upstream_pool.PooledUpstream() if kind == "pool" else upstream_aiohttp.AiohttpUpstream()

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = [
            (n.decode("latin-1"), v.decode("latin-1"))
            for n, v in request.raw_headers
            if n.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        body = request.content.iter_any() if request.body_exists else None
        try:
            resp = await client.send(
                upstream.UpstreamRequest(
                    method=request.method,
                    scheme="http",
                    host=backend_host,
                    port=backend_port,
                    target=request.raw_path,
                    headers=headers,
                    body=body,
                    timeout=29.0,
                )
            )
        except upstream.UpstreamTimeout:
            return web.json_response({"message": "Endpoint request timed out"}, status=504)
        except upstream.UpstreamError:
            return web.json_response({"message": "Internal server error"}, status=502)
        out = web.StreamResponse(status=resp.status, reason=resp.reason)
        for name, value in resp.headers:
            if name.lower() not in HOP_BY_HOP:
                out.headers.add(name, value)
        try:
            await out.prepare(request)
            async for chunk in resp.iter_chunks():
                await out.write(chunk)
            await out.write_eof()
        except ConnectionResetError:
            pass  # the client left (wrk does at the end of a run): nothing to answer
        finally:
            await resp.release()
        return out

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        yield
        await client.close()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-host", default="127.0.0.1")
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument("--upstream", choices=("aiohttp", "pool"), default="pool")
    args = parser.parse_args()
    app = make_app(args.upstream, args.backend_host, args.backend_port)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
