"""Stopping background tasks reliably."""

from __future__ import annotations

import asyncio
from collections.abc import Collection


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[object]], *, patience_s: float = 1.0
) -> None:
    """Cancel ``tasks`` and wait until every one has finished.

    A single ``cancel()`` is not always enough: before Python 3.12,
    ``asyncio.wait_for`` (which redis-py uses for socket timeouts) can swallow a
    cancellation that races with its result (gh-86296). Cancelling again until the task
    is done makes stopping certain.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience_s)
