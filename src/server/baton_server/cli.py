"""The server's commands of ``baton``: ``serve``, ``worker``, ``deliver``, ``migrate``
and ``secret-key``.

The ``baton`` command belongs to the SDK (``baton_sdk.cli``), which knows nothing of the
server; this distribution adds these commands to it through the ``baton.commands``
entry point (:func:`register`), and makes ``baton keys create --direct`` possible
through ``baton.direct_keys`` (:func:`create_key_directly`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from baton_server.config import (
    AUTH_MODES,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    Settings,
    default_data_dir,
)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _run_traced(main: Coroutine[Any, Any, None], service: str) -> None:
    """Run a process's main coroutine, exporting traces if the environment asks
    (OTEL_EXPORTER_OTLP_ENDPOINT; see baton_server.tracing); a ServeError is the
    command's error message."""
    from baton_server import tracing
    from baton_server.loop import run
    from baton_server.serve import ServeError

    tracing.configure(service)
    try:
        run(main)
    except ServeError as error:
        raise click.ClickException(str(error)) from None
    finally:
        tracing.shutdown()


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=_LOG_FORMAT, stream=sys.stderr)
    # A line per migration step would drown Baton's own start-up lines.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BATON_DATA_DIR",
    default=None,
    help=f"Data directory of the embedded PostgreSQL and Redis [default: {default_data_dir()}].",
)
_database_url = click.option(
    "--database-url",
    envvar="BATON_DATABASE_URL",
    help="PostgreSQL URL (postgresql+asyncpg://...); disables the embedded servers.",
)
_redis_url = click.option(
    "--redis-url",
    envvar="BATON_REDIS_URL",
    help="Redis URL (redis://...); disables the embedded servers.",
)
_secret_key = click.option(
    "--secret-key",
    envvar="BATON_SECRET_KEY",
    default=None,
    help="Fernet key(s) sealing agent secrets, comma-separated, newest first "
    "[default: secret.key in the data directory, made on first start].",
)
_log_level = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="BATON_HOST",
    help="Interface to listen on (0.0.0.0 for all).",
)
@click.option(
    "--grpc-port",
    type=int,
    default=DEFAULT_GRPC_PORT,
    show_default=True,
    envvar="BATON_GRPC_PORT",
    help="gRPC port.",
)
@click.option(
    "--http-port",
    type=int,
    default=DEFAULT_HTTP_PORT,
    show_default=True,
    envvar="BATON_HTTP_PORT",
    help="REST (Envoy) port.",
)
@click.option(
    "--worker/--no-worker",
    default=True,
    show_default=True,
    help="Run an executor worker inside the server.",
)
@click.option(
    "--envoy/--no-envoy",
    default=True,
    show_default=True,
    help="Start Envoy on --http-port for the REST API (off when a separate Envoy fronts "
    "the servers).",
)
@click.option(
    "--auth",
    type=click.Choice(AUTH_MODES),
    default="auto",
    show_default=True,
    envvar="BATON_AUTH",
    help="open: calls need no credential; required: every call but the health checks "
    "needs an API key or JWT; auto: open on loopback, refuse to start elsewhere.",
)
@_data_dir
@_database_url
@_redis_url
@_secret_key
@_log_level
def serve(
    host: str,
    grpc_port: int,
    http_port: int,
    worker: bool,
    envoy: bool,
    auth: str,
    data_dir: Path | None,
    database_url: str | None,
    redis_url: str | None,
    secret_key: str | None,
    log_level: str,
) -> None:
    """Run the Baton server until interrupted.

    With no database or Redis configured, starts an embedded PostgreSQL and Redis
    in the data directory, so one command gives a working, persistent Baton.
    """
    from baton_server.config import AccessSettings
    from baton_server.serve import serve

    _configure_logging(log_level)
    try:
        access = AccessSettings.from_environment(auth)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    settings = Settings(
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        run_worker=worker,
        run_envoy=envoy,
        access=access,
        secret_key=secret_key,
    )
    _run_traced(serve(settings), "baton-serve")


@click.command()
@_database_url
@_redis_url
@_secret_key
@_data_dir
@_log_level
@click.option(
    "--deliveries/--no-deliveries",
    default=True,
    show_default=True,
    help="Deliver webhooks and callbacks too (--no-deliveries: leave them to `baton deliver`).",
)
def worker(
    database_url: str | None,
    redis_url: str | None,
    secret_key: str | None,
    data_dir: Path | None,
    log_level: str,
    deliveries: bool,
) -> None:
    """Run an executor worker (any number, against the same PostgreSQL and Redis).

    It runs workflows, fires schedules and delivers webhooks. It needs the API servers'
    secret key (BATON_SECRET_KEY, or their --data-dir) to open the agents' credentials.
    """
    from baton_server.serve import work

    _configure_logging(log_level)
    settings = Settings(
        database_url=database_url, redis_url=redis_url, secret_key=secret_key, data_dir=data_dir
    )
    _run_traced(work(settings, deliveries=deliveries), "baton-worker")


@click.command()
@_database_url
@_redis_url
@_secret_key
@_data_dir
@_log_level
@click.option(
    "--nice",
    "niceness",
    type=click.IntRange(0, 19),
    default=19,
    show_default=True,
    help="Lower the process's CPU priority by this much, below the executor's.",
)
def deliver(
    database_url: str | None,
    redis_url: str | None,
    secret_key: str | None,
    data_dir: Path | None,
    log_level: str,
    niceness: int,
) -> None:
    """Deliver webhooks and completion callbacks (any number, beside `baton worker
    --no-deliveries`), at a lower CPU priority than the executor.

    It needs the API servers' secret key (BATON_SECRET_KEY, or their --data-dir) to
    sign deliveries. With Redis it slows down while the executor is saturated.
    """
    from baton_server.serve import deliver

    _configure_logging(log_level)
    settings = Settings(
        database_url=database_url, redis_url=redis_url, secret_key=secret_key, data_dir=data_dir
    )
    _run_traced(deliver(settings, niceness=niceness), "baton-deliver")


@click.command()
@_data_dir
@_database_url
@_log_level
def migrate(data_dir: Path | None, database_url: str | None, log_level: str) -> None:
    """Apply database migrations, then exit."""
    from baton_server.serve import ServeError, migrate_only

    _configure_logging(log_level)
    try:
        asyncio.run(migrate_only(Settings(data_dir=data_dir, database_url=database_url)))
    except ServeError as error:
        raise click.ClickException(str(error)) from None
    click.echo("database is up to date")


@click.command("secret-key")
def secret_key_command() -> None:
    """Print a new secret key for BATON_SECRET_KEY (Fernet, 32 random bytes)."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


def create_key_directly(
    *, name: str, role: str, project: str | None, data_dir: Path | None, database_url: str | None
) -> tuple[str, str, str, str]:
    """``baton keys create --direct`` (entry point ``baton.direct_keys``): a key made in
    the database, without a server; its id, prefix, project id and secret."""
    from baton_server.access.model import Role
    from baton_server.serve import ServeError
    from baton_server.serve import create_key_directly as create

    settings = Settings(data_dir=data_dir, database_url=database_url)
    try:
        key, secret = asyncio.run(create(settings, name=name, role=Role[role], project=project))
    except ServeError as error:
        raise click.ClickException(str(error)) from None
    return str(key.id), key.prefix, str(key.project_id), secret


def register(main: click.Group) -> None:
    """Add the server's commands to the ``baton`` group (entry point ``baton.commands``)."""
    for command in (serve, worker, deliver, migrate, secret_key_command):
        main.add_command(command)
