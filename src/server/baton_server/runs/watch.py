"""Watching runs: a snapshot, then every event in order, live, without gaps.

Live delivery comes from the event hub (Redis pub/sub); PostgreSQL fills any gap. A
watcher reads PostgreSQL after subscribing, whenever a sequence number is skipped,
whenever its subscription overflowed or Redis dropped, and when nothing arrived for a
while - so a lost message delays an event by at most ``idle_check_s``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server import keys
from baton_server.events.hub import EventHub
from baton_server.runs import events, store
from baton_server.runs.model import TERMINAL_RUN_STATUSES, Run, RunEvent, RunStep
from baton_server.runs.service import run_not_found

CATCH_UP_PAGE = 500


@dataclass(frozen=True)
class Snapshot:
    """The whole state of a run as of event ``sequence``."""

    run: Run
    steps: list[RunStep]
    sequence: int


@dataclass(frozen=True)
class Lagged:
    """The feed subscriber fell behind (or Redis dropped); events may be missing."""


def is_terminal(event: RunEvent) -> bool:
    return (
        event.type == events.RUN_STATUS
        and (event.data or {}).get("status") in TERMINAL_RUN_STATUSES
    )


class WatchService:
    """Event streams of one run (WatchRun) and of all runs (WatchRuns)."""

    def __init__(self, engine: AsyncEngine, hub: EventHub, *, idle_check_s: float = 5.0) -> None:
        self._engine = engine
        self._hub = hub
        self._idle_check_s = idle_check_s

    async def snapshot(self, run_id: str) -> Snapshot:
        async with self._engine.connect() as conn:
            # One consistent view of the run, its steps and its last sequence number.
            await conn.execution_options(isolation_level="REPEATABLE READ")
            run = await store.get(conn, run_id)
            if run is None:
                raise run_not_found(run_id)
            steps = await store.list_steps(conn, run_id)
            sequence = await store.last_sequence(conn, run_id)
        return Snapshot(run=run, steps=steps, sequence=sequence)

    async def watch_run(
        self, run_id: str, *, after_sequence: int
    ) -> AsyncIterator[Snapshot | RunEvent]:
        async with self._hub.subscribe(keys.run_events_channel(run_id)) as subscription:
            if after_sequence == 0:
                snapshot = await self.snapshot(run_id)
                yield snapshot
                if snapshot.run.status in TERMINAL_RUN_STATUSES:
                    return
                last = snapshot.sequence
            else:
                last = after_sequence
            while True:
                subscription.reset()
                async with self._engine.connect() as conn:
                    missed = await store.list_events(
                        conn, run_id, after_sequence=last, limit=CATCH_UP_PAGE
                    )
                    if not missed and after_sequence and last == after_sequence:
                        run = await store.get(conn, run_id)
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
                while (item := await subscription.next(self._idle_check_s)) is not None:
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
        self, *, workflow_id: str | None, statuses: set[str]
    ) -> AsyncIterator[tuple[RunEvent, Run] | Lagged]:
        async with self._hub.subscribe(keys.RUN_FEED_CHANNEL) as subscription:
            while True:
                item = await subscription.next(self._idle_check_s)
                if item is None:
                    if subscription.interrupted.is_set():
                        yield Lagged()
                        return
                    continue
                event, event_workflow = item
                if workflow_id and event_workflow != workflow_id:
                    continue
                if statuses and (event.data or {}).get("status") not in statuses:
                    continue
                async with self._engine.connect() as conn:
                    run = await store.get(conn, event.run_id)
                if run is not None:
                    yield event, run
