"""A 50 MB response passes through the proxy with bounded memory, even to a slow reader."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from propylon_config import codec
from tests.proxy import conftest as c
from tests.proxy.conftest import both_servers  # noqa: F401  (every test here runs on both servers)

SIZE = 50 * 1024 * 1024
RSS_BOUND = 24 * 1024 * 1024  # far below the body size: the body is never held whole


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


async def test_50mb_response_streams_with_bounded_memory(backend, tmp_path):
    snapshot = c.config(c.stage([("ANY /{proxy+}", c.http_proxy(backend.url + "/{proxy}"))]))
    snapshot_file = tmp_path / "snapshot.json"
    snapshot_file.write_text(codec.dumps(snapshot))
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gateway_process.py")), str(snapshot_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        base = json.loads(line)["public"]
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            # Warm up (imports, first connection), then take the baseline.
            async with session.get(f"{base}/prod/big?n=1024") as resp:
                assert len(await resp.read()) == 1024
            baseline = _kib(proc.pid, "VmRSS")
            # Reset the peak so VmHWM reflects only what follows (Linux: "5" clears the HWM).
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            received = 0
            async with session.get(f"{base}/prod/big?n={SIZE}") as resp:
                assert resp.status == 200
                assert int(resp.headers["Content-Length"]) == SIZE
                async for chunk in resp.content.iter_chunked(65536):
                    received += len(chunk)
                    if received <= 65536 * 16 and received % (65536 * 8) == 0:
                        # A slow reader: the proxy must stop reading the backend meanwhile.
                        await asyncio.sleep(0.5)
        peak = _kib(proc.pid, "VmHWM")
        growth = peak - baseline
        print(
            f"50 MB streamed: proxy RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
            f"growth {growth / 2**20:.1f} MiB"
        )
        assert received == SIZE
        assert growth < RSS_BOUND
    finally:
        proc.terminate()
        proc.wait(10)
