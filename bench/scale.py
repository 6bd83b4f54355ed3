"""The scaling targets of bench/run.py: many Apis and routes, compiled and served.

``manifests(apis, routes_per_api, backend_port)`` writes one Api + one Stage per Api (basePath
``/s<N>``), each Api with ``routes_per_api`` routes: ``GET /r<j>`` (literal) and, every other
one, ``GET /r<j>/{id}`` (a parameter), all HTTP_PROXY to the bench backend's ``/hello``. The
request every throughput target sends is ``PROBE_PATH``: a literal route of the LAST Stage, so
a lookup that scans stages pays for all of them. The same shape at 1 x 10 and at 1,000 x 10
compares 10 routes with 10,000.

``compile_seconds(apis, routes)`` times the real compiler in this process (documents already
parsed: the YAML reading is not the compiler's), best and median of a few runs.

Run alone: ``python bench/scale.py --apis 1000 --routes 10`` prints compile and plan build times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

NAMESPACE = "scale"


def documents(apis: int, routes_per_api: int, backend_port: int) -> list[dict[str, Any]]:
    """The manifest bodies: per Api its Stage right after it."""
    out: list[dict[str, Any]] = []
    url = f"http://127.0.0.1:{backend_port}/hello"
    for n in range(apis):
        routes = []
        for j in range(routes_per_api):
            # Half literal, half with a parameter: a realistic trie, not a flat dict.
            key = f"GET /r{j}" if j % 2 == 0 else f"GET /r{j}/{{id}}"
            routes.append({"routeKey": key, "integration": {"type": "HTTP_PROXY", "url": url}})
        out.append(
            {
                "apiVersion": "propylon.dev/v1alpha1",
                "kind": "Api",
                "metadata": {"name": f"a{n}", "namespace": NAMESPACE},
                "spec": {"routes": routes},
            }
        )
        out.append(
            {
                "apiVersion": "propylon.dev/v1alpha1",
                "kind": "Stage",
                "metadata": {"name": f"s{n}", "namespace": NAMESPACE},
                "spec": {"apiRef": f"a{n}", "basePath": f"/s{n}"},
            }
        )
    return out


def probe_path(apis: int) -> str:
    """The path the throughput targets ask: route ``GET /r0`` of the last Stage."""
    return f"/s{apis - 1}/r0"


def write_manifests(folder: Path, apis: int, routes_per_api: int, backend_port: int) -> Path:
    """One JSON document per line is not YAML's multi-document form; a JSON list is not either:
    write one ``.json`` file per document pair (JSON is YAML, and parses much faster)."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = documents(apis, routes_per_api, backend_port)
    # One file of many YAML documents in JSON flow style: valid YAML, read by the same loader.
    text = "\n---\n".join(json.dumps(d) for d in docs) + "\n"
    (folder / "scale.yaml").write_text(text)
    return folder


def compile_seconds(apis: int, routes_per_api: int, repeats: int = 3) -> dict[str, float]:
    """CPU seconds of ``compiler.compile`` on ``apis`` x ``routes_per_api`` (parsed documents)."""
    from propylon_compiler import compiler, diagnostics, manifests

    docs = [
        manifests.Document(origin=diagnostics.Origin(file="scale.yaml", document=i), body=body)
        for i, body in enumerate(documents(apis, routes_per_api, 8081))
    ]
    times: list[float] = []
    result = None
    for _ in range(repeats):
        # CPU time of this process: the machine is shared, and wall time counts other work too.
        started = time.process_time()
        result = compiler.compile(docs)
        times.append(time.process_time() - started)
    assert result is not None
    if result.diagnostics:
        raise RuntimeError(f"the scale manifests do not compile: {result.diagnostics[:3]}")
    routes = sum(len(s.routes) for s in result.snapshot.stages)
    return {"best_s": min(times), "median_s": statistics.median(times), "routes": float(routes)}


def plan_seconds(apis: int, routes_per_api: int) -> dict[str, float]:
    """CPU seconds to build the proxy's plan for that snapshot (what a swap costs), and the
    process's RSS growth while holding it."""
    import asyncio
    import io

    from propylon_compiler import compiler, diagnostics, manifests
    from propylon_proxy import gateway

    docs = [
        manifests.Document(origin=diagnostics.Origin(file="scale.yaml", document=i), body=body)
        for i, body in enumerate(documents(apis, routes_per_api, 8081))
    ]
    snapshot = compiler.compile(docs).snapshot

    async def build() -> dict[str, float]:
        gw = gateway.Gateway(log_stream=io.StringIO())
        before = rss_mib()
        started = time.process_time()
        gw.swap(snapshot)
        took = time.process_time() - started
        grown = rss_mib() - before
        await gw.runtime.close()
        return {"plan_s": took, "plan_rss_mib": grown}

    return asyncio.run(build())


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process, MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apis", type=int, default=1000)
    parser.add_argument("--routes", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps({**compile_seconds(args.apis, args.routes), **plan_seconds(args.apis, args.routes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
