"""The upstream client alone: N concurrent loops of GET through one ``Upstream``, for a while.

wrk measures a whole server; this isolates the client (no server-side Python in the process
measured), which is the part the two implementations differ in. Prints one JSON object:
requests/s and latency percentiles over the measured window (after a warm-up).

Run: ``python bench/client_loop.py --upstream pool --port 8081 --seconds 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from propylon_proxy import upstream, upstream_aiohttp, upstream_pool


async def measure(
    kind: str, port: int, path: str, seconds: float, warmup: float, concurrency: int
) -> dict[str, float | None]:
    client: upstream.Upstream = upstream_pool.PooledUpstream() if kind == "pool" else upstream_aiohttp.AiohttpUpstream()
    headers = [("Host", f"127.0.0.1:{port}")]
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    latencies: list[float] = []
    errors = 0
    cpu: list[float] = []

    async def clock_cpu() -> None:
        # CPU time of this process over the measured window only (warm-up excluded).
        await asyncio.sleep(max(0.0, start - loop.time()))
        cpu.append(time.process_time())
        await asyncio.sleep(max(0.0, stop - loop.time()))
        cpu.append(time.process_time())

    async def worker() -> None:
        nonlocal errors
        while (now := loop.time()) < stop:
            request = upstream.UpstreamRequest(
                method="GET", scheme="http", host="127.0.0.1", port=port, target=path, headers=headers
            )
            try:
                resp = await client.send(request)
                async for _ in resp.iter_chunks():
                    pass
                await resp.release()
                ok = resp.status == 200
            except upstream.UpstreamError:
                ok = False
            if now >= start:
                latencies.append(loop.time() - now)
                errors += not ok

    try:
        await asyncio.gather(clock_cpu(), *(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    latencies.sort()
    count = len(latencies)
    return {
        "requests_per_s": count / seconds,
        "requests": count,
        "p50_ms": latencies[count // 2] * 1000 if count else 0.0,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000 if count else 0.0,
        "non_2xx": errors,
        "socket_errors": 0,
        "cpu_us_per_request": (cpu[1] - cpu[0]) * 1e6 / count if count and len(cpu) == 2 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", choices=("aiohttp", "pool"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(measure(args.upstream, args.port, args.path, args.seconds, args.warmup, args.concurrency))
    result["wall_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
