"""How Baton's server processes run: their event loop and their garbage collector.

``baton serve`` and ``baton worker`` spend most of their CPU in the event loop's own
machinery (callbacks, socket reads and writes, timers). uvloop implements that loop in
C on libuv and cut the CPU per run of the executor benchmark by about a fifth; where it
is not installed (it has no Windows build), the standard loop runs the same code.

They also allocate many short-lived containers per request and per event. With
Python's default thresholds the cycle collector runs hundreds of times a second, and
every run walks the long-lived objects too and pauses every stream and step in the
process. So the collector runs less often, and what exists once the process has started
(modules, the server, pools, caches) is frozen out of its reach.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, like ``asyncio.run``."""
    collect_less_often()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def collect_less_often() -> None:
    """Raise the collector's thresholds (from 700/10/10)."""
    gc.set_threshold(50_000, 50, 100)


def freeze_startup_objects() -> None:
    """Exempt everything alive now from future collections; call once started."""
    gc.collect()
    gc.freeze()
