"""Run a Gateway from a snapshot JSON file in its own process (so tests can measure its memory).

Usage: python gateway_process.py SNAPSHOT.json  -> prints the listener URLs as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from propylon_config import codec
from propylon_proxy import gateway


async def main(path: str) -> None:
    gw = gateway.Gateway()
    gw.swap(codec.loads(Path(path).read_text()))
    addresses = await gw.start("127.0.0.1", 0, 0, 0)
    print(json.dumps(addresses.urls()), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
