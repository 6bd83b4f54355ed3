"""``serve --watch`` survives a config whose plan does not build: it says so and keeps watching.

The compiler refuses what it knows a plan cannot build (unbuildable models among them), so this
drives the watch loop itself with a gateway whose swap raises once, as a plan-building bug would.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
from pathlib import Path

from propylon.commands import serve
from propylon_compiler import compiler
from propylon_config import model

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "petstore.yaml"


class _Holder:
    current: object | None = None


class _FailingOnce:
    """Stands in for ``gateway.Gateway``: its first swap raises, later ones serve."""

    def __init__(self) -> None:
        self.holder = _Holder()
        self.served: list[str] = []
        self.failed = False

    def swap(self, config: model.GatewayConfig) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the plan does not build")
        self.served.append(config.version)


async def test_a_swap_that_raises_is_reported_and_the_watch_goes_on(tmp_path: Path) -> None:
    manifest = tmp_path / "petstore.yaml"
    shutil.copy(QUICKSTART, manifest)
    args = argparse.Namespace(paths=[str(tmp_path)], poll_interval=0.05)
    options = compiler.CompileOptions(sealing_secret=secrets.token_bytes(32), api_key_secret=secrets.token_bytes(32))
    said: list[str] = []
    gw = _FailingOnce()
    watch = asyncio.create_task(
        serve._watch(args, serve.LastGood(), gw, options, "nothing seen yet", said.append)  # type: ignore[arg-type]
    )
    try:
        async with asyncio.timeout(10):
            while not any(line.startswith("propylon: could not serve config") for line in said):
                await asyncio.sleep(0.02)
            assert "RuntimeError: the plan does not build" in said[-1] and "still serving nothing" in said[-1]
            manifest.write_text(QUICKSTART.read_text().replace("greeting: Hello", "greeting: Hello again"))
            while not gw.served:
                await asyncio.sleep(0.02)
        assert any(line.startswith("propylon: reloaded, config") for line in said)
    finally:
        watch.cancel()
