"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from the intended time.

wrk is closed-loop: a connection sends its next request only when the previous answer came, so
a slow answer delays the requests behind it and they are never measured as late ("coordinated
omission"). Here, as in wrk2, each of ``--connections`` keep-alive connections has a schedule of
intended send times (``rate / connections`` apart, the connections staggered); a request that
goes out late because the one before it was slow still has its latency measured from the time it
was meant to be sent. wrk2 does not install from a registry here, so this is a small Python one.

The event loop runs on ``select()``, whose timeout has microsecond resolution; epoll (asyncio's
default) takes milliseconds, rounded up, so each timed send would wake up to 1 ms late. (Side by
side at 1,000 requests/s against nginx, load average 8 on 2 cores, neither was steady enough to
tell apart: the machine's load swamps both.) The generator's remaining timing error (the load
core is shared with the backend, and here with other work) is in every figure it prints, so
compare two targets measured by it side by side (bench/run.py subtracts the direct backend's
p99 from the gateway's), and read ``send_lag_p99_ms``: how late the sends went out.

Prints one JSON object. Run: ``python bench/open_loop.py --port 8080 --path /bench/hello --rate 3000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import selectors
import time

import httptools


class _Response:
    """Feeds bytes to httptools until one whole response has been read."""

    def __init__(self) -> None:
        self.done = False
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.done = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()


async def _connection(
    host: str,
    port: int,
    request: bytes,
    schedule: tuple[float, float, float, float],  # (first send, interval, measure from, stop)
    latencies: list[float],
    lags: list[float],
    errors: list[int],
) -> None:
    first, interval, measure_from, stop = schedule
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        intended = first
        while intended < stop:
            wait = intended - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = loop.time()
            writer.write(request)
            response = _Response()
            while not response.done:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                response.parser.feed_data(chunk)
            if intended >= measure_from:
                latencies.append(loop.time() - intended)
                lags.append(sent - intended)
                if not 200 <= response.status < 300:
                    errors[0] += 1
            intended += interval
    finally:
        writer.close()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def measure(
    host: str,
    port: int,
    path: str,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    connections: int,
    headers: tuple[str, ...] = (),
) -> dict[str, float]:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    request = "\r\n".join(lines).encode("latin-1")
    loop = asyncio.get_running_loop()
    interval = connections / rate
    start = loop.time() + 0.2  # time to open the connections
    measure_from = start + warmup
    stop = measure_from + seconds
    latencies: list[float] = []
    lags: list[float] = []
    errors = [0]
    cpu = time.process_time()
    await asyncio.gather(
        *(
            _connection(
                host,
                port,
                request,
                (start + i * interval / connections, interval, measure_from, stop),
                latencies,
                lags,
                errors,
            )
            for i in range(connections)
        )
    )
    return {
        "rate": rate,
        "requests": float(len(latencies)),
        "achieved_per_s": len(latencies) / seconds,
        "p50_ms": _percentile(latencies, 0.50),
        "p90_ms": _percentile(latencies, 0.90),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": _percentile(latencies, 1.0),
        "send_lag_p99_ms": _percentile(lags, 0.99),
        "non_2xx": float(errors[0]),
        "generator_cpu_s": time.process_time() - cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--rate", type=float, required=True, help="requests per second, in total")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("-H", "--header", action="append", default=[], help='"Name: value", repeatable')
    args = parser.parse_args()
    # A few connections only, so select()'s cost per wake-up is nothing next to its precision.
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    result = loop.run_until_complete(
        measure(
            args.host,
            args.port,
            args.path,
            rate=args.rate,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            headers=tuple(args.header),
        )
    )
    loop.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
