"""Watching runs: a snapshot, then every event in order, live, without gaps; and waiting
for a run to finish.

Live delivery comes from the event hub (Redis pub/sub); PostgreSQL fills any gap. A
watcher reads PostgreSQL after subscribing, whenever a sequence number is skipped,
whenever its subscription overflowed or Redis dropped, and when nothing arrived for a
while (the hub's idle clock) - so a lost message delays an event by seconds at most.
Waiting for a run to finish works the same way on the run feed, one subscription for
all waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import asyncpg

from baton_server import keys
from baton_server.events.hub import EventHub, Item
from baton_server.runs import store
from baton_server.runs.events import is_terminal
from baton_server.runs.model import TERMINAL_RUN_STATUSES, Run, RunEvent, RunStep
from baton_server.runs.service import run_not_found
from baton_server.usage import store as usage_store
from baton_server.usage.model import AiCall

CATCH_UP_PAGE = 500


@dataclass(frozen=True)
class Snapshot:
    """The whole state of a run as of event ``sequence``."""

    run: Run
    steps: list[RunStep]
    sequence: int
    #: The run's AI calls, oldest first.
    calls: list[AiCall] = field(default_factory=list)


@dataclass(frozen=True)
class Lagged:
    """The feed subscriber fell behind (or Redis dropped); events may be missing."""


class _FinishWaiters:
    """Callers waiting for runs to finish, woken by terminal events of the run feed (or
    by a Redis outage, after which they look at PostgreSQL again). The feed's recently
    finished runs are remembered, so a caller that starts waiting just after the end
    (a run started and awaited in one call) still learns of it."""

    def __init__(self, remember: int = 65_536) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._finished: dict[str, None] = {}  # insertion-ordered: oldest first
        self._remember = remember

    def offer(self, item: Item) -> None:
        event = item[0]
        if is_terminal(event):
            self._finished[event.run_id] = None
            if len(self._finished) > self._remember:
                del self._finished[next(iter(self._finished))]
            for woken in self._waiting.get(event.run_id, ()):
                woken.set()

    def interrupt(self) -> None:
        for waiters in self._waiting.values():
            for woken in waiters:
                woken.set()

    def finished(self, run_id: str) -> bool:
        """Whether the feed said recently that the run finished."""
        return run_id in self._finished

    @contextlib.contextmanager
    def waiting(self, run_id: str) -> Iterator[asyncio.Event]:
        woken = asyncio.Event()
        self._waiting.setdefault(run_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiting[run_id]
            waiters.discard(woken)
            if not waiters:
                del self._waiting[run_id]


class WatchService:
    """Event streams of one run (WatchRun) and of all runs (WatchRuns), and WaitRun."""

    def __init__(self, pool: asyncpg.Pool, hub: EventHub, *, idle_check_s: float = 5.0) -> None:
        self._pool = pool
        self._hub = hub
        self._idle_check_s = idle_check_s
        self._finish_waiters = _FinishWaiters()
        hub.listen(keys.RUN_FEED_CHANNEL, self._finish_waiters)

    async def snapshot(self, project_id: uuid.UUID, run_id: str) -> Snapshot:
        async with self._pool.acquire() as conn:
            found = await store.snapshot(conn, project_id, run_id)
            if found is None:
                raise run_not_found(run_id)
            run, steps, sequence = found
            calls = (
                (await usage_store.calls_of_runs(conn, [run.id]))[run.id] if run.has_usage else []
            )
        return Snapshot(run=run, steps=steps, sequence=sequence, calls=calls)

    async def wait_run(
        self, project_id: uuid.UUID, run_id: str, *, timeout_s: float, known: Run | None = None
    ) -> Run:
        """The run once finished, or as it is when ``timeout_s`` has passed.

        ``known`` is the run as the caller has just written it (a run it started), which
        spares reading it first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Registered before looking, so a finish between the look and the wait still
        # wakes us.
        with self._finish_waiters.waiting(run_id) as woken:
            run = known
            while True:
                if run is None or self._finish_waiters.finished(run_id):
                    woken.clear()
                    async with self._pool.acquire() as conn:
                        run = await store.get(conn, project_id, run_id)
                    if run is None:
                        raise run_not_found(run_id)
                left = deadline - loop.time()
                if run.status in TERMINAL_RUN_STATUSES or left <= 0:
                    return run
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, self._idle_check_s)):
                        await woken.wait()
                run = None  # finished, Redis dropped, or quiet for a while: look again

    async def watch_run(
        self, project_id: uuid.UUID, run_id: str, *, after_sequence: int
    ) -> AsyncIterator[Snapshot | RunEvent]:
        async with self._hub.subscribe(keys.run_events_channel(run_id)) as subscription:
            if after_sequence == 0:
                snapshot = await self.snapshot(project_id, run_id)
                yield snapshot
                if snapshot.run.status in TERMINAL_RUN_STATUSES:
                    return
                last = snapshot.sequence
            else:
                async with self._pool.acquire() as conn:
                    if await store.get(conn, project_id, run_id) is None:
                        raise run_not_found(run_id)
                last = after_sequence
            while True:
                subscription.reset()
                async with self._pool.acquire() as conn:
                    missed = await store.list_events(
                        conn, run_id, after_sequence=last, limit=CATCH_UP_PAGE
                    )
                    if not missed and after_sequence and last == after_sequence:
                        run = await store.get(conn, project_id, run_id)
                        if run is None:
                            raise run_not_found(run_id)
                        if run.status in TERMINAL_RUN_STATUSES:
                            return  # resumed after the end: nothing more will come
                for event in missed:
                    yield event
                    last = event.sequence
                    if is_terminal(event):
                        return
                if len(missed) == CATCH_UP_PAGE:
                    continue
                while (item := await subscription.next()) is not None:
                    event = item[0]
                    if event.sequence <= last:
                        continue  # already read from PostgreSQL
                    if event.sequence != last + 1:
                        break  # a gap: read it from PostgreSQL
                    yield event
                    last = event.sequence
                    if is_terminal(event):
                        return

    async def watch_runs(
        self, project_id: uuid.UUID, *, workflow_id: str | None, statuses: set[str]
    ) -> AsyncIterator[tuple[RunEvent, Run] | Lagged]:
        async with self._hub.subscribe(keys.RUN_FEED_CHANNEL) as subscription:
            while True:
                item = await subscription.next()
                if item is None:
                    if subscription.interrupted:
                        yield Lagged()
                        return
                    continue
                event, event_workflow = item
                if workflow_id and event_workflow != workflow_id:
                    continue
                if statuses and (event.data or {}).get("status") not in statuses:
                    continue
                async with self._pool.acquire() as conn:
                    run = await store.get(conn, project_id, event.run_id)
                if run is not None:  # None: deleted, or another project's run
                    yield event, run
