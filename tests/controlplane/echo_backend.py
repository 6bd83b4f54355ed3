"""A tiny HTTP backend for the control-plane tier: answers every request with JSON describing it.

Run inside a test network namespace (``ip netns exec NS python echo_backend.py --host ADDR``) so
that an EndpointSlice can name its address: the API server refuses loopback endpoints. The
``backend`` field tells a test which of several backends served a request.
"""

from __future__ import annotations

import argparse

from aiohttp import web


def make_app(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "backend": name,
                "method": request.method,
                "path": request.raw_path.split("?", 1)[0],
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.name), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
