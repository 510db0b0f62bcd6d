"""The delivery loop: fans queued events out to their endpoints and POSTs them, signed.

Deliverers run in workers (``baton worker``, ``baton serve``) or on their own (``baton
deliver``). They wake on the outbox's ``NOTIFY``, fan queued events out to deliveries
just in time, and claim due deliveries with ``SKIP LOCKED``, so any number share the
outbox. At least once: a delivery is leased (``lease_expires_at``) while it is
attempted; a deliverer that dies mid-attempt leaves the lease to expire, and the next
claim attempts it again with the same ``webhook-id``. Results are recorded in group
commits, each a compare-and-set on the attempt count, so two deliverers racing on an
expired lease record one result per attempt number at most.

A slow or dead endpoint slows nobody else: attempts run concurrently, each with a
timeout, at most ``per_endpoint`` in flight per webhook, and failures back off
exponentially (with jitter) over hours. Runs come first: while the executor is
saturated, deliverers slow to a trickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import redis.asyncio as redis
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from google.protobuf import json_format
from redis.exceptions import RedisError

from baton_server import keys
from baton_server.clock import SYSTEM_CLOCK, Clock
from baton_server.runs import store as run_store
from baton_server.runs.servicer import run_to_proto
from baton_server.sealing import SecretBox
from baton_server.tasks import cancel_and_wait
from baton_server.webhooks import signing
from baton_server.webhooks.targets import is_public

log = logging.getLogger(__name__)

EXCERPT_CHARS = 1000


@dataclass(frozen=True)
class DeliverySettings:
    """Retry and concurrency policy (``BATON_WEBHOOK_*`` variables, docs/webhooks.md)."""

    max_attempts: int = 12
    first_retry_s: float = 5.0
    max_retry_s: float = 4 * 3600.0
    timeout_s: float = 10.0
    concurrency: int = 64
    per_endpoint: int = 8
    #: Longest wait for due retries; new events wake the loop by notification.
    poll_s: float = 0.5
    allow_private: bool = False

    @classmethod
    def from_env(cls, auth_mode: str | None = None) -> DeliverySettings:
        """Defaults, overridden by ``BATON_WEBHOOK_MAX_ATTEMPTS``, ``_FIRST_RETRY_S``,
        ``_MAX_RETRY_S``, ``_TIMEOUT_S`` and ``_ALLOW_PRIVATE``; ``auth_mode`` (else
        ``BATON_AUTH``) decides private targets when that is unset."""
        env = os.environ
        defaults = cls()
        return cls(
            max_attempts=int(env.get("BATON_WEBHOOK_MAX_ATTEMPTS", defaults.max_attempts)),
            first_retry_s=float(env.get("BATON_WEBHOOK_FIRST_RETRY_S", defaults.first_retry_s)),
            max_retry_s=float(env.get("BATON_WEBHOOK_MAX_RETRY_S", defaults.max_retry_s)),
            timeout_s=float(env.get("BATON_WEBHOOK_TIMEOUT_S", defaults.timeout_s)),
            allow_private=allow_private_default(
                auth_mode or env.get("BATON_AUTH"), env.get("BATON_WEBHOOK_ALLOW_PRIVATE")
            ),
        )

    @property
    def lease_s(self) -> float:
        """How long an attempt holds its delivery: its timeout, and time to record the
        result. A deliverer that dies mid-attempt lets it go after this."""
        return self.timeout_s + 10.0

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the attempt after ``attempts`` failed ones: exponential
        (x4) from ``first_retry_s``, capped, with equal jitter."""
        ceiling: float = min(self.max_retry_s, self.first_retry_s * 4.0 ** (attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def allow_private_default(auth_mode: str | None, value: str | None) -> bool:
    """``BATON_WEBHOOK_ALLOW_PRIVATE`` if set; else private targets are allowed only
    on an open server (a local, single-user one)."""
    if value:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return auth_mode == "open"


class PublicResolver(AbstractResolver):
    """Resolves names to public addresses only (refuses private, loopback, link-local)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves to a private, loopback or link-local address")
        return public

    async def close(self) -> None:
        await self._inner.close()


# Due deliveries, then leased: per webhook the oldest ones, at most `per_endpoint` in
# flight (attempts in flight elsewhere count), and completion callbacks; oldest first.
# Each webhook is one probe of the partial indexes of migration 0007, so the cost grows
# with the webhooks and the batch, never with the backlog.
_CLAIM = """
WITH hooks AS (
    SELECT d.id, d.next_attempt_at
    FROM webhooks w
    CROSS JOIN LATERAL (
        SELECT id, next_attempt_at FROM deliveries
        WHERE webhook_id = w.id AND status = 'pending' AND next_attempt_at <= $1
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
        ORDER BY next_attempt_at
        LIMIT GREATEST(0, $3 - (
            SELECT count(*) FROM deliveries f
            WHERE f.webhook_id = w.id AND f.status = 'pending' AND f.lease_expires_at > $1
        ))
        FOR UPDATE SKIP LOCKED
    ) d
), callbacks AS (
    SELECT id, next_attempt_at FROM deliveries
    WHERE webhook_id IS NULL AND status = 'pending' AND next_attempt_at <= $1
      AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), locked AS (
    SELECT id FROM (SELECT * FROM hooks UNION ALL SELECT * FROM callbacks) due
    ORDER BY next_attempt_at LIMIT $2
)
UPDATE deliveries d SET lease_expires_at = $1 + make_interval(secs => $4)
FROM locked
WHERE d.id = locked.id
RETURNING d.id, d.project_id, d.webhook_id, d.run_id, d.event, d.payload::text AS payload,
          d.attempts,
          COALESCE((SELECT w.url FROM webhooks w WHERE w.id = d.webhook_id),
                   (SELECT r.callback_url FROM runs r WHERE r.id = d.run_id)) AS url,
          COALESCE((SELECT w.secret FROM webhooks w WHERE w.id = d.webhook_id),
                   (SELECT c.secret FROM run_callbacks c WHERE c.run_id = d.run_id)) AS secret
"""

# Queued events (migration 0007) become one delivery per subscribed endpoint, in one
# statement that deletes them: an event is fanned out exactly once. An endpoint created
# after the event does not get it.
_EXPAND = """
WITH taken AS (
    DELETE FROM outbox_events WHERE id IN (
        SELECT id FROM outbox_events ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    RETURNING project_id, run_id, sequence, event, payload, created_at
), rendered AS (
    SELECT t.project_id, t.run_id, t.event, t.created_at,
           COALESCE(t.payload, jsonb_build_object(
               'type', t.event,
               'timestamp', e.created_at,
               'data', jsonb_strip_nulls(jsonb_build_object(
                   'run_id', e.run_id,
                   'workflow_id', r.workflow_id,
                   'workflow_name', r.workflow_name,
                   'step_id', e.step_id,
                   'sequence', e.sequence
               )) || COALESCE(e.data, '{}'::jsonb)
           )) AS payload
    FROM taken t
    LEFT JOIN run_events e ON e.run_id = t.run_id AND e.sequence = t.sequence
    LEFT JOIN runs r ON r.id = t.run_id
), fanned AS (
    INSERT INTO deliveries (id, project_id, webhook_id, run_id, event, payload, created_at)
    SELECT gen_random_uuid(), t.project_id, w.id, t.run_id, t.event, t.payload, t.created_at
    FROM rendered t
    JOIN webhooks w ON w.project_id = t.project_id AND w.enabled AND t.event = ANY(w.events)
                   AND w.created_at <= t.created_at
    WHERE t.payload IS NOT NULL  -- a run deleted before its events were fanned out
)
SELECT count(*) FROM taken
"""
#: While the executor is saturated, a deliverer keeps at most this many attempts in
#: flight and pauses this long between claims: about 20 deliveries a second, so none
#: waits forever, and the cores go to runs.
YIELD_IN_FLIGHT = 2
YIELD_PAUSE_S = 0.1
#: What the outbox's writers notify once they commit.
OUTBOX_CHANNEL = "baton_outbox"
#: Events fanned out at a time. Deliveries are made only as fast as they are needed
#: (see ``Deliverer.deliver_due``): under overload the backlog stays one row per event.
_EXPAND_BATCH = 100

# The results of many attempts in one statement (a compare-and-set on each one's attempt
# count, so a late result of an attempt whose lease expired changes nothing).
_RECORD = """
UPDATE deliveries d SET
    attempts = r.attempts + 1,
    status = r.status,
    next_attempt_at = COALESCE(r.next_at, d.next_attempt_at),
    lease_expires_at = NULL,
    url = r.url,
    last_status_code = r.code,
    last_duration_ms = r.duration_ms,
    last_error = r.error,
    response_excerpt = r.excerpt,
    payload = COALESCE(d.payload, r.rendered::jsonb),
    delivered_at = CASE WHEN r.status = 'succeeded' THEN r.at ELSE d.delivered_at END
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::int[],
            $7::int[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
     AS r(id, attempts, status, next_at, url, code, duration_ms, error, excerpt, rendered, at)
WHERE d.id = r.id AND d.attempts = r.attempts
"""


_Waiting = list[tuple[tuple[object, ...], "asyncio.Future[None]"]]


class _Recorder:
    """Group commit of attempt results: results that arrive while a statement is in
    flight go together in the next one, so a burst of attempts costs a few statements."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queue: _Waiting = []
        self._flushing = False

    async def record(self, result: tuple[object, ...]) -> None:
        """Queue ``result`` (one row of ``_RECORD``'s columns); return once committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((result, done))
        if not self._flushing:
            await self._flush()
        await done

    async def _flush(self) -> None:
        self._flushing = True
        batch: _Waiting = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                columns = [list(c) for c in zip(*(r for r, _ in batch), strict=True)]
                try:
                    await self._pool.execute(_RECORD, *columns)
                except Exception as error:
                    for _, waiting in batch:
                        waiting.set_exception(error)
                else:
                    for _, waiting in batch:
                        waiting.set_result(None)
        finally:
            self._flushing = False
            # Cancelled mid-statement (the deliverer stopping): nobody waits forever.
            for _, waiting in [*batch, *self._queue]:
                waiting.cancel()
            self._queue = []


@dataclass(frozen=True)
class _Attempt:
    status_code: int | None
    duration_ms: int
    error: str | None
    excerpt: str | None
    retryable: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def message_id(delivery_id: uuid.UUID) -> str:
    """The ``webhook-id`` of a delivery (the same on every attempt)."""
    return f"msg_{delivery_id}"


class Deliverer:
    """Delivers the outbox until stopped. Run any number against one database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        secrets: SecretBox,
        settings: DeliverySettings | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        redis_client: redis.Redis | None = None,
    ) -> None:
        """``redis_client`` lets it see when the executor is saturated, and yield."""
        self._pool = pool
        self._redis = redis_client
        self._saturated = False
        self._saturation_checked = -1.0
        self._secrets = secrets
        self.settings = settings or DeliverySettings()
        self._clock = clock
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        # Wakes the loop: the outbox's NOTIFY (new events, also flagged for the fan-out)
        # and attempts that free half the slots. Between wakes it does not query: a
        # round of fan-out and claim serves many deliveries.
        self._wake = asyncio.Event()
        self._events_waiting = True
        # Whether the last claim found fewer due deliveries than free slots.
        self._short = True
        self._recorder = _Recorder(pool)
        # Opened signing secrets by sealed text: opening one costs a Fernet decryption.
        self._opened: dict[str, str] = {}
        self._listener: asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | None = None

    def start(self) -> None:
        # Its own session, so deliveries never take the agent client's connections.
        resolver = None if self.settings.allow_private else PublicResolver()
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency, resolver=resolver),
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
        )
        self._task = asyncio.create_task(self._run(), name="deliveries")

    async def stop(self) -> None:
        tasks = [t for t in (self._task,) if t is not None]
        await cancel_and_wait([*tasks, *self._in_flight])
        await self._unlisten()
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            self._wake.clear()
            try:
                await self._listen()
                await self.deliver_due()
                delay = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("delivery claim failed, retrying in %.1fs: %s", delay, error)
                await self._unlisten()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if await self.executor_saturated():
                # Runs first: a trickle of deliveries until the executor has room.
                await asyncio.sleep(YIELD_PAUSE_S)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            except TimeoutError:
                # Retries fall due with time; a notification lost with a connection
                # is made up for here.
                self._events_waiting = True

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._unlisten()
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(OUTBOX_CHANNEL, self._notified)

    def _notified(self, *_: object) -> None:
        self._events_waiting = True
        self._wake.set()

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await listener.remove_listener(OUTBOX_CHANNEL, self._notified)
            await self._pool.release(listener)

    async def executor_saturated(self) -> bool:
        """Whether a worker's admission control is holding runs back (checked at most
        every ``YIELD_PAUSE_S``); never when Redis is unknown or away."""
        if self._redis is None:
            return False
        now = asyncio.get_running_loop().time()
        if now - self._saturation_checked >= YIELD_PAUSE_S:
            self._saturation_checked = now
            try:
                self._saturated = bool(await self._redis.exists(keys.EXECUTOR_SATURATED))
            except (RedisError, OSError):
                self._saturated = False
        return self._saturated

    async def expand(self) -> int:
        """Fan up to ``_EXPAND_BATCH`` queued events out to their endpoints'
        deliveries; returns how many events."""
        taken: int = await self._pool.fetchval(_EXPAND, _EXPAND_BATCH)
        if taken == _EXPAND_BATCH:
            self._events_waiting = True  # more are queued
        return taken

    async def deliver_due(self) -> int:
        """Claim what is due (as many as there are free slots) and start attempting
        it; returns how many were claimed.

        Queued events are fanned out first, but only when the last claim could not fill
        the free slots: deliveries are made just in time, so a backlog costs one row
        per event, and fanning out (a row per endpoint) never runs ahead of delivering.
        """
        if self._events_waiting and self._short:
            self._events_waiting = False
            await self.expand()
        limit = YIELD_IN_FLIGHT if await self.executor_saturated() else self.settings.concurrency
        free = limit - len(self._in_flight)
        if free <= 0:
            return 0
        rows = await self._pool.fetch(
            _CLAIM,
            self._clock.now(),
            free,
            self.settings.per_endpoint,
            self.settings.lease_s,
        )
        for row in rows:
            task = asyncio.create_task(self._attempt(row), name=f"delivery {row['id']}")
            self._in_flight.add(task)
            task.add_done_callback(self._attempted)
        self._short = len(rows) < free
        if self._short and self._events_waiting:
            self._wake.set()  # fan out more now
        return len(rows)

    async def drain(self) -> None:
        """Wait for the attempts in flight (tests)."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _attempt(self, row: asyncpg.Record) -> None:
        try:
            await self._attempt_once(row)
        except Exception:  # one delivery's bug must not stop the loop
            log.exception("delivery %s failed unexpectedly", row["id"])

    def _attempted(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # Freed slots may let waiting deliveries go: claim again once half are free.
        if (self.settings.concurrency - len(self._in_flight)) * 2 >= self.settings.concurrency:
            self._wake.set()

    async def _attempt_once(self, row: asyncpg.Record) -> None:
        url: str | None = row["url"]
        payload: str | None = row["payload"]
        rendered: str | None = None
        if payload is None and row["run_id"] is not None:
            rendered = payload = await self._render_run(row)
        if url is None or payload is None or row["secret"] is None:
            # The webhook or run is gone: nothing left to deliver to.
            result = _Attempt(None, 0, "the endpoint no longer exists", None, retryable=False)
        else:
            secret = self._open(row["secret"])
            result = await self._post(url, secret, message_id(row["id"]), payload.encode())
        await self._record(row, url, result, rendered)

    def _open(self, sealed: str) -> str:
        secret = self._opened.get(sealed)
        if secret is None:
            if len(self._opened) >= 1024:
                self._opened.clear()
            secret = self._opened[sealed] = self._secrets.open(sealed)["secret"]
        return secret

    async def _render_run(self, row: asyncpg.Record) -> str | None:
        """A callback's body: the run as GetRun answers it over REST, at its end."""
        async with self._pool.acquire() as conn:
            run = await run_store.get(conn, row["project_id"], row["run_id"])
        if run is None:
            return None
        body = json_format.MessageToDict(
            run_to_proto(run),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        return json.dumps(
            {"type": row["event"], "timestamp": self._clock.now().isoformat(), "data": body},
            separators=(",", ":"),
        )

    async def _post(self, url: str, secret: str, msg_id: str, body: bytes) -> _Attempt:
        assert self._http is not None
        host = urlsplit(url).hostname or ""
        if not self.settings.allow_private and _is_private_literal(host):
            return _Attempt(None, 0, f"{host} is not a public address", None, retryable=False)
        headers = signing.headers(secret, msg_id, int(self._clock.now().timestamp()), body)
        started = time.monotonic()
        async with self._slots:
            try:
                async with self._http.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    text = await response.content.read(EXCERPT_CHARS * 4)
                    excerpt = text.decode(errors="replace")[:EXCERPT_CHARS]
                    status = response.status
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                elapsed = int((time.monotonic() - started) * 1000)
                reason = str(error) or type(error).__name__
                return _Attempt(None, elapsed, reason, None)
        elapsed = int((time.monotonic() - started) * 1000)
        error_text = None if 200 <= status < 300 else f"HTTP {status}"
        return _Attempt(status, elapsed, error_text, excerpt)

    async def _record(
        self, row: asyncpg.Record, url: str | None, result: _Attempt, rendered: str | None
    ) -> None:
        attempts = row["attempts"] + 1
        now = self._clock.now()
        next_at: datetime | None = None
        if result.succeeded:
            status = "succeeded"
        elif result.retryable and attempts < self.settings.max_attempts:
            status = "pending"
            next_at = now + timedelta(seconds=self.settings.retry_delay(attempts))
        else:
            status = "failed"
        await self._recorder.record(
            (
                row["id"],
                row["attempts"],
                status,
                next_at,
                url,
                result.status_code,
                result.duration_ms,
                result.error,
                result.excerpt,
                rendered,
                now,
            )
        )


def _is_private_literal(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: the session's resolver checks it
