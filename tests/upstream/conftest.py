"""Fixtures for the upstream tests: every test in the table runs once per implementation."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from propylon_proxy import upstream, upstream_aiohttp, upstream_pool

IMPLEMENTATIONS = {"aiohttp": upstream_aiohttp.AiohttpUpstream, "pool": upstream_pool.PooledUpstream}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[upstream.Upstream]:
    impl = IMPLEMENTATIONS[request.param]()
    try:
        yield impl
    finally:
        await impl.close()
