"""Flame graphs of the policy routes (issue 15, perf-policy): ``propylon-full`` and friends.

Run: ``python bench/profiles/profile_policy.py [--target propylon-full] [--out NAME] [--raw]``.
Starts the target exactly as bench/run.py does (same manifests, JWKS, tokens, headers, wrk
script), attaches ``py-spy record`` to the gateway for the length of one wrk run, and writes
``bench/profiles/NAME.svg`` (or ``.txt``, collapsed stacks, with ``--raw``). The gateway runs on
core 0, wrk and the backend on core 1. Read the shares of the samples, not the rates: the
machine is shared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import run  # noqa: E402  (bench/run.py)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="propylon-full")
    parser.add_argument("--out", default="")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--raw", action="store_true", help="collapsed stacks (.txt) instead of an SVG")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames; slows the gateway more)")
    parser.add_argument("--no-spy", action="store_true", help="only drive the target (to time it another way)")
    args = parser.parse_args()
    out = HERE / f"{args.out or args.target}.{'txt' if args.raw else 'svg'}"
    with tempfile.TemporaryDirectory(prefix="propylon-profile-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        procs = run.Processes(work / "logs")
        try:
            cold = 40_000 if args.target == "propylon-jwt-cold" else 1  # cycled: still cold (jwt_tokens)
            (target,) = run.start_targets(procs, work, [args.target], cold_tokens=cold)
            if target.skipped:
                raise RuntimeError(target.skipped)
            gateway = next(p for n, p in procs.running if n == args.target)
            # taskset execs python: the Popen's pid is the gateway's.
            spy = ["py-spy", "record", *(["--native"] if args.native else []), "-r", "200", "-p", str(gateway.pid)]
            spy += ["-o", str(out)]
            spy += ["-d", str(args.seconds + 2), *(["-f", "raw"] if args.raw else [])]
            spying = None if args.no_spy else subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                extra, script_args = list(target.wrk_args), []
                if target.cold_tokens is not None:
                    script_args = [str(target.cold_tokens), "0", "2"]
                raw: list[str] = []
                run.run_wrk(
                    target.url,
                    seconds=args.seconds,
                    connections=32,
                    threads=2,
                    extra=extra,
                    script_args=script_args,
                    raw=raw,
                    headers=target.headers,
                )
                print(raw[0])
            finally:
                if spying is not None:
                    _, err = spying.communicate(timeout=60)
                    print(err.decode(errors="replace")[-400:], file=sys.stderr)
        finally:
            procs.stop_all()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
