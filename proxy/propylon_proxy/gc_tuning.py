"""Keep the cyclic garbage collector off what lives for the whole process.

Why (issue 15, bench/profiles/hot2-before.txt): the collector took about 3.4 % of the event
loop's samples on the plain proxied route. Every collection of the oldest generation walks every
tracked object the process holds: the imported modules, the compiled plan, the aiohttp and
prometheus machinery, none of which will ever be garbage. ``settle()``, called once when a
gateway is listening, collects what start-up left behind and then freezes the survivors
(``gc.freeze``: moved to a generation the collector never scans). Objects made later (requests,
later plans) are collected as usual; frozen ones are still freed by reference counting, only a
frozen *cycle* would outlive its use, and what start-up built is kept for the process's life.

Called by the ``propylon serve`` and ``propylon kube-proxy`` processes, never in a library or a
test process (freezing a test runner's objects would only hide its garbage). It also starts
``loop_watch`` when ``PROPYLON_LOOP_WATCH`` asks for it (bench/run.py's latency rounds).
"""

from __future__ import annotations

import gc

from propylon_proxy import loop_watch

_watch: loop_watch.Watch | None = None


def settle() -> None:
    """Collect start-up's garbage, then take everything left out of future collections."""
    global _watch
    gc.collect()
    gc.freeze()
    if _watch is None:
        _watch = loop_watch.start_from_env()
