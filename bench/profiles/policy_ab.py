"""Side-by-side CPU per request of the policy targets on two revisions (issue 15, perf-policy).

Written when bench/run.py gave ``--baseline`` twins to neither propylon-full nor the JWT targets
(since perf-policy2 it does: ``run.py --targets propylon-posted,propylon-full --baseline REV``);
this runs both revisions' gateways at once, on the same manifests, tokens, JWKS and backend as
bench/run.py, and drives each route of each in interleaved rounds:

  posted   POST /bench/posted (bench/validated.lua's body, no policy)
  full     POST /full/order with the API key and a warm RS256 token (the "full policy" route)
  cold     GET /bench/jwt with a new RS256 token per request
  pool     GET /bench/hello (the plain route)

Run: ``python bench/profiles/policy_ab.py --revs main,HEAD --rounds 5 --seconds 3``
(``.`` means the working tree). Prints CPU µs per request (median of the rounds, then each
round) and the ratios issue 15 judges: full/posted and cold/pool per core.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import jwt_tokens  # noqa: E402  (bench/jwt_tokens.py)
import run  # noqa: E402  (bench/run.py)

ROUTES = ("posted", "full", "cold", "pool")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--revs", default="main,.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    revs = args.revs.split(",")
    with tempfile.TemporaryDirectory(prefix="propylon-policy-ab-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        procs = run.Processes(work / "logs")
        try:
            backend = run.free_port()
            run.start_nginx(procs, "backend", work, backend, run.LOAD_CPU)
            run.wait_ready(f"http://127.0.0.1:{backend}/hello", procs, "backend")
            cold_count = int(4000 * args.seconds * args.rounds * len(revs)) + 1000
            print(f"signing {cold_count:,} tokens", file=sys.stderr)
            jwt = jwt_tokens.make(work / "jwt", cold_count)
            jwks_port = run.free_port()
            argv = [sys.executable, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1"]
            procs.start("jwks", [*argv, "--directory", str(work / "jwt")], cpu=run.LOAD_CPU)
            run.wait_ready(f"http://127.0.0.1:{jwks_port}/jwks.json", procs, "jwks")
            manifests = run.propylon_manifests(work, backend, jwks_port)
            ports = {}
            for rev in revs:
                ports[rev] = _start(procs, work, rev, manifests)
            cursor = 0
            cpu: dict[tuple[str, str], list[float]] = {(rev, r): [] for rev in revs for r in ROUTES}
            cells = [(rev, r) for r in ROUTES for rev in revs]
            for n in range(args.rounds):
                shift = n % len(cells)
                for rev, route in cells[shift:] + cells[:shift]:
                    before = procs.cpu_seconds(rev)
                    raw: list[str] = []
                    out = _drive(route, ports[rev], jwt, args.seconds, cursor, raw)
                    spent = procs.cpu_seconds(rev) - before
                    if route == "cold":
                        used, _ = jwt_tokens.parse_used(raw[0])
                        cursor += used * 2 + 10
                    if out["non_2xx"] or out["socket_errors"]:
                        print(f"warning: {rev} {route}: {out['non_2xx']} non-2xx, {out['socket_errors']} errors")
                    cpu[(rev, route)].append(spent / out["requests"] * 1e6)
            print("| rev | " + " | ".join(ROUTES) + " | full/posted | cold/pool |")
            print("|---|" + "---|" * (len(ROUTES) + 2))
            for rev in revs:
                med = {r: statistics.median(cpu[(rev, r)]) for r in ROUTES}
                cells_text = " | ".join(f"{med[r]:.1f}" for r in ROUTES)
                print(
                    f"| {rev} | {cells_text} | {med['posted'] / med['full']:.2f}x | {med['pool'] / med['cold']:.2f}x |"
                )
            for rev in revs:
                for r in ROUTES:
                    print(f"  {rev} {r}: " + " ".join(f"{x:.0f}" for x in cpu[(rev, r)]))
        finally:
            procs.stop_all()
    return 0


def _start(procs: run.Processes, work: Path, rev: str, manifests: Path) -> int:
    port = run.free_port()
    env = {"PROPYLON_UPSTREAM": "pool"}
    if rev != ".":
        code = run.baseline_tree(work, rev)
        env["PYTHONPATH"] = code
    argv = [sys.executable, "-P", "-m", "propylon", "serve", "-f", str(manifests), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--internal-port", str(run.free_port()), "--admin-port", str(run.free_port())]
    argv += ["--gateway-rate", "1000000", "--gateway-burst", "100000"]
    procs.start(rev, argv, cpu=run.TARGET_CPU, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            break
        time.sleep(0.1)
    problem = run.wait_ready(f"http://127.0.0.1:{port}/bench/hello", procs, rev)
    if problem:
        raise RuntimeError(f"{rev}: {problem}")
    return port


def _drive(
    route: str, port: int, jwt: dict[str, object], seconds: float, cursor: int, raw: list[str]
) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}"
    lua = ["-s", str(run.BENCH / "validated.lua")]
    if route == "posted":
        return run.run_wrk(base + "/bench/posted", seconds=seconds, connections=32, threads=2, extra=lua, raw=raw)
    if route == "full":
        headers = (run.KEY_HEADER, f"Authorization: Bearer {jwt['warm']}")
        return run.run_wrk(
            base + "/full/order", seconds=seconds, connections=32, threads=2, extra=lua, headers=headers, raw=raw
        )
    if route == "cold":
        return run.run_wrk(
            base + "/bench/jwt",
            seconds=seconds,
            connections=32,
            threads=2,
            extra=["-s", str(jwt["script"])],
            script_args=[str(jwt["tokens"]), str(cursor), "2"],
            raw=raw,
        )
    return run.run_wrk(base + "/bench/hello", seconds=seconds, connections=32, threads=2, raw=raw)


if __name__ == "__main__":
    sys.exit(main())
