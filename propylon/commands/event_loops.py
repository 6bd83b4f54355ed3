"""Which event loop the data plane runs on: ``--loop auto|asyncio|uvloop`` (issue 15).

``serve`` (each worker too) and ``proxy`` run their gateway through ``run`` here, so the choice is
made in one place. ``asyncio`` is the standard library's selector loop; ``uvloop`` is libuv's
(the ``uvloop`` package, an optional dependency: the ``uvloop`` extra, and in the image);
``auto`` takes uvloop when it can be imported and asyncio otherwise, so a plain ``pip install``
still runs. Why the choice exists, and what it was measured to change: docs/performance.md,
"The event loop (perf-loop)".

Nothing in the gateway depends on the loop's class: uvloop's transports are not
``asyncio.Transport`` subclasses (the servers and the upstream pool cast instead of asserting),
``shutdown_default_executor``, signal handlers and ``asyncio.to_thread`` behave the same on both.

The flag is defined in ``shared_flags`` (``add_event_loop``); its default comes from
``PROPYLON_LOOP``, as ``--http-server``'s does from PROPYLON_HTTP_SERVER.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopUnavailable(RuntimeError):
    """``--loop uvloop`` where the uvloop package is not installed."""


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str) -> str:
    """The loop ``choice`` runs on: ``asyncio`` or ``uvloop``; raises LoopUnavailable."""
    if choice == "asyncio":
        return "asyncio"
    if uvloop_installed():
        return "uvloop"
    if choice == "uvloop":
        raise LoopUnavailable("--loop uvloop: the uvloop package is not installed (pip install 'propylon[uvloop]')")
    return "asyncio"


def factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A loop factory for ``asyncio.Runner`` (None: asyncio's own)."""
    if resolve(choice) == "asyncio":
        return None
    # Imported by name: uvloop is optional, and mypy need not find it to check this module.
    new_loop: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module("uvloop").new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    try:
        loop_factory = factory(choice)
    except LoopUnavailable:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
