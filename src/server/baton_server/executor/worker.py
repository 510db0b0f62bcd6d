"""A worker: takes runs from the Redis stream, leases them in PostgreSQL, drives them.

Crash safety rests on PostgreSQL, not on Redis:

* A run is driven only by the worker holding its lease (``runs.lease_owner`` until
  ``lease_expires_at``); workers renew their leases with a heartbeat. A duplicate
  delivery cannot start a second driver, because taking the lease is a compare-and-set.
* The reconciler (one at a time, under an advisory lock) finds unfinished runs with no
  live lease that have not been enqueued recently - a worker died, a run was committed
  but never enqueued, Redis lost its data - and puts them on the stream again.
* Stream entries are acknowledged once the lease is taken (or found unnecessary); a
  worker that dies before that leaves them pending, and ``XAUTOCLAIM`` hands them to
  another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from baton_server import keys
from baton_server.agents.client import AgentClient
from baton_server.db.pool import create_pool
from baton_server.events.publisher import EventPublisher
from baton_server.executor.admission import Admission
from baton_server.executor.catalog import Catalog
from baton_server.executor.driver import LeasedRun, RunDriver
from baton_server.executor.journal import Journal
from baton_server.executor.retention import Retention
from baton_server.executor.state import StepState
from baton_server.runs import store as run_store
from baton_server.runs.dispatch import Dispatcher
from baton_server.runs.model import Run, RunEvent
from baton_server.runs.service import RunService
from baton_server.schedules.scheduler import Scheduler
from baton_server.schedules.service import ScheduleService
from baton_server.sealing import SecretBox
from baton_server.stats.rollups import Rollups
from baton_server.tasks import cancel_and_wait
from baton_server.webhooks.delivery import Deliverer, DeliverySettings

log = logging.getLogger(__name__)

_LEASED_COLUMNS = """r.id, r.status, r.definition_id, r.input_data, r.project_id,
    r.deadline_at, r.timeout_seconds, r.workflow_id, r.workflow_name, r.created_at"""
_WITH_STEPS = """ARRAY(SELECT ROW(step_id, agent_name, status, attempt, output_data,
                          extract(epoch FROM started_at), parent_step_id, item_index,
                          error_message)
             FROM run_steps WHERE run_id = leased.id) AS steps"""
# Leases for a batch of runs and their steps, in one round trip. Runs that finished, or
# that a live worker drives, are not returned. A PENDING run of a workflow that limits
# its concurrent runs is not leased here: ``limited`` lists those workflows, whose runs
# ``_ADMIT`` leases in order. (One row even with nothing leased, for ``limited``.)
_TAKE_LEASES = f"""
WITH leased AS (
    UPDATE runs r SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                      wake_at = NULL
    WHERE r.id = ANY($1::text[]) AND r.status IN ('PENDING', 'RUNNING')
      AND (r.lease_owner IS NULL OR r.lease_expires_at < now())
      AND (r.status = 'RUNNING' OR NOT EXISTS (
          SELECT FROM workflows w
          WHERE w.id = r.workflow_id AND w.max_concurrent_runs IS NOT NULL))
    RETURNING {_LEASED_COLUMNS}
), limited AS (
    SELECT DISTINCT r.workflow_id FROM runs r JOIN workflows w ON w.id = r.workflow_id
    WHERE r.id = ANY($1::text[]) AND r.status = 'PENDING' AND w.max_concurrent_runs IS NOT NULL
)
SELECT leased.*, {_WITH_STEPS}, ARRAY(SELECT workflow_id FROM limited) AS limited
FROM (SELECT) AS one LEFT JOIN leased ON true
"""
# Under the workflow's advisory lock: lease the oldest waiting runs of a workflow, as
# many as its limit leaves room for. Busy are RUNNING runs (driven, or to be resumed)
# and runs a live worker holds; a run paused and given back holds no room.
_ADMIT = f"""
WITH room AS (
    SELECT GREATEST(w.max_concurrent_runs - (
        SELECT count(*) FROM runs
        WHERE workflow_id = $1 AND status IN ('PENDING', 'RUNNING', 'PAUSED')
          AND (status = 'RUNNING' OR lease_expires_at > now())
    ), 0) AS n
    FROM workflows w WHERE w.id = $1
), next AS (
    SELECT id FROM runs
    WHERE workflow_id = $1 AND status = 'PENDING'
      AND (lease_owner IS NULL OR lease_expires_at < now())
    ORDER BY created_at
    LIMIT (SELECT COALESCE(max(n), 0) FROM room)
), leased AS (
    UPDATE runs r SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                      wake_at = NULL
    FROM next WHERE r.id = next.id
    RETURNING {_LEASED_COLUMNS}
)
SELECT leased.*, {_WITH_STEPS} FROM leased
"""
_RENEW_LEASES = """
UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE lease_owner = $1 AND id = ANY($2::text[])
RETURNING id
"""
_RELEASE_LEASES = """
UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, enqueued_at = now()
WHERE lease_owner = $1 RETURNING id
"""
_RECONCILE = """
WITH lost AS (
    SELECT id FROM runs
    WHERE status IN ('PENDING', 'RUNNING')
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
      AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $1))
      -- A run given back while its steps wait is due at its wake time (or a signal).
      AND (wake_at IS NULL OR wake_at <= now())
    ORDER BY created_at
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
)
UPDATE runs SET enqueued_at = now() FROM lost WHERE runs.id = lost.id
RETURNING runs.id
"""
_RECONCILER_LOCK = 0x6261746F6E02


@dataclass(frozen=True)
class WorkerSettings:
    """Tuning of a worker; the defaults suit production, tests shorten the intervals."""

    lease_ttl_s: float = 15.0
    reconcile_interval_s: float = 5.0
    enqueue_grace_s: float = 10.0
    max_runs: int = 512
    #: The 99th percentile of step latency (agent answer to next step start) the worker
    #: keeps under by admitting fewer runs (executor/admission.py).
    step_latency_p99_ms: float = 12.0
    read_batch: int = 64
    block_ms: int = 1000
    #: Longest sleep of the scheduler between rounds (a new schedule is seen within it).
    schedule_poll_s: float = 1.0
    #: Finished runs are deleted this many days after they finished (None: kept).
    run_retention_days: float | None = None
    #: Pause between retention rounds that found less than a batch to delete.
    retention_interval_s: float = 60.0
    #: How often the statistics deltas are folded into their rollups.
    stats_interval_s: float = 5.0

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """Defaults, overridden by ``BATON_LEASE_TTL_S``, ``BATON_RECONCILE_INTERVAL_S``,
        ``BATON_ENQUEUE_GRACE_S``, ``BATON_MAX_RUNS``, ``BATON_STEP_LATENCY_P99_MS`` and
        ``BATON_RUN_RETENTION_DAYS``."""
        defaults = cls()
        if "BATON_STEP_LATENCY_TARGET_MS" in os.environ:
            log.warning(
                "BATON_STEP_LATENCY_TARGET_MS (a median) is no longer read; admission keeps "
                "the 99th percentile under BATON_STEP_LATENCY_P99_MS (default %.0f ms)",
                defaults.step_latency_p99_ms,
            )
        retention_days = os.environ.get("BATON_RUN_RETENTION_DAYS", "").strip()
        return cls(
            run_retention_days=float(retention_days) if retention_days else None,
            lease_ttl_s=float(os.environ.get("BATON_LEASE_TTL_S", defaults.lease_ttl_s)),
            reconcile_interval_s=float(
                os.environ.get("BATON_RECONCILE_INTERVAL_S", defaults.reconcile_interval_s)
            ),
            enqueue_grace_s=float(
                os.environ.get("BATON_ENQUEUE_GRACE_S", defaults.enqueue_grace_s)
            ),
            max_runs=int(os.environ.get("BATON_MAX_RUNS", defaults.max_runs)),
            step_latency_p99_ms=float(
                os.environ.get("BATON_STEP_LATENCY_P99_MS", defaults.step_latency_p99_ms)
            ),
        )


class Worker:
    """Consumes the run stream until stopped. Run any number against one database."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        settings: WorkerSettings | None = None,
        *,
        secrets: SecretBox,
        deliveries: DeliverySettings | None = None,
        deliver: bool = True,
    ) -> None:
        """``deliver=False`` leaves webhooks and callbacks to ``baton deliver``
        processes."""
        self.settings = settings or WorkerSettings.from_env()
        self._deliver = deliver
        self._secrets = secrets
        self._delivery_settings = deliveries or DeliverySettings.from_env()
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._database_url = database_url
        self._redis_url = redis_url
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._driving: dict[str, RunDriver] = {}
        # Workflows seen with a concurrency limit, and admissions under way (_admit).
        self._limited: set[uuid.UUID] = set()
        self._admissions: set[asyncio.Task[None]] = set()
        self._admission = Admission(
            maximum=self.settings.max_runs,
            target_s=self.settings.step_latency_p99_ms / 1000,
        )
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._saturated_marked = 0.0

    async def start(self) -> None:
        # Every statement of the executor looks rows up by key. While a table is young
        # it has no statistics yet (autovacuum analyzes about once a minute), and the
        # planner then joins by scanning the whole table on every commit; an index
        # lookup is never the worse choice here.
        # min_size 0: the worker starts (and waits) while PostgreSQL is still starting or
        # recovering, as after a restart of both under a supervisor.
        self._pool = await create_pool(
            self._database_url,
            min_size=0,
            max_size=8,
            server_settings={"enable_seqscan": "off"},
        )
        self._redis = redis.Redis.from_url(self._redis_url)
        self._dispatcher = Dispatcher(self._redis)
        # Keep-alive expiry under uvicorn's 5 s idle close, so a pooled connection
        # is rarely reused just as the agent closes it.
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=4)
        )
        self._client = AgentClient(self._http)
        self._publisher = EventPublisher(self._redis)
        self._publisher.start()
        self._catalog = Catalog(self._pool, self._secrets)
        self._journal = Journal(
            self._pool,
            self.id,
            on_commit=self._publisher.publish,
            on_commit_duration=self._admission.observe_commit,
            on_agents_revision=self._catalog.observe,
        )
        self._journal.start()
        # Webhooks and callbacks, from the outbox the run transitions write.
        self.deliverer = Deliverer(
            self._pool, self._secrets, self._delivery_settings, redis_client=self._redis
        )
        if self._deliver:
            self.deliverer.start()
        self.scheduler = Scheduler(
            ScheduleService(self._pool, RunService(self._pool, self._dispatcher, self._publisher)),
            poll_s=self.settings.schedule_poll_s,
        )
        self.scheduler.start()
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("consume", self._consume),
            ("heartbeat", self._heartbeat),
            ("reconcile", self._reconcile),
            ("control", self._control),
            ("stats", Rollups(self._pool, interval_s=self.settings.stats_interval_s).run),
        ]
        if self.settings.run_retention_days is not None:
            retention = Retention(
                self._pool,
                self._redis,
                days=self.settings.run_retention_days,
                interval_s=self.settings.retention_interval_s,
            )
            loops.append(("retention", retention.run))
        for name, loop in loops:
            self._background.append(asyncio.create_task(self._forever(name, loop)))
        log.info("worker %s started", self.id)

    async def stop(self) -> None:
        """Stop driving; release leases so another worker resumes the runs at once."""
        self._stopping = True
        await cancel_and_wait(self._background)
        await cancel_and_wait(list(self._admissions))
        await self.scheduler.stop()
        await self.deliverer.stop()
        await cancel_and_wait(list(self._drivers.values()))
        await self._journal.stop()
        await self._publisher.stop()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            released = [r["id"] for r in await self._pool.fetch(_RELEASE_LEASES, self.id)]
            await self._dispatcher.enqueue(released)
        await self._pool.close()
        await self._http.close()
        await self._redis.aclose()
        log.info("worker %s stopped", self.id)

    @property
    def running(self) -> int:
        return len(self._drivers)

    # -- loops -----------------------------------------------------------------------

    async def _forever(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a loop alive across Redis or PostgreSQL outages."""
        delay = 0.1
        while not self._stopping:
            try:
                await loop()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("worker loop %s failed, restarting in %.1fs: %s", name, delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                keys.RUN_STREAM, keys.WORKER_GROUP, id="0", mkstream=True
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _consume(self) -> None:
        await self._ensure_group()
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while True:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = []
            if loop.time() >= next_claim:
                # Entries a dead worker read but never acknowledged.
                claimed = await self._redis.xautoclaim(
                    keys.RUN_STREAM,
                    keys.WORKER_GROUP,
                    self.id,
                    min_idle_time=int(self.settings.lease_ttl_s * 2000),
                    count=100,
                )
                entries += claimed[1]
                next_claim = loop.time() + self.settings.lease_ttl_s
            free = self._admission.limit(len(self._drivers)) - len(self._drivers)
            if self._admission.busy:
                await self._mark_saturated()
            if free > 0 and not entries:
                try:
                    reply: Any = await self._redis.xreadgroup(
                        keys.WORKER_GROUP,
                        self.id,
                        {keys.RUN_STREAM: ">"},
                        count=min(free, self.settings.read_batch),
                        block=self.settings.block_ms,
                    )
                except ResponseError as error:
                    if "NOGROUP" not in str(error):
                        raise
                    await self._ensure_group()  # Redis restarted without its data
                    continue
                for _stream, stream_entries in reply or []:
                    entries += stream_entries
            elif free <= 0:
                await self._mark_saturated()
                await asyncio.sleep(0.01)
            if entries:
                await self._accept(entries)

    async def _mark_saturated(self) -> None:
        """Tell deliverers that the executor is holding runs back, or that its steps are
        past half their latency budget (at most 4 times a second; the mark lasts a
        second)."""
        now = asyncio.get_running_loop().time()
        if now - self._saturated_marked >= 0.25:
            self._saturated_marked = now
            await self._redis.set(keys.EXECUTOR_SATURATED, self.id, px=1000)

    async def _accept(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Lease the runs of stream entries and start driving them; acknowledge the
        entries once that is decided (an unacknowledged entry is claimed again)."""
        wanted = {fields.get(b"run_id", b"").decode() for _, fields in entries} - {""}
        wanted -= self._drivers.keys()
        if wanted:
            rows = await self._pool.fetch(
                _TAKE_LEASES, sorted(wanted), self.id, self.settings.lease_ttl_s
            )
            self._start([row for row in rows if row["id"] is not None])
            for workflow_id in rows[0]["limited"]:
                await self._admit(workflow_id)
        await self._redis.xack(
            keys.RUN_STREAM, keys.WORKER_GROUP, *(entry_id for entry_id, _ in entries)
        )

    async def _admit(self, workflow_id: uuid.UUID) -> None:
        """Lease and drive the oldest waiting runs of a workflow with a concurrency limit,
        as many as it has room for; one worker at a time per workflow."""
        self._limited.add(workflow_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", str(workflow_id)
            )
            rows = await conn.fetch(_ADMIT, workflow_id, self.id, self.settings.lease_ttl_s)
        self._start(rows)

    def _start(self, rows: list[asyncpg.Record]) -> None:
        for run, steps in self._leased(rows):
            task = asyncio.create_task(self._drive(run, steps), name=f"run {run.id}")
            self._drivers[run.id] = task

    @staticmethod
    def _leased(rows: list[asyncpg.Record]) -> list[tuple[LeasedRun, list[StepState]]]:
        return [
            (
                LeasedRun(
                    id=row["id"],
                    status=row["status"],
                    definition_id=row["definition_id"],
                    input_data=json.loads(row["input_data"]),
                    project_id=row["project_id"],
                    deadline_at=row["deadline_at"],
                    timeout_seconds=row["timeout_seconds"],
                    workflow_id=row["workflow_id"],
                    workflow_name=row["workflow_name"],
                    created_at=row["created_at"],
                ),
                [
                    StepState(
                        step_id=step_id,
                        agent_name=agent_name,
                        status=status,
                        attempt=attempt,
                        output=json.loads(output) if output is not None else None,
                        started_at=float(started_at) if started_at is not None else None,
                        parent_step_id=parent_step_id,
                        item_index=item_index,
                        error=error,
                    )
                    for (
                        step_id,
                        agent_name,
                        status,
                        attempt,
                        output,
                        started_at,
                        parent_step_id,
                        item_index,
                        error,
                    ) in row["steps"]
                ],
            )
            for row in rows
        ]

    async def _drive(self, run: LeasedRun, steps: list[StepState]) -> None:
        try:
            driver = RunDriver(
                run,
                steps,
                await self._catalog.workflow_data(run.definition_id),
                journal=self._journal,
                catalog=self._catalog,
                client=self._client,
                worker_id=self.id,
                on_step_latency=self._admission.observe,
            )
            self._driving[run.id] = driver
            await driver.drive()
        except Exception:
            log.exception("driver of run %s crashed; the run will be resumed", run.id)
        finally:
            self._drivers.pop(run.id, None)
            self._driving.pop(run.id, None)
            if run.workflow_id in self._limited and not self._stopping:
                # Its room goes to the workflow's next waiting run at once.
                admission = asyncio.create_task(self._admit_next(run.workflow_id))
                self._admissions.add(admission)
                admission.add_done_callback(self._admissions.discard)

    async def _admit_next(self, workflow_id: uuid.UUID) -> None:
        try:
            await self._admit(workflow_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The reconciler enqueues waiting runs again; they are admitted then.
            log.warning("could not admit the next run of workflow %s: %s", workflow_id, error)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl_s / 3)
            held = list(self._drivers)
            if not held:
                continue
            renewed = {
                r["id"]
                for r in await self._pool.fetch(
                    _RENEW_LEASES, self.id, held, self.settings.lease_ttl_s
                )
            }
            for run_id in set(held) - renewed:
                # Finished meanwhile, cancelled, or taken over: stop driving it.
                task = self._drivers.get(run_id)
                if task is not None:
                    task.cancel()

    async def _reconcile(self) -> None:
        """One worker at a time: re-enqueue runs nobody drives, and fail those past their
        deadline that nobody drives (a driver times out its own run)."""
        while True:
            lost: list[str] = []
            timed_out: list[tuple[Run, list[RunEvent]]] = []
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RECONCILER_LOCK):
                    lost = [
                        r["id"] for r in await conn.fetch(_RECONCILE, self.settings.enqueue_grace_s)
                    ]
                    timed_out = await run_store.time_out_overdue(conn, limit=100)
            for run, written in timed_out:
                self._publisher.publish([(event, str(run.workflow_id)) for event in written])
            if lost:
                log.info("reconciler re-enqueues %d run(s)", len(lost))
                await self._dispatcher.enqueue(lost)
            await asyncio.sleep(self.settings.reconcile_interval_s)

    async def _control(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(keys.RUN_CONTROL_CHANNEL)
        try:
            async for message in pubsub.listen():
                data: Any = message.get("data")
                if message.get("type") != "message" or not isinstance(data, bytes):
                    continue
                command, _, run_id = data.decode().partition(":")
                task = self._drivers.get(run_id)
                if command == "cancel" and task is not None:
                    task.cancel()
                driver = self._driving.get(run_id)
                if command == "signal" and driver is not None:
                    driver.signalled()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
