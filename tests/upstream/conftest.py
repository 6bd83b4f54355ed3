"""Fixtures for the upstream tests: every test in the table runs once per implementation."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from propylon_proxy import upstream, upstream_factory


@pytest.fixture(params=upstream_factory.KINDS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[upstream.Upstream]:
    impl = upstream_factory.create(request.param)
    try:
        yield impl
    finally:
        await impl.close()
