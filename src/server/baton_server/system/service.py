"""Health, readiness and metrics of this server process.

Every dependency check is bounded by a short timeout, so a hung PostgreSQL or Redis makes
the process "not ready" quickly instead of hanging the probe. Metrics read from
PostgreSQL and Redis are taken at scrape time; a source that fails is reported by
``baton_scrape_source_up`` and its metrics are left out rather than reported stale.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.asyncio as redis
import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server import keys
from baton_server.runs.model import CANCELLED, COMPLETED, FAILED, PAUSED, PENDING, RUNNING
from baton_server.system import store

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Bound of each readiness check (they run concurrently).
CHECK_TIMEOUT_S = 1.0
#: Bound of each metrics source read at scrape time.
SCRAPE_TIMEOUT_S = 2.0
#: Counting undelivered stream entries one by one (Redis < 7 has no group `lag`) stops
#: here; the gauge then reads "at least this many".
QUEUE_COUNT_CAP = 10_000
RUN_STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, PAUSED)


def baton_version() -> str:
    try:
        return importlib.metadata.version("baton-orchestrator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Health:
    timestamp: datetime
    version: str
    uptime_seconds: float
    services: Mapping[str, str]


@dataclass(frozen=True)
class Check:
    """Outcome of checking one dependency."""

    healthy: bool
    message: str
    response_time_ms: float | None = None


@dataclass(frozen=True)
class Readiness:
    timestamp: datetime
    checks: Mapping[str, Check]

    @property
    def ready(self) -> bool:
        return all(check.healthy for check in self.checks.values())


@dataclass(frozen=True)
class QueueState:
    """The run stream as the workers' consumer group sees it."""

    length: int
    undelivered: int
    pending: int


@dataclass
class _Scrape:
    """What one scrape read from PostgreSQL and Redis (None: that source failed)."""

    uptime_seconds: float
    version: str
    runs_by_status: dict[str, int] | None = None
    executor_lag_seconds: float | None = None
    queue: QueueState | None = None
    sources_up: dict[str, bool] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("baton_info", "Baton version of this process.", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily(
            "baton_uptime_seconds",
            "Seconds since this process started serving.",
            value=self.uptime_seconds,
        )
        up = GaugeMetricFamily(
            "baton_scrape_source_up",
            "1 when this scrape could read the source (database, redis), else 0.",
            labels=["source"],
        )
        for source, ok in sorted(self.sources_up.items()):
            up.add_metric([source], 1 if ok else 0)
        yield up
        if self.runs_by_status is not None:
            by_status = GaugeMetricFamily(
                "baton_runs", "Runs by status, counted in PostgreSQL.", labels=["status"]
            )
            for status in RUN_STATUSES:
                by_status.add_metric([status], self.runs_by_status.get(status, 0))
            yield by_status
        if self.executor_lag_seconds is not None:
            yield GaugeMetricFamily(
                "baton_executor_lag_seconds",
                "How long the oldest PENDING run has waited for a worker (0 when none).",
                value=self.executor_lag_seconds,
            )
        if self.queue is not None:
            yield GaugeMetricFamily(
                "baton_run_queue_depth",
                "Runs on the Redis run stream that no worker has read yet.",
                value=self.queue.undelivered,
            )
            yield GaugeMetricFamily(
                "baton_run_queue_pending",
                "Runs a worker read from the stream but has not acknowledged yet.",
                value=self.queue.pending,
            )
            yield GaugeMetricFamily(
                "baton_run_stream_length",
                "Entries kept on the Redis run stream (read ones included, capped).",
                value=self.queue.length,
            )


class _ScrapeCollector(Collector):
    def __init__(self, scrape: _Scrape) -> None:
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        return self._scrape.collect()


class SystemService:
    """Liveness, readiness and metrics; ``set_serving`` mirrors the gRPC health status."""

    def __init__(
        self, engine: AsyncEngine, redis_client: redis.Redis, service_names: tuple[str, ...]
    ) -> None:
        self._engine = engine
        self._redis = redis_client
        self._service_names = service_names
        self._serving = False
        self._started = time.monotonic()
        self._version = baton_version()

    def set_serving(self, serving: bool) -> None:
        self._serving = serving

    def health(self) -> Health:
        state = "SERVING" if self._serving else "NOT_SERVING"
        return Health(
            timestamp=datetime.now(UTC),
            version=self._version,
            uptime_seconds=self._uptime(),
            services={name: state for name in self._service_names},
        )

    async def readiness(self) -> Readiness:
        database, cache = await asyncio.gather(
            _check("Database", self._ping_database), _check("Redis", self._ping_redis)
        )
        return Readiness(timestamp=datetime.now(UTC), checks={"database": database, "redis": cache})

    async def metrics(self) -> bytes:
        """The Prometheus text exposition: this process's metrics, then the scrape's."""
        scrape = _Scrape(uptime_seconds=self._uptime(), version=self._version)
        database, cache = await asyncio.gather(
            _read("database", self._read_database), _read("redis", self._read_queue)
        )
        scrape.sources_up = {"database": database is not None, "redis": cache is not None}
        if database is not None:
            scrape.runs_by_status, scrape.executor_lag_seconds = database
        scrape.queue = cache
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ScrapeCollector(scrape))
        # The default registry holds the RPC metrics, the event subscriber gauge and the
        # process collectors; the names of the two parts never overlap.
        return generate_latest(REGISTRY) + generate_latest(registry)

    def _uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    async def _ping_database(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def _ping_redis(self) -> None:
        await self._redis.ping()

    async def _read_database(self) -> tuple[dict[str, int], float]:
        async with self._engine.connect() as conn:
            return await store.count_runs_by_status(conn), await store.oldest_pending_age(conn)

    async def _read_queue(self) -> QueueState:
        try:
            groups: list[dict[str, Any]] = await self._redis.xinfo_groups(keys.RUN_STREAM)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return QueueState(length=0, undelivered=0, pending=0)  # nothing enqueued yet
            raise
        length = int(await self._redis.xlen(keys.RUN_STREAM))
        group = next((g for g in groups if _text(g.get("name")) == keys.WORKER_GROUP), None)
        if group is None:
            return QueueState(length=length, undelivered=length, pending=0)  # no worker yet
        lag = group.get("lag")
        if lag is None:
            # Redis < 7 (or a trimmed stream): count what follows the last delivery.
            last = _text(group.get("last-delivered-id")) or "0-0"
            after = await self._redis.xrange(
                keys.RUN_STREAM, min=f"({last}", max="+", count=QUEUE_COUNT_CAP
            )
            lag = len(after or [])
        return QueueState(length=length, undelivered=int(lag), pending=int(group["pending"]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


async def _check(what: str, probe: Callable[[], Awaitable[None]]) -> Check:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await probe()
    except TimeoutError:
        return Check(False, f"{what} did not answer within {CHECK_TIMEOUT_S * 1000:.0f} ms")
    except Exception as error:  # any failure to answer is the finding, not a crash
        return Check(False, f"{what} connection failed: {_describe(error)}")
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    return Check(True, f"{what} connection active", elapsed_ms)


async def _read(source: str, read: Callable[[], Awaitable[_T]]) -> _T | None:
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            return await read()
    except Exception as error:  # a metrics scrape reports a broken source, it never fails
        log.warning("metrics: could not read the %s: %s", source, _describe(error))
        return None


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
