"""The reconcile waits for a burst to settle, but a steady trickle cannot hold it off forever."""

from __future__ import annotations

import asyncio

from propylon_operator import debouncing, inventory


async def test_settle_returns_once_changes_stop() -> None:
    wakeup = inventory.Wakeup()
    pokes = 0

    async def burst() -> None:
        nonlocal pokes
        for _ in range(5):
            wakeup.set()
            pokes += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(burst())
    await debouncing.settle(wakeup, quiet=0.2, ceiling=30)
    assert pokes == 5  # it waited for the whole burst
    await task


async def test_settle_gives_up_waiting_at_the_ceiling() -> None:
    wakeup = inventory.Wakeup()
    stop = asyncio.Event()
    pokes = 0

    async def trickle() -> None:
        nonlocal pokes
        while not stop.is_set() and pokes < 2000:
            wakeup.set()
            pokes += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(trickle())
    await asyncio.wait_for(debouncing.settle(wakeup, quiet=0.2, ceiling=0.3), timeout=10)
    still_running = not task.done()
    stop.set()
    await task
    assert still_running


async def test_settle_uses_the_given_clock() -> None:
    now = [100.0]
    wakeup = inventory.Wakeup()
    wakeup.set()
    # The ceiling is already behind us on the injected clock: no waiting at all.
    await asyncio.wait_for(debouncing.settle(wakeup, quiet=5, ceiling=0, clock=lambda: now[0]), timeout=5)
