"""Building a snapshot or a plan with Python's cyclic garbage collector paused.

Both make hundreds of thousands of small objects while a large heap is alive. Each time enough
objects were allocated the collector runs, and its full passes walk the whole heap again: for
1,000 Apis x 10 routes (bench/scale.py) that was 0.4 of the 0.65 s a plan build took, and 0.45
of the 2.2 s a compile took (CPU time, one run each on a loaded machine). Paused, a build costs
0.25 s and a compile 1.7 s. The objects built are kept anyway (they are the result), so nothing
waits longer to be freed; reference counting still frees the rest at once, and the collector
runs at its next threshold after the pause ends.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, back on after it if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
