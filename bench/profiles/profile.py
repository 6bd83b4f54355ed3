"""Flame graphs of ``propylon serve -f bench/manifests`` under wrk (py-spy), for issue 15.

Run: ``python bench/profiles/profile.py [--path /bench/hello] [--out NAME] [-- serve options]``
Writes ``bench/profiles/NAME.svg``. Reuses bench/run.py's nginx backend and manifest copy; the
gateway runs on core 0 under ``py-spy record --native``, wrk and the backend on core 1.

Kept here (issue 15): ``flame-plain.svg`` / ``plain-raw.txt`` (collapsed stacks) are the plain
route on aiohttp's server before fast_server; ``flame-httptools.svg`` / ``httptools-raw.txt``
the same route on ``--http-server httptools`` (now the default). Recorded on a shared, loaded
machine: read the shares of the event loop's samples, not the absolute rates.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import run  # noqa: E402  (bench/run.py)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", default="/bench/hello")
    parser.add_argument("--out", default="flame-plain")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--raw", action="store_true", help="collapsed stacks (.txt) instead of an SVG")
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="propylon-profile-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        procs = run.Processes(work / "logs")
        try:
            backend = run.free_port()
            run.start_nginx(procs, "backend", work, backend, run.LOAD_CPU)
            run.wait_ready(f"http://127.0.0.1:{backend}/hello", procs, "backend")
            manifests = run.propylon_manifests(work, backend)
            port = run.free_port()
            argv = [sys.executable, "-P", "-m", "propylon", "serve", "-f", str(manifests), "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--internal-port", str(run.free_port()), "--admin-port", str(run.free_port())]
            svg = HERE / f"{args.out}.{'txt' if args.raw else 'svg'}"
            fmt = ["-f", "raw"] if args.raw else []
            spy = ["py-spy", "record", "--native", "-r", "200", *fmt, "-o", str(svg), "--"]
            procs.start("gateway", [*spy, *argv, *args.serve_args], cpu=run.TARGET_CPU)
            problem = run.wait_ready(f"http://127.0.0.1:{port}{args.path}", procs, "gateway")
            if problem:
                raise RuntimeError(problem)
            url = f"http://127.0.0.1:{port}{args.path}"
            raw: list[str] = []
            run.run_wrk(url, seconds=args.seconds, connections=32, threads=2, raw=raw)
            print(raw[0])
            # Recording stops on SIGINT (taskset execs py-spy: the pid is py-spy's), not after a
            # fixed time: a slow start on a loaded machine would end it before wrk does.
            spied = next(p for n, p in procs.running if n == "gateway")
            spied.send_signal(signal.SIGINT)
            for _ in range(100):
                if not procs.alive("gateway"):
                    break
                time.sleep(0.2)
            print(procs.log_tail("gateway", 60))
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
