"""Group commit of run transitions: many runs' changes, one transaction, three statements.

Drivers submit a :class:`RunChange` and wait until it is durable. Changes that arrive
while a transaction is in flight are merged into the next one, so the number of commits
grows with time, not with load. Every change is a compare-and-set:

* the run row must still have the expected status and be leased by this worker (a
  cancellation, or another worker taking over, makes the change void);
* each step row must have the expected status and attempt number.

A void change is reported to its driver (``False``), which stops; nothing of it is
written. Each accepted change appends its events with the next gap-free sequence
numbers of its run, in the same transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from baton_server.runs.model import EventDraft, RunEvent
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_UPDATE_RUNS = """
UPDATE runs AS r SET
    status = v.status,
    progress = v.progress,
    output = COALESCE(v.output, r.output),
    error_message = COALESCE(v.error_message, r.error_message),
    completed_at = CASE WHEN v.status IN ('COMPLETED', 'FAILED') THEN now()
                        ELSE r.completed_at END,
    lease_owner = CASE WHEN v.status IN ('COMPLETED', 'FAILED') THEN NULL
                       ELSE r.lease_owner END,
    lease_expires_at = CASE WHEN v.status IN ('COMPLETED', 'FAILED') THEN NULL
                            ELSE r.lease_expires_at END,
    event_seq = r.event_seq + v.event_count,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::jsonb[], $6::text[], $7::int[])
    AS v(id, expected, status, progress, output, error_message, event_count)
WHERE r.id = v.id AND r.status = v.expected AND r.lease_owner = $8
RETURNING r.id, r.event_seq, r.workflow_id, now() AS at
"""

_UPDATE_STEPS = """
UPDATE run_steps AS s SET
    status = v.status,
    attempt = v.attempt,
    input_data = COALESCE(v.input_data, s.input_data),
    output_data = v.output_data,
    error_message = v.error_message,
    started_at = CASE WHEN v.starting THEN now() ELSE s.started_at END,
    completed_at = CASE WHEN v.status IN ('COMPLETED', 'FAILED') THEN now() ELSE NULL END
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
            $7::jsonb[], $8::jsonb[], $9::text[], $10::bool[])
    AS v(run_id, step_id, expected, expected_attempt, status, attempt,
         input_data, output_data, error_message, starting)
WHERE s.run_id = v.run_id AND s.step_id = v.step_id
  AND s.status = ANY(string_to_array(v.expected, ',')) AND s.attempt = v.expected_attempt
RETURNING s.run_id, s.step_id
"""

_INSERT_EVENTS = """
INSERT INTO run_events (run_id, sequence, type, step_id, level, message, data)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::jsonb[])
"""


@dataclass(frozen=True)
class StepOp:
    """A compare-and-set on one step row."""

    step_id: str
    expected: tuple[str, ...]
    expected_attempt: int
    status: str
    attempt: int
    input_data: dict[str, Any] | None = None
    output_data: Any = None
    error_message: str | None = None
    starting: bool = False


@dataclass
class RunChange:
    """Everything one driver wants written about its run, atomically."""

    run_id: str
    expected_status: str
    status: str
    progress: int
    steps: list[StepOp] = field(default_factory=list)
    events: list[EventDraft] = field(default_factory=list)
    output: Any = None
    error_message: str | None = None

    def absorb(self, later: RunChange) -> None:
        """Merge a later change of the same run into this one (same transaction)."""
        self.status = later.status
        self.progress = later.progress
        self.steps.extend(later.steps)
        self.events.extend(later.events)
        if later.output is not None:
            self.output = later.output
        if later.error_message is not None:
            self.error_message = later.error_message


@dataclass
class _Pending:
    change: RunChange
    done: asyncio.Future[bool]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


class Journal:
    """The single writer of run and step state for one worker."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        owner: str,
        *,
        on_commit: Callable[[list[tuple[RunEvent, str]]], None] | None = None,
        max_batch: int = 1000,
    ) -> None:
        self._pool = pool
        self._owner = owner
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journal")

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait([self._task])
        for pending in self._queue:
            if not pending.done.done():
                pending.done.cancel()

    async def write(self, change: RunChange) -> bool:
        """Wait until ``change`` is committed (True) or found void (False)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(change, done))
        self._wakeup.set()
        return await done

    async def _run(self) -> None:
        delay = 0.05
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    await self._commit(batch)
                    delay = 0.05
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    # PostgreSQL is away: keep the changes and retry; the drivers wait.
                    log.warning("journal commit failed, retrying in %.1fs: %s", delay, error)
                    self._queue[:0] = batch
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def _commit(self, batch: Sequence[_Pending]) -> None:
        merged: dict[str, RunChange] = {}
        for pending in batch:
            change = pending.change
            if change.run_id in merged:
                merged[change.run_id].absorb(change)
            else:
                merged[change.run_id] = RunChange(
                    run_id=change.run_id,
                    expected_status=change.expected_status,
                    status=change.status,
                    progress=change.progress,
                    steps=list(change.steps),
                    events=list(change.events),
                    output=change.output,
                    error_message=change.error_message,
                )
        accepted, committed = await self._apply(merged)
        self.commits += 1
        if self._on_commit is not None:
            self._on_commit(committed)
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(pending.change.run_id in accepted)

    async def _apply(
        self, merged: dict[str, RunChange]
    ) -> tuple[set[str], list[tuple[RunEvent, str]]]:
        """Commit the changes that pass their compare-and-set.

        Returns the accepted run ids and the committed events (with their run's
        workflow id, for publishing).
        """
        candidates = dict(merged)
        while candidates:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    accepted, void = await self._try(conn, list(candidates.values()))
                    if void:
                        raise _StepConflict(void)
                return set(accepted), [e for events in accepted.values() for e in events]
            except _StepConflict as conflict:
                # Undone as a whole; redo without the runs whose step state moved on.
                for run_id in conflict.void:
                    del candidates[run_id]
        return set(), []

    async def _try(
        self, conn: asyncpg.pool.PoolConnectionProxy[Any], changes: list[RunChange]
    ) -> tuple[dict[str, list[tuple[RunEvent, str]]], set[str]]:
        rows = await conn.fetch(
            _UPDATE_RUNS,
            [c.run_id for c in changes],
            [c.expected_status for c in changes],
            [c.status for c in changes],
            [c.progress for c in changes],
            [_json(c.output) for c in changes],
            [c.error_message for c in changes],
            [len(c.events) for c in changes],
            self._owner,
        )
        last_sequence = {row["id"]: row["event_seq"] for row in rows}
        context = {row["id"]: (str(row["workflow_id"]), row["at"]) for row in rows}
        changes = [c for c in changes if c.run_id in last_sequence]
        ops = [(c.run_id, op) for c in changes for op in c.steps]
        if ops:
            updated = await conn.fetch(
                _UPDATE_STEPS,
                [run_id for run_id, _ in ops],
                [op.step_id for _, op in ops],
                [",".join(op.expected) for _, op in ops],
                [op.expected_attempt for _, op in ops],
                [op.status for _, op in ops],
                [op.attempt for _, op in ops],
                [_json(op.input_data) for _, op in ops],
                [_json(op.output_data) for _, op in ops],
                [op.error_message for _, op in ops],
                [op.starting for _, op in ops],
            )
            done = {(row["run_id"], row["step_id"]) for row in updated}
            void = {run_id for run_id, op in ops if (run_id, op.step_id) not in done}
            if void:
                return {}, void
        # Every event records the run's status and progress after its change.
        events = [
            (
                c.run_id,
                last_sequence[c.run_id] - len(c.events) + 1 + i,
                replace(e, data={**(e.data or {}), "status": c.status, "progress": c.progress}),
            )
            for c in changes
            for i, e in enumerate(c.events)
        ]
        if events:
            await conn.execute(
                _INSERT_EVENTS,
                [run_id for run_id, _, _ in events],
                [seq for _, seq, _ in events],
                [e.type for _, _, e in events],
                [e.step_id for _, _, e in events],
                [e.level for _, _, e in events],
                [e.message for _, _, e in events],
                [_json(e.data) for _, _, e in events],
            )
        committed: dict[str, list[tuple[RunEvent, str]]] = {run_id: [] for run_id in last_sequence}
        for run_id, sequence, draft in events:
            workflow_id, at = context[run_id]
            committed[run_id].append(
                (
                    RunEvent(
                        run_id=run_id,
                        sequence=sequence,
                        type=draft.type,
                        step_id=draft.step_id,
                        level=draft.level,
                        message=draft.message,
                        data=draft.data,
                        created_at=at,
                    ),
                    workflow_id,
                )
            )
        return committed, set()


class _StepConflict(Exception):
    def __init__(self, void: set[str]) -> None:
        super().__init__(f"{len(void)} run(s) failed a step compare-and-set")
        self.void = void
