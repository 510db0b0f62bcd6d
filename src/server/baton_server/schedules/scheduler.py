"""The scheduler loop: fires due schedule slots until stopped.

It runs in every worker; any number share the schedules, because a slot is claimed
with ``SKIP LOCKED`` and fired in one transaction (``ScheduleService``). Between
rounds it sleeps until the earliest next slot, but never longer than ``poll_s``, so a
schedule created or changed meanwhile is seen within that time.
"""

from __future__ import annotations

import asyncio
import logging

from baton_server.clock import SYSTEM_CLOCK, Clock
from baton_server.schedules.service import ScheduleService
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Scheduler:
    """Fires due slots in the background (``start``/``stop``)."""

    def __init__(
        self, service: ScheduleService, *, poll_s: float = 1.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._service = service
        self._poll_s = poll_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._service.fire_due()
                due = await self._service.next_due()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # PostgreSQL away or restarting: try again, backing off to 5 s.
                failures += 1
                log.warning("scheduler round failed: %s", error)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            wait = self._poll_s
            if due is not None:
                wait = min(wait, max(0.0, (due - self._clock.now()).total_seconds()))
            await asyncio.sleep(wait)
