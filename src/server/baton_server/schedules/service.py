"""Schedule use cases, and firing due slots; each public method is one transaction
(firing: one per slot).

Exactly once per slot: a scheduler locks a due schedule (``SKIP LOCKED``, so others
take other schedules), and in that one transaction records the slot (a unique index
on schedule and slot), creates the run (its idempotency key is the schedule and the
slot), emits ``schedule.triggered`` and moves the schedule to its next slot with a
compare-and-set. A crash before the commit leaves everything as it was, and the slot is
fired again by the next scheduler; after it, the run is in PostgreSQL and the
executor's reconciler enqueues it if the scheduler died before doing so.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from baton_server.clock import SYSTEM_CLOCK, Clock
from baton_server.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from baton_server.paging import Page, PageRequest
from baton_server.runs.model import TERMINAL_RUN_STATUSES, Run
from baton_server.runs.service import RunService
from baton_server.runs.store import Connection
from baton_server.schedules import store
from baton_server.schedules.model import Schedule, ScheduleChanges, ScheduleFire, TimingSpec
from baton_server.schedules.timing import Timing, TimingError, check_cron, interval_of, zone
from baton_server.webhooks import outbox
from baton_server.workflows.service import workflow_not_found

DEFAULT_CATCHUP_S = 60
MAX_CATCHUP_S = 86400
_TYPE_FIELDS = {
    "cron": ("cron_expression",),
    "interval": ("interval_value", "interval_unit"),
    "fixed_time": ("execution_time",),
}
_TIMING_COLUMNS = (
    "schedule_type",
    "cron_expression",
    "interval_value",
    "interval_unit",
    "execution_time",
    "timezone",
)
_ONE_SECOND = timedelta(seconds=1)

Announcement = Callable[[], Awaitable[None]]


def schedule_not_found(schedule_id: uuid.UUID | str) -> NotFound:
    return NotFound(
        f"Schedule '{schedule_id}' not found",
        reason="SCHEDULE_NOT_FOUND",
        metadata={"schedule_id": str(schedule_id)},
    )


def invalid_schedule(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {description}",
        reason="INVALID_SCHEDULE",
        violations=[FieldViolation(field, description)],
        metadata={"field": field},
    )


def slot_key(schedule_id: uuid.UUID, slot: datetime) -> str:
    """The idempotency key (``request_id``) of the run of one slot."""
    return f"schedule:{schedule_id}:{slot.isoformat()}"


def _resolve(
    spec: TimingSpec, current: Schedule | None, now: datetime
) -> tuple[dict[str, Any], Timing]:
    """The timing columns a request leads to (merged with the current schedule's) and
    their slots; raises ``INVALID_SCHEDULE`` naming the field."""
    schedule_type = spec.schedule_type or (current.schedule_type if current else None)
    if schedule_type is None:
        raise invalid_schedule("schedule_type", "required: cron, interval or fixed_time")
    given = spec.given()
    for other, names in _TYPE_FIELDS.items():
        for name in names:
            if other != schedule_type and name in given:
                raise invalid_schedule(name, f"not used by {schedule_type} schedules")
    same_type = current is not None and current.schedule_type == schedule_type

    def pick(name: str) -> Any:
        if name in given:
            return given[name]
        return getattr(current, name) if same_type else None

    columns: dict[str, Any] = dict.fromkeys(_TIMING_COLUMNS)
    columns["schedule_type"] = schedule_type
    columns["timezone"] = spec.timezone or (current.timezone if current else "UTC")
    try:
        tz = zone(columns["timezone"])
        timing = Timing(tz=tz, anchor=now)
        if schedule_type == "cron":
            expression = (pick("cron_expression") or "").strip()
            if not expression:
                raise TimingError("cron_expression", "required for cron schedules")
            check_cron(expression, tz, now)
            columns["cron_expression"] = expression
            timing = Timing(tz=tz, anchor=now, cron=expression)
        elif schedule_type == "interval":
            value, unit = pick("interval_value"), pick("interval_unit")
            if value is None:
                raise TimingError("interval_value", "required for interval schedules")
            if unit is None:
                raise TimingError(
                    "interval_unit",
                    "required for interval schedules: seconds, minutes, hours or days",
                )
            columns["interval_value"], columns["interval_unit"] = value, unit
            timing = Timing(tz=tz, anchor=now, interval=interval_of(value, unit))
        else:
            moment = pick("execution_time")
            if moment is None:
                raise TimingError("execution_time", "required for fixed_time schedules")
            if moment <= now and (current is None or "execution_time" in given or not same_type):
                raise TimingError("execution_time", "must be in the future")
            columns["execution_time"] = moment
            timing = Timing(tz=tz, anchor=now, fixed=moment)
    except TimingError as error:
        raise invalid_schedule(error.field, error.description) from None
    return columns, timing


def _check_catchup(seconds: int) -> None:
    if not 0 <= seconds <= MAX_CATCHUP_S:
        raise invalid_schedule(
            "catchup_window_seconds", f"must be between 0 and {MAX_CATCHUP_S} seconds"
        )


def _event_data(schedule: Schedule) -> dict[str, Any]:
    return {
        "schedule_id": str(schedule.id),
        "name": schedule.name,
        "workflow_id": str(schedule.workflow_id),
        "schedule_type": schedule.schedule_type,
        "enabled": schedule.enabled,
        "next_execution": schedule.next_fire_at.isoformat() if schedule.next_fire_at else None,
    }


class ScheduleService:
    """Creates, changes and triggers schedules, and fires their due slots."""

    def __init__(self, pool: asyncpg.Pool, runs: RunService, clock: Clock = SYSTEM_CLOCK) -> None:
        self._pool = pool
        self._runs = runs
        self._clock = clock

    async def create(
        self,
        project_id: uuid.UUID,
        workflow_id: uuid.UUID,
        *,
        name: str,
        description: str,
        timing: TimingSpec,
        parameters: dict[str, Any],
        enabled: bool,
        overlap_policy: str | None,
        catchup_window_s: int | None,
        created_by: str,
    ) -> Schedule:
        now = self._clock.now()
        columns, slots = _resolve(timing, None, now)
        catchup = DEFAULT_CATCHUP_S if catchup_window_s is None else catchup_window_s
        _check_catchup(catchup)
        schedule_id = uuid.uuid4()
        values = {
            "id": schedule_id,
            "project_id": project_id,
            "workflow_id": workflow_id,
            "name": name,
            "description": description,
            **columns,
            "anchor_at": now,
            "parameters": parameters,
            "enabled": enabled,
            "overlap_policy": overlap_policy or "skip",
            "catchup_window_s": catchup,
            "next_fire_at": slots.next_after(now),
            "created_by": created_by,
        }
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval(
                "SELECT status FROM workflows WHERE id = $1 AND project_id = $2 FOR SHARE",
                workflow_id,
                project_id,
            )
            if status is None:
                raise workflow_not_found(workflow_id)
            if status == "deleted":
                raise FailedPrecondition(
                    f"Workflow '{workflow_id}' is deleted; it cannot be scheduled",
                    reason="WORKFLOW_DELETED",
                    metadata={"workflow_id": str(workflow_id)},
                )
            await store.insert(conn, values)
            schedule = await self._require(conn, project_id, schedule_id)
            await outbox.emit(conn, project_id, "schedule.created", now, _event_data(schedule))
        return schedule

    async def get(self, project_id: uuid.UUID, schedule_id: uuid.UUID) -> Schedule:
        async with self._pool.acquire() as conn:
            return await self._require(conn, project_id, schedule_id)

    async def list_page(
        self,
        project_id: uuid.UUID,
        *,
        workflow_id: uuid.UUID | None,
        enabled: bool | None,
        page: PageRequest,
    ) -> Page[Schedule]:
        async with self._pool.acquire() as conn:
            return await store.list_page(
                conn, project_id, workflow_id=workflow_id, enabled=enabled, page=page
            )

    async def update(
        self, project_id: uuid.UUID, schedule_id: uuid.UUID, changes: ScheduleChanges
    ) -> Schedule:
        now = self._clock.now()
        if changes.catchup_window_s is not None:
            _check_catchup(changes.catchup_window_s)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._require(conn, project_id, schedule_id, for_update=True)
            values: dict[str, Any] = {
                name: value
                for name, value in (
                    ("name", changes.name),
                    ("description", changes.description),
                    ("parameters", changes.parameters),
                    ("enabled", changes.enabled),
                    ("overlap_policy", changes.overlap_policy),
                    ("catchup_window_s", changes.catchup_window_s),
                )
                if value is not None
            }
            if changes.timing.given():
                columns, slots = _resolve(changes.timing, current, now)
                if any(columns[name] != getattr(current, name) for name in _TIMING_COLUMNS):
                    # When it fires changed: slots are counted afresh from now.
                    values |= columns | {"anchor_at": now, "next_fire_at": slots.next_after(now)}
            if changes.enabled and not current.enabled and "next_fire_at" not in values:
                # Slots passed while disabled are not caught up.
                values["next_fire_at"] = current.timing().next_after(now)
            if not values:
                return current
            await store.update(conn, schedule_id, values)
            schedule = await self._require(conn, project_id, schedule_id)
            await outbox.emit(conn, project_id, "schedule.updated", now, _event_data(schedule))
        return schedule

    async def delete(self, project_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await store.delete(conn, project_id, schedule_id)
            if deleted is None:
                raise schedule_not_found(schedule_id)
            await outbox.emit(
                conn, project_id, "schedule.deleted", self._clock.now(), _event_data(deleted)
            )

    async def fires(
        self,
        project_id: uuid.UUID,
        schedule_id: uuid.UUID,
        outcome: str | None,
        page: PageRequest,
    ) -> Page[ScheduleFire]:
        async with self._pool.acquire() as conn:
            await self._require(conn, project_id, schedule_id)
            return await store.list_fires(conn, schedule_id, outcome, page)

    async def trigger(
        self,
        project_id: uuid.UUID,
        schedule_id: uuid.UUID,
        *,
        request_id: str | None,
        actor: str,
    ) -> Run:
        """Start a run now, whatever the schedule's state and overlap policy."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            schedule = await self._require(conn, project_id, schedule_id, for_update=True)
            run, written = await self._runs.start_in(
                conn,
                project_id,
                schedule.workflow_id,
                schedule.parameters,
                request_id=request_id,
                triggered_by=f"schedule:{schedule.id}",
            )
            if written:
                await store.record_fire(
                    conn,
                    schedule.id,
                    scheduled_for=now,
                    outcome="triggered",
                    run_id=run.id,
                    reason=f"triggered by {actor}",
                )
                await store.set_last_run(conn, schedule.id, run.id, now)
                await self._emit_triggered(conn, schedule, run, now, manual=True)
        await self._runs.announce_started(run, written)
        return run

    # -- firing ----------------------------------------------------------------------

    async def fire_due(self, limit: int = 100) -> int:
        """Fire the slots that are due now, one schedule per transaction; returns how
        many schedules were handled (at most ``limit``)."""
        handled = 0
        while handled < limit and await self._fire_one():
            handled += 1
        return handled

    async def next_due(self) -> datetime | None:
        """When the earliest enabled schedule is due."""
        async with self._pool.acquire() as conn:
            return await store.next_due(conn)

    async def _fire_one(self) -> bool:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            schedule = await store.claim_due(conn, now)
            if schedule is None:
                return False
            announcements = await self._fire(conn, schedule, now)
        for announce in announcements:
            await announce()
        return True

    async def _fire(
        self, conn: Connection, schedule: Schedule, now: datetime
    ) -> list[Announcement]:
        """Handle a claimed schedule's due slots: fire the latest if it is within the
        catch-up window, record the others as missed, and move to the next slot."""
        assert schedule.next_fire_at is not None
        due = schedule.next_fire_at
        timing = schedule.timing()
        latest = max(due, timing.latest_until(now) or due)
        on_time = now - latest <= timedelta(seconds=schedule.catchup_window_s)
        if on_time:
            before = timing.latest_until(latest - _ONE_SECOND)
            missed_until = before if before is not None and before >= due else None
        else:
            missed_until = latest
        missed = timing.count(due, missed_until) if missed_until is not None else 0
        if missed:
            await store.record_fire(
                conn,
                schedule.id,
                scheduled_for=due,
                outcome="missed",
                reason=f"no scheduler ran within {schedule.catchup_window_s}s of the slot",
                missed_count=missed,
                missed_until=missed_until,
            )
        announcements: list[Announcement] = []
        run_id, skipped = schedule.last_run_id, 0
        last_slot = schedule.last_slot_at
        if on_time:
            started = await self._start(conn, schedule, latest, now, announcements)
            if started is None:
                skipped = 1
            else:
                run_id, last_slot = started, latest
        advanced = await store.advance(
            conn,
            schedule,
            next_fire_at=timing.next_after(latest),
            last_run_id=run_id,
            last_slot_at=last_slot,
            missed=missed,
            skipped=skipped,
        )
        assert advanced, "a claimed schedule moved under its lock"
        return announcements

    async def _start(
        self,
        conn: Connection,
        schedule: Schedule,
        slot: datetime,
        now: datetime,
        announcements: list[Announcement],
    ) -> str | None:
        """Start the slot's run, as the overlap policy says; the run's id, or None when
        the slot is skipped (recorded with its reason)."""
        if schedule.workflow_status != "active":
            await self._skip(
                conn,
                schedule,
                slot,
                "skipped_inactive",
                f"workflow '{schedule.workflow_name}' is {schedule.workflow_status}",
            )
            return None
        # A paused run has not finished either.
        previous_running = (
            schedule.last_run_status is not None
            and schedule.last_run_status not in TERMINAL_RUN_STATUSES
        )
        if previous_running and schedule.overlap_policy == "skip":
            await self._skip(
                conn,
                schedule,
                slot,
                "skipped_overlap",
                f"run {schedule.last_run_id} has not finished",
            )
            return None
        cancelled_run_id = None
        if previous_running and schedule.overlap_policy == "cancel_previous":
            assert schedule.last_run_id is not None
            cancelled = await self._runs.cancel_in(
                conn,
                schedule.project_id,
                schedule.last_run_id,
                reason=f"schedule {schedule.id} fired again (overlap policy cancel_previous)",
                cancelled_by=f"schedule:{schedule.id}",
            )
            if cancelled is not None:
                cancelled_run_id = schedule.last_run_id
                announcements.append(functools.partial(self._runs.announce_cancelled, *cancelled))
        try:
            run, written = await self._runs.start_in(
                conn,
                schedule.project_id,
                schedule.workflow_id,
                schedule.parameters,
                request_id=slot_key(schedule.id, slot),
                triggered_by=f"schedule:{schedule.id}",
            )
        except (FailedPrecondition, NotFound) as error:
            # The workflow was deactivated since the claim read it.
            await self._skip(conn, schedule, slot, "skipped_inactive", error.message)
            return None
        await store.record_fire(
            conn,
            schedule.id,
            scheduled_for=slot,
            outcome="fired",
            run_id=run.id,
            cancelled_run_id=cancelled_run_id,
        )
        await self._emit_triggered(conn, schedule, run, now, manual=False, slot=slot)
        announcements.append(functools.partial(self._runs.announce_started, run, written))
        return run.id

    @staticmethod
    async def _skip(
        conn: Connection, schedule: Schedule, slot: datetime, outcome: str, reason: str
    ) -> None:
        await store.record_fire(
            conn, schedule.id, scheduled_for=slot, outcome=outcome, reason=reason
        )

    @staticmethod
    async def _emit_triggered(
        conn: Connection,
        schedule: Schedule,
        run: Run,
        now: datetime,
        *,
        manual: bool,
        slot: datetime | None = None,
    ) -> None:
        data = {
            "schedule_id": str(schedule.id),
            "name": schedule.name,
            "workflow_id": str(schedule.workflow_id),
            "run_id": run.id,
            "manual": manual,
            "scheduled_for": (slot or now).isoformat(),
        }
        await outbox.emit(conn, schedule.project_id, "schedule.triggered", now, data)

    @staticmethod
    async def _require(
        conn: Connection,
        project_id: uuid.UUID,
        schedule_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Schedule:
        schedule = await store.get(conn, project_id, schedule_id, for_update=for_update)
        if schedule is None:
            raise schedule_not_found(schedule_id)
        return schedule
