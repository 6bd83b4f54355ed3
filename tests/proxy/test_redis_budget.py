"""``--redis-timeout-ms``: the budget of one Redis call is the one the command line gives.

``limit_stores.open_store`` is what ``serve`` and ``proxy`` call with the flag's value. Against
a real redis-server that is frozen (it accepts connections and never answers), a store opened
with the default 50 ms budget gives up (``StoreUnavailable``), while one opened with a 60 s
budget is still waiting when the test stops looking, two seconds later: the setting is enforced.
"""

from __future__ import annotations

import asyncio

import pytest

from propylon_proxy import limit_stores, state
from tests import redis_servers


def _bucket(name: str) -> state.Bucket:
    return state.Bucket(key=f"plan:{{{name}}}", rate=1.0, burst=5, reason="plan")


async def test_the_budget_given_to_open_store_bounds_each_call(tmp_path):
    said: list[str] = []
    with redis_servers.redis_server(tmp_path) as server:
        default = await limit_stores.open_store(server.url, say=said.append)
        patient = await limit_stores.open_store(server.url, timeout=60.0, say=said.append)
        try:
            # Both connect while Redis answers.
            assert (await default.admit([_bucket("default")], None, 1.0)).admitted
            assert (await patient.admit([_bucket("patient")], None, 1.0)).admitted
            server.freeze()
            with pytest.raises(state.StoreUnavailable):
                await asyncio.wait_for(default.admit([_bucket("default")], None, 1.0), 2.0)
            with pytest.raises(TimeoutError):  # ours, not the store's: it would wait its 60 s
                await asyncio.wait_for(patient.admit([_bucket("patient")], None, 1.0), 2.0)
        finally:
            server.thaw()
            await default.close()
            await patient.close()
    assert len(said) == 2 and all("shared through Redis" in line for line in said)
