"""The event loop Baton's server processes run on.

``baton serve`` and ``baton worker`` spend most of their CPU in the event loop's own
machinery (callbacks, socket reads and writes, timers). uvloop implements that loop in
C on libuv and cut the CPU per run of the executor benchmark by about a fifth; where it
is not installed (it has no Windows build), the standard loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, like ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
