"""Group commit of run transitions: many runs' changes, one statement, one commit.

Drivers submit a :class:`RunChange` and wait until it is durable. Changes that arrive
while a commit is in flight are merged into the next one, so the number of commits
grows with time, not with load. Every change is a compare-and-set:

* the run row must still have the expected status and be leased by this worker (a
  cancellation, or another worker taking over, makes the change void);
* each step row must have the expected status and attempt number.

A void change is reported to its driver (``False``), which stops; nothing of it is
written. Each accepted change appends its events with the next gap-free sequence
numbers of its run, in the same statement, which also reads back the run's project's
agents revision (see :mod:`baton_server.executor.catalog`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from baton_server.runs.model import EventDraft, RunEvent
from baton_server.tasks import cancel_and_wait
from baton_server.usage.model import AiCallDraft

log = logging.getLogger(__name__)

# One statement (one round trip, one commit) for the whole batch. The step checks read
# the statement's snapshot; that is enough because only the lease holder changes the
# steps of a RUNNING or PENDING run, and anyone else (a cancellation) changes the run's
# status first, under the row lock the run update takes and re-checks.
_COMMIT_TEMPLATE = """
WITH changes AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::jsonb[],
                         $6::text[], $7::int[], $26::bool[], $27::timestamptz[])
        AS c(id, expected, status, progress, output, error_message, event_count, release,
             wake_at)
), ops AS (
    SELECT * FROM unnest($8::text[], $9::text[], $10::text[], $11::int[], $12::text[],
                         $13::int[], $14::jsonb[], $15::jsonb[], $16::text[], $17::bool[])
        AS o(run_id, step_id, expected, expected_attempt, status, attempt, input_data,
             output_data, error_message, starting)
), blocked AS (
    SELECT DISTINCT o.run_id FROM ops o
    WHERE NOT EXISTS (
        SELECT FROM run_steps s
        WHERE s.run_id = o.run_id AND s.step_id = o.step_id
          AND s.status = ANY(string_to_array(o.expected, ','))
          AND s.attempt = o.expected_attempt
    )
){calls}, updated_runs AS (
    UPDATE runs AS r SET
        status = c.status,
        progress = c.progress,
        output = COALESCE(c.output, r.output),
        error_message = COALESCE(c.error_message, r.error_message),
        completed_at = CASE WHEN c.status IN ('COMPLETED', 'FAILED') THEN now()
                            ELSE r.completed_at END,
        lease_owner = CASE WHEN c.status IN ('COMPLETED', 'FAILED') OR c.release THEN NULL
                           ELSE r.lease_owner END,
        lease_expires_at = CASE WHEN c.status IN ('COMPLETED', 'FAILED') OR c.release THEN NULL
                                ELSE r.lease_expires_at END,
        -- Given back while waiting: due at the earliest wait timeout, unless a signal
        -- already marked it due.
        wake_at = CASE WHEN c.release THEN COALESCE(r.wake_at, c.wake_at) ELSE r.wake_at END,
        event_seq = r.event_seq + c.event_count,{spend}
        updated_at = now()
    FROM {changes}
    WHERE r.id = c.id AND r.status = c.expected AND r.lease_owner = $18
      AND c.id NOT IN (SELECT run_id FROM blocked)
    RETURNING r.id, r.event_seq, r.workflow_id, r.project_id, now() AS at,
              r.tokens_input, r.tokens_output, r.total_cost
), updated_steps AS (
    UPDATE run_steps AS s SET
        status = o.status,
        attempt = o.attempt,
        input_data = COALESCE(o.input_data, s.input_data),
        output_data = o.output_data,
        error_message = o.error_message,
        started_at = CASE WHEN o.starting THEN now() ELSE s.started_at END,
        completed_at = CASE WHEN o.status IN ('COMPLETED', 'FAILED') THEN now() ELSE NULL END
    FROM ops o
    WHERE s.run_id = o.run_id AND s.step_id = o.step_id
      AND o.run_id IN (SELECT id FROM updated_runs)
), new_events AS (
    INSERT INTO run_events (run_id, sequence, type, step_id, level, message, data)
    SELECT e.run_id, u.event_seq - c.event_count + e.position, e.type, e.step_id, e.level,
           e.message, {event_data}
    FROM unnest($19::text[], $20::int[], $21::text[], $22::text[], $23::text[], $24::text[],
                $25::jsonb[]) AS e(run_id, position, type, step_id, level, message, data)
    JOIN updated_runs u ON u.id = e.run_id
    JOIN changes c ON c.id = e.run_id
){new_items}{new_calls}
SELECT u.id, u.event_seq, u.workflow_id, u.project_id, u.at, p.agents_revision,
       u.tokens_input, u.tokens_output, u.total_cost
FROM updated_runs u JOIN projects p ON p.id = u.project_id
"""

# Only a batch that starts fan-out steps carries item rows; the others use the statement
# without this part, so the common batch neither sends nor plans it.
_NEW_ITEMS = """, new_items AS (
    -- The items of a fan-out step as it starts: rows of their own, under its agent and
    -- position. Rows that exist already (a resumed run) are left as they are.
    INSERT INTO run_steps (id, run_id, step_id, agent_name, position, status, attempt,
                           input_data, started_at, parent_step_id, item_index)
    SELECT n.id, n.run_id, n.step_id, p.agent_name, p.position, n.status, n.attempt,
           n.input_data, CASE WHEN n.starting THEN now() END, n.parent_step_id, n.item_index
    FROM unnest($28::text[], $29::text[], $30::text[], $31::text[], $32::int[], $33::text[],
                $34::int[], $35::jsonb[], $36::bool[])
        AS n(id, run_id, step_id, parent_step_id, item_index, status, attempt, input_data,
             starting)
    JOIN run_steps p ON p.run_id = n.run_id AND p.step_id = n.parent_step_id
    WHERE n.run_id IN (SELECT id FROM updated_runs)
    ON CONFLICT (run_id, step_id) DO NOTHING
)
"""

# Only a batch with AI calls (agents that report usage) carries them, adds them up per
# run onto the run's totals, and puts those totals on each event that has a step
# attempt's `usage`. Its parameters follow the others (numbered from {first}).
_CALLS = """, calls AS (
    SELECT * FROM unnest(${first}::text[], ${p1}::text[], ${p2}::int[], ${p3}::text[],
                         ${p4}::text[], ${p5}::bigint[], ${p6}::bigint[], ${p7}::float8[],
                         ${p8}::bool[])
        AS a(run_id, step_id, attempt, model, operation, tokens_input, tokens_output, cost,
             unpriced)
), spent AS (
    SELECT run_id, sum(tokens_input) AS tokens_input, sum(tokens_output) AS tokens_output,
           sum(cost) AS cost
    FROM calls GROUP BY run_id
)"""
_SPEND = """
        tokens_input = r.tokens_input + COALESCE(d.tokens_input, 0),
        tokens_output = r.tokens_output + COALESCE(d.tokens_output, 0),
        total_cost = r.total_cost + COALESCE(d.cost, 0),"""
_EVENT_DATA_WITH_TOTALS = """CASE WHEN e.data ? 'usage' THEN e.data || jsonb_build_object(
               'run_usage', jsonb_build_object('input_tokens', u.tokens_input,
                                               'output_tokens', u.tokens_output,
                                               'cost', u.total_cost))
           ELSE e.data END"""
_NEW_CALLS = """, new_calls AS (
    INSERT INTO ai_calls (run_id, step_id, attempt, model, operation, tokens_input,
                          tokens_output, cost, unpriced)
    SELECT a.* FROM calls a WHERE a.run_id IN (SELECT id FROM updated_runs)
)"""
_ITEM_PARAMETERS = 9
_CALL_PARAMETERS = 9


def _statement(*, items: bool, calls: bool) -> str:
    first = 28 + (_ITEM_PARAMETERS if items else 0)
    numbers = {"first": first, **{f"p{i}": first + i for i in range(1, _CALL_PARAMETERS)}}
    return _COMMIT_TEMPLATE.format(
        new_items=_NEW_ITEMS.rstrip() if items else "",
        calls=_CALLS.format(**numbers) if calls else "",
        spend=_SPEND if calls else "",
        changes="changes c LEFT JOIN spent d ON d.run_id = c.id" if calls else "changes c",
        event_data=_EVENT_DATA_WITH_TOTALS if calls else "e.data",
        new_calls=_NEW_CALLS if calls else "",
    )


_STATEMENTS = {
    (items, calls): _statement(items=items, calls=calls)
    for items in (False, True)
    for calls in (False, True)
}


class ChangeRefused(Exception):
    """PostgreSQL refused a run's change by itself (bad data, not a connection problem):
    writing it again would fail again."""


# SQLSTATE classes of errors that pass: connection exceptions, transaction rollbacks
# (serialization, deadlock), insufficient resources, operator intervention (a server
# shutting down or starting), system errors.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def _transient(error: Exception) -> bool:
    """Whether a failed commit may succeed unchanged later (PostgreSQL away, busy)."""
    if not isinstance(error, asyncpg.PostgresError):
        return True  # OSError, InterfaceError: the connection, not the change
    return str(error.sqlstate or "")[:2] in _TRANSIENT_CLASSES


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
    #: The AI calls of the attempt this op ends (or, on a retry, of the failed one).
    ai_calls: tuple[AiCallDraft, ...] = ()


@dataclass(frozen=True)
class NewItem:
    """A row to insert for one item of a fan-out step (see :mod:`.fanout`)."""

    id: str
    step_id: str
    parent_step_id: str
    item_index: int
    status: str
    attempt: int
    input_data: dict[str, Any] | None = None
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
    #: Give up the lease with this change (a paused run with nothing in flight, or
    #: one whose steps all wait for signals).
    release: bool = False
    #: With ``release``: when the run is due again (its earliest wait timeout).
    wake_at: datetime | None = None
    #: Item rows of fan-out steps to create.
    items: list[NewItem] = field(default_factory=list)

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
        self.release = self.release or later.release
        self.wake_at = later.wake_at or self.wake_at
        self.items.extend(later.items)


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
        on_commit_duration: Callable[[float], None] | None = None,
        on_agents_revision: Callable[[uuid.UUID, int], None] | None = None,
        max_batch: int = 1000,
    ) -> None:
        self._pool = pool
        self._owner = owner
        self._on_commit = on_commit
        self._on_commit_duration = on_commit_duration
        self._on_agents_revision = on_agents_revision
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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

    async def held_status(self, run_id: str) -> str | None:
        """The run's status if this worker still holds its lease, else None (for a
        driver whose write came back void)."""
        status: str | None = await self._pool.fetchval(
            "SELECT status FROM runs WHERE id = $1 AND lease_owner = $2", run_id, self._owner
        )
        return status

    async def signals(self, run_id: str, names: set[str]) -> dict[str, Any]:
        """The payloads of the run's signals among ``names``, by name."""
        rows = await self._pool.fetch(
            "SELECT name, payload FROM run_signals WHERE run_id = $1 AND name = ANY($2::text[])",
            run_id,
            list(names),
        )
        return {
            row["name"]: None if row["payload"] is None else json.loads(row["payload"])
            for row in rows
        }

    async def _run(self) -> None:
        # One commit at a time: what arrives meanwhile makes the next batch larger, which
        # measured cheaper per run than overlapping commits, at the same step latency.
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
                    if not _transient(error):
                        # One change PostgreSQL refuses must not hold back the others.
                        await self._commit_one_by_one(batch)
                        continue
                    # PostgreSQL is away: keep the changes and retry; the drivers wait.
                    log.warning("journal commit failed, retrying in %.1fs: %s", delay, error)
                    self._queue[:0] = batch
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def _commit_one_by_one(self, batch: Sequence[_Pending]) -> None:
        """Commit each change of a refused batch alone; the one PostgreSQL refuses by
        itself fails its driver with :class:`ChangeRefused`. A transient error puts what
        is left back in the queue."""
        for index, pending in enumerate(batch):
            try:
                await self._commit([pending])
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                if _transient(error):
                    self._queue[:0] = batch[index:]
                    return
                log.error("run %s: PostgreSQL refused its change: %s", pending.change.run_id, error)
                if not pending.done.done():
                    pending.done.set_exception(ChangeRefused(str(error)))

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
                    release=change.release,
                    wake_at=change.wake_at,
                    items=list(change.items),
                )
        accepted, committed = await self._apply(merged)
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
        changes = list(merged.values())
        ops = [(c.run_id, op) for c in changes for op in c.steps]
        items = [(c.run_id, item) for c in changes for item in c.items]
        # Every event records the run's status and progress after its change.
        drafts = [
            (
                c.run_id,
                position,
                draft,
                {**(draft.data or {}), "status": c.status, "progress": c.progress},
            )
            for c in changes
            for position, draft in enumerate(c.events, start=1)
        ]
        sent = time.monotonic()
        item_columns = (
            [
                [item.id for _, item in items],
                [run_id for run_id, _ in items],
                [item.step_id for _, item in items],
                [item.parent_step_id for _, item in items],
                [item.item_index for _, item in items],
                [item.status for _, item in items],
                [item.attempt for _, item in items],
                [_json(item.input_data) for _, item in items],
                [item.starting for _, item in items],
            ]
            if items
            else []
        )
        calls = [(c.run_id, call) for c in changes for op in c.steps for call in op.ai_calls]
        call_columns = (
            [
                [run_id for run_id, _ in calls],
                [call.step_id for _, call in calls],
                [call.attempt for _, call in calls],
                [call.model for _, call in calls],
                [call.operation for _, call in calls],
                [call.tokens_input for _, call in calls],
                [call.tokens_output for _, call in calls],
                [call.cost for _, call in calls],
                [call.unpriced for _, call in calls],
            ]
            if calls
            else []
        )
        rows = await self._pool.fetch(
            _STATEMENTS[bool(items), bool(calls)],
            [c.run_id for c in changes],
            [c.expected_status for c in changes],
            [c.status for c in changes],
            [c.progress for c in changes],
            [_json(c.output) for c in changes],
            [c.error_message for c in changes],
            [len(c.events) for c in changes],
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
            self._owner,
            [run_id for run_id, _, _, _ in drafts],
            [position for _, position, _, _ in drafts],
            [d.type for _, _, d, _ in drafts],
            [d.step_id for _, _, d, _ in drafts],
            [d.level for _, _, d, _ in drafts],
            [d.message for _, _, d, _ in drafts],
            [_json(data) for _, _, _, data in drafts],
            [c.release for c in changes],
            [c.wake_at for c in changes],
            *item_columns,
            *call_columns,
        )
        if self._on_commit_duration is not None:
            self._on_commit_duration(time.monotonic() - sent)
        accepted = {row["id"]: row for row in rows}
        if self._on_agents_revision is not None:
            # Before the drivers hear back, so a step starting now sees a changed agent.
            for revised in rows:
                self._on_agents_revision(revised["project_id"], revised["agents_revision"])
        committed: list[tuple[RunEvent, str]] = []
        for run_id, position, draft, data in drafts:
            row = accepted.get(run_id)
            if row is None:
                continue
            first = row["event_seq"] - len(merged[run_id].events) + 1
            if "usage" in data:  # as the statement wrote it
                data["run_usage"] = {
                    "input_tokens": row["tokens_input"],
                    "output_tokens": row["tokens_output"],
                    "cost": row["total_cost"],
                }
            event = RunEvent(
                run_id=run_id,
                sequence=first + position - 1,
                type=draft.type,
                step_id=draft.step_id,
                level=draft.level,
                message=draft.message,
                data=data,
                created_at=row["at"],
            )
            committed.append((event, str(row["workflow_id"])))
        return set(accepted), committed
