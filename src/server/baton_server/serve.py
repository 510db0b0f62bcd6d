"""``baton serve``: the whole server process, from start to graceful stop.

Order matters: the ports are checked first (fail fast, before starting anything), then
the embedded PostgreSQL/Redis (or the configured ones), then the gRPC server reporting
NOT_SERVING, then migrations, then Envoy (REST), then SERVING. SIGINT/SIGTERM reverse it,
except that Envoy stops last, so REST calls in flight finish with the gRPC server's grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.access import service as access_service
from baton_server.access import store as access_store
from baton_server.access.model import ApiKey, Role
from baton_server.access.tokens import JwtVerifier
from baton_server.app import GrpcApp, PortInUseError, start_grpc
from baton_server.config import AccessSettings, Settings, default_data_dir, is_loopback
from baton_server.db import migrate
from baton_server.db.engine import create_engine
from baton_server.db.pool import create_pool
from baton_server.db.tables import DEFAULT_PROJECT_NAME
from baton_server.embedded import DataDirInUseError, EmbeddedStartError, run_embedded
from baton_server.envoy import EnvoyStartError, EnvoySupervisor, Upstream, loopback_for
from baton_server.errors import BatonError
from baton_server.executor.worker import Worker
from baton_server.loop import freeze_startup_objects
from baton_server.sealing import SecretBox, SecretKeyError, seal_stored
from baton_server.webhooks.delivery import Deliverer, DeliverySettings

log = logging.getLogger(__name__)

#: In a data directory while its embedded servers run: where to reach PostgreSQL.
RUNNING_FILE = "running.json"


class ServeError(RuntimeError):
    """A start-up problem the user must fix; printed without a traceback."""


@dataclass(frozen=True)
class Backends:
    """Where PostgreSQL and Redis are, once running."""

    database_url: str
    redis_url: str


def check_port_free(host: str, port: int, option: str = "--grpc-port") -> None:
    """Fail fast with a clear message when ``port`` is taken (before starting anything)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"port {port} on {host} is already in use "
                    f"(is another Baton running? choose another with {option})"
                ) from None
            raise


@contextlib.asynccontextmanager
async def backends(settings: Settings) -> AsyncIterator[Backends]:
    """The configured PostgreSQL and Redis, or embedded ones started in the data dir."""
    if settings.database_url and settings.redis_url:
        yield Backends(settings.database_url, settings.redis_url)
        return
    if not settings.embedded:
        raise ServeError(
            "set both BATON_DATABASE_URL and BATON_REDIS_URL (or neither, to use the "
            "embedded PostgreSQL and Redis)"
        )
    data_dir = settings.data_dir or default_data_dir()
    log.info("starting embedded PostgreSQL and Redis in %s", data_dir)
    async with contextlib.AsyncExitStack() as stack:
        try:
            services = await stack.enter_async_context(run_embedded(data_dir))
        except (DataDirInUseError, EmbeddedStartError) as error:
            raise ServeError(str(error)) from None
        # Where the running servers are, for `baton keys create --direct` while this
        # process owns the directory (readable by its owner only, like the data).
        published = data_dir / RUNNING_FILE
        descriptor = os.open(published, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"database_url": services.database_url}, file)
        stack.callback(published.unlink, missing_ok=True)
        yield Backends(services.database_url, services.redis_url)


def _envoy_dir(settings: Settings) -> Path | None:
    """Where Envoy's configuration and log go: the data directory when Baton owns one,
    otherwise a temporary directory (None)."""
    if not settings.embedded:
        return None
    return (settings.data_dir or default_data_dir()) / "envoy"


async def wait_for_database(engine: AsyncEngine, *, max_wait: float = 60.0) -> None:
    """Retry until PostgreSQL accepts connections (it may still be starting)."""
    delay = 0.1
    last_error: Exception | None = None
    try:
        async with asyncio.timeout(max_wait):
            while True:
                try:
                    async with engine.connect():
                        return
                except Exception as error:  # any connect failure means "not yet"
                    last_error = error
                    log.warning("waiting for PostgreSQL: %s", error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
    except TimeoutError:
        raise ServeError(f"PostgreSQL is unreachable: {last_error}") from None


def access_settings(settings: Settings) -> AccessSettings:
    """The access settings with the mode decided: ``auto`` is ``open`` on loopback and
    refuses to start on any other interface (secure by default)."""
    access = settings.access
    if access.jwt is not None:
        try:
            JwtVerifier(access.jwt)  # a missing or unreadable key file fails here, clearly
        except (OSError, ValueError) as error:
            raise ServeError(f"JWT configuration: {error}") from None
    if access.mode != "auto":
        return access
    if not is_loopback(settings.host):
        raise ServeError(
            f"refusing to listen on {settings.host} without authentication: pass --auth"
            " required (BATON_AUTH=required), or --auth open to accept anonymous calls"
            " from the network"
        )
    return replace(access, mode="open")


def secret_box(settings: Settings, *, create: bool) -> SecretBox:
    """The key that seals agent secrets: BATON_SECRET_KEY, or the data directory's."""
    try:
        return SecretBox.load(
            settings.secret_key, settings.data_dir or default_data_dir(), create=create
        )
    except SecretKeyError as error:
        raise ServeError(str(error)) from None


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[GrpcApp]:
    """A fully started Baton server (with its worker); stops everything on exit."""
    access = access_settings(settings)
    check_port_free(settings.host, settings.grpc_port)
    if settings.run_envoy:
        if settings.http_port == 0:
            raise ServeError("--http-port must name a port (Envoy cannot report one it picked)")
        check_port_free(settings.host, settings.http_port, "--http-port")
    secrets = secret_box(settings, create=True)
    async with backends(settings) as found, contextlib.AsyncExitStack() as stack:
        envoy = EnvoySupervisor(_envoy_dir(settings))
        stack.push_async_callback(envoy.stop)
        engine = create_engine(found.database_url)
        stack.push_async_callback(engine.dispose)
        redis_client = redis.Redis.from_url(found.redis_url)
        stack.push_async_callback(redis_client.aclose)
        try:
            app = await start_grpc(
                engine, redis_client, settings.grpc_address, secrets=secrets, access=access
            )
        except PortInUseError as error:
            raise ServeError(str(error)) from None
        stack.push_async_callback(app.stop)
        await wait_for_database(engine)
        await migrate.upgrade(engine)
        try:
            await seal_stored(engine, secrets)
        except SecretKeyError as error:
            raise ServeError(f"{error} (was BATON_SECRET_KEY changed?)") from None
        if settings.run_worker:
            worker = Worker(
                found.database_url,
                found.redis_url,
                secrets=secrets,
                deliveries=DeliverySettings.from_env(access.mode),
            )
            await worker.start()
            stack.push_async_callback(worker.stop)
        if settings.run_envoy:
            try:
                await envoy.start(
                    host=settings.host,
                    port=settings.http_port,
                    upstream=Upstream(loopback_for(settings.host), app.port),
                )
            except EnvoyStartError as error:
                raise ServeError(str(error)) from None
        await app.set_serving(True)
        log.info(
            "Baton is serving gRPC on %s%s (auth %s)",
            settings.grpc_address,
            f" and REST (and gRPC) on port {settings.http_port}" if settings.run_envoy else "",
            access.mode,
        )
        yield app


async def work(settings: Settings, *, deliveries: bool = True) -> None:
    """``baton worker``: execute runs, fire schedules and (unless ``deliveries`` is
    false) deliver webhooks until SIGINT or SIGTERM (no API, no migrations)."""
    if not (settings.database_url and settings.redis_url):
        raise ServeError("a standalone worker needs BATON_DATABASE_URL and BATON_REDIS_URL")
    worker = Worker(
        settings.database_url,
        settings.redis_url,
        secrets=secret_box(settings, create=False),
        deliver=deliveries,
    )
    await worker.start()
    freeze_startup_objects()
    try:
        await _until_signalled()
    finally:
        await worker.stop()


async def deliver(settings: Settings, *, niceness: int) -> None:
    """``baton deliver``: deliver webhooks and callbacks until SIGINT or SIGTERM.

    The process first lowers its CPU priority by ``niceness``: sharing cores with the
    executor, deliveries then take only the CPU the executor leaves. With Redis
    (``redis_url``) it also sees when a worker's admission control holds runs back, and
    then slows to a trickle: under overload deliveries wait in the outbox, runs do not.
    """
    if not settings.database_url:
        raise ServeError("a deliverer needs BATON_DATABASE_URL")
    if niceness:
        os.nice(niceness)
    secrets = secret_box(settings, create=False)
    # Connections are opened on demand, so it starts before PostgreSQL accepts them.
    # Every statement looks deliveries up by key: as for the executor, a young table's
    # missing statistics must not turn them into scans of the backlog.
    pool = await create_pool(
        settings.database_url,
        min_size=0,
        max_size=8,
        server_settings={"enable_seqscan": "off"},
    )
    redis_client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    deliverer = Deliverer(pool, secrets, DeliverySettings.from_env(), redis_client=redis_client)
    deliverer.start()
    freeze_startup_objects()
    try:
        await _until_signalled()
    finally:
        await deliverer.stop()
        await pool.close()
        if redis_client is not None:
            await redis_client.aclose()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")


async def _migrate(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        await wait_for_database(engine)
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured database; else the embedded one of a running ``baton serve``;
    else the embedded one, started for the duration."""
    if settings.database_url:
        yield settings.database_url
        return
    published = (settings.data_dir or default_data_dir()) / RUNNING_FILE
    if published.exists():
        yield str(json.loads(published.read_text())["database_url"])
        return
    async with backends(settings) as found:
        yield found.database_url


async def migrate_only(settings: Settings) -> None:
    """Apply migrations to the configured (or embedded) database, then return."""
    async with database_url(settings) as url:
        await _migrate(url)


async def create_key_directly(
    settings: Settings, *, name: str, role: Role, project: str | None
) -> tuple[ApiKey, str]:
    """``baton keys create --direct``: a key made in the database, no server needed
    (the first admin key of a server that requires one). ``project``: id or name."""
    async with database_url(settings) as url:
        engine = create_engine(url, pool_size=1)
        try:
            await wait_for_database(engine)
            await migrate.upgrade(engine)
            async with engine.begin() as conn:
                found = await access_store.find_project(conn, project or DEFAULT_PROJECT_NAME)
                if found is None:
                    raise ServeError(f"no project {project!r}")
                return await access_service.create_key(
                    conn,
                    name=name,
                    role=role,
                    project_id=found.id,
                    expires_at=None,
                    created_by="baton keys create --direct",
                )
        except BatonError as error:
            raise ServeError(error.message) from None
        finally:
            await engine.dispose()


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    async with running_server(settings):
        freeze_startup_objects()
        await _until_signalled()
