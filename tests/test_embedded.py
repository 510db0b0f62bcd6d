"""The embedded PostgreSQL and Redis behind ``baton serve``'s zero-setup default.

Every test runs the real servers from the wheels in its own temporary data directory on
loopback ports chosen at start; none touches the machine's own PostgreSQL or Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest
from redis.asyncio import Redis

from baton_server.embedded import (
    DataDirInUseError,
    EmbeddedServices,
    EmbeddedStartError,
    run_embedded,
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data directory, outside pytest's temporary tree.

    When tests run as root the servers run as an unprivileged user that needs search
    permission on every directory above their data. pytest resets /tmp/pytest-of-root to
    0700 whenever a session starts, so a concurrent session (another engineer, CI shard)
    would pull that permission from under a server that is starting.
    """
    path = Path(tempfile.mkdtemp(prefix="baton-embedded-test-")).resolve()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _asyncpg_dsn(services: EmbeddedServices) -> str:
    # asyncpg speaks plain libpq URLs; the "+asyncpg" driver suffix is SQLAlchemy's.
    return services.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _server_processes(data_dir: Path) -> dict[int, str]:
    """Live processes working inside ``data_dir`` (absolute), by pid, with their executable.

    Both servers (and every PostgreSQL backend and auxiliary process) chdir into their
    data directory, so this finds all of them without knowing their pids. Zombies are
    left out: they have exited and only wait for a parent that may never reap them.
    """
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            exe = Path(os.readlink(entry / "exe").removesuffix(" (deleted)")).name
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue  # exited meanwhile, or not ours to inspect
        if state != "Z" and cwd.is_relative_to(data_dir):
            found[int(entry.name)] = exe
    return found


async def _write_marks(services: EmbeddedServices, value: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(services))
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS marks (value text NOT NULL)")
        await connection.execute("INSERT INTO marks (value) VALUES ($1)", value)
    finally:
        await connection.close()
    redis = Redis.from_url(services.redis_url)
    try:
        await redis.rpush("marks", value)
    finally:
        await redis.aclose()


async def _read_marks(services: EmbeddedServices) -> tuple[list[str], list[str]]:
    """The marks in PostgreSQL and in Redis, in that order."""
    connection = await asyncpg.connect(_asyncpg_dsn(services))
    try:
        rows = await connection.fetch("SELECT value FROM marks ORDER BY value")
    finally:
        await connection.close()
    redis = Redis.from_url(services.redis_url)
    try:
        listed = await redis.lrange("marks", 0, -1)
    finally:
        await redis.aclose()
    return (
        [row["value"] for row in rows],
        [item.decode() if isinstance(item, bytes) else item for item in listed],
    )


async def _wait_until_gone(pids: set[int], data_dir: Path, seconds: float) -> set[int]:
    """Poll until none of ``pids`` runs in ``data_dir``; return those still running."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = pids & _server_processes(data_dir).keys()
        if not remaining or time.monotonic() > deadline:
            return remaining
        await asyncio.sleep(0.1)


async def test_data_survives_a_restart(data_dir: Path) -> None:
    async with run_embedded(data_dir) as services:
        assert services.database_url.startswith("postgresql+asyncpg://baton@127.0.0.1:")
        assert services.database_url.endswith("/baton")
        assert services.redis_url.startswith("redis://127.0.0.1:")
        names = set(_server_processes(data_dir).values())
        assert {"postgres", "redis-server"} <= names
        await _write_marks(services, "before restart")

    assert _server_processes(data_dir) == {}
    assert (data_dir / "logs" / "postgres.log").stat().st_size > 0
    assert (data_dir / "logs" / "redis.log").stat().st_size > 0

    async with run_embedded(data_dir) as services:
        assert await _read_marks(services) == (["before restart"], ["before restart"])


async def test_a_second_owner_is_refused_at_once(data_dir: Path) -> None:
    async with run_embedded(data_dir) as services:
        logs = {log: log.stat().st_size for log in (data_dir / "logs").iterdir()}
        started = time.monotonic()

        with pytest.raises(DataDirInUseError) as refused:
            async with run_embedded(data_dir):
                pytest.fail("a second owner must not get the data directory")

        # The lock is checked before anything else, so nothing was started (no new log
        # output) and the refusal does not wait for anything.
        assert time.monotonic() - started < 2
        assert str(data_dir) in str(refused.value)
        assert f"process {os.getpid()}" in str(refused.value)
        assert {log: log.stat().st_size for log in (data_dir / "logs").iterdir()} == logs

        # The refused attempt left the owner's servers and lock alone.
        await _write_marks(services, "still served")
        assert await _read_marks(services) == (["still served"], ["still served"])
        with pytest.raises(DataDirInUseError):
            async with run_embedded(data_dir):
                pass


async def test_an_exception_in_the_body_stops_both_servers(data_dir: Path) -> None:
    async def fail_while_serving() -> None:
        async with run_embedded(data_dir):
            assert _server_processes(data_dir)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_while_serving()

    assert _server_processes(data_dir) == {}
    async with run_embedded(data_dir):
        pass  # and the lock was released


async def test_cancellation_at_any_point_leaves_no_server_running(data_dir: Path) -> None:
    entered = asyncio.Event()

    async def serve_forever() -> None:
        async with run_embedded(data_dir):
            entered.set()
            await asyncio.Event().wait()

    # The first delays land in initdb or in the servers' startup, the last while serving.
    for delay in (0.0, 0.05, 0.3, 0.6, None):
        entered.clear()
        task = asyncio.create_task(serve_forever())
        if delay is None:
            await asyncio.wait_for(entered.wait(), 60)
        else:
            await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert _server_processes(data_dir) == {}, f"cancelled after {delay} s"

    async with run_embedded(data_dir):
        pass  # the lock was released every time


async def test_a_server_that_fails_to_start_is_reported_with_its_log(data_dir: Path) -> None:
    async with run_embedded(data_dir):
        pass
    config = data_dir / "postgres" / "postgresql.conf"
    good_config = config.read_text()
    config.write_text(good_config + "\nshared_buffers = 'plenty'\n")

    with pytest.raises(EmbeddedStartError) as failed:
        async with run_embedded(data_dir):
            pytest.fail("PostgreSQL cannot start with an invalid setting")

    message = str(failed.value)
    assert message.startswith("PostgreSQL exited during startup")
    assert "shared_buffers" in message  # from the tail of postgres.log
    assert str(data_dir / "logs" / "postgres.log") in message
    assert _server_processes(data_dir) == {}  # Redis, which did start, was stopped

    config.write_text(good_config)
    async with run_embedded(data_dir):
        pass  # and the lock was released


_HOLDER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from baton_server.embedded import run_embedded

    async def main() -> None:
        async with run_embedded(Path(sys.argv[1])) as services:
            print(json.dumps([services.database_url, services.redis_url]), flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_servers_die_with_a_killed_owner(data_dir: Path) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(data_dir), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        ready = await asyncio.wait_for(holder.stdout.readline(), 60)
        assert ready, "the holder process exited before its servers were ready"
        database_url, redis_url = json.loads(ready)
        services = EmbeddedServices(database_url=database_url, redis_url=redis_url)
        await _write_marks(services, "before the kill")

        servers = _server_processes(data_dir)
        assert {"postgres", "redis-server"} <= set(servers.values())
    finally:
        # SIGKILL: no cleanup code of the holder runs, only the kernel's.
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        await holder.wait()

    assert await _wait_until_gone(set(servers), data_dir, seconds=10) == set()

    # The flock died with its owner and the servers left nothing a new start trips on;
    # what was committed before the kill is still there.
    async with run_embedded(data_dir) as services:
        assert await _read_marks(services) == (["before the kill"], ["before the kill"])


async def test_servers_that_outlive_their_owner_are_stopped_first(data_dir: Path) -> None:
    # PR_SET_PDEATHSIG leaves a window in which a server outlives its Baton (still
    # shutting down, or stopped by job control or a debugger). Stopping the servers with
    # SIGSTOP before killing their owner recreates that state on demand: the death signal
    # stays queued, and the servers keep their files until something continues them.
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(data_dir), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60)
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        redis = int((data_dir / "redis" / "redis-server.pid").read_text().split()[0])
        assert _server_processes(data_dir)[postmaster] == "postgres"
        assert _server_processes(data_dir)[redis] == "redis-server"
        for pid in (postmaster, redis):
            os.kill(pid, signal.SIGSTOP)
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        await holder.wait()

    try:
        await asyncio.sleep(0.5)
        assert {postmaster, redis} <= _server_processes(data_dir).keys()

        async with run_embedded(data_dir) as services:
            running = _server_processes(data_dir)
            assert postmaster not in running
            assert redis not in running
            await _write_marks(services, "after the takeover")
            marks = ["after the takeover"]
            assert await _read_marks(services) == (marks, marks)
    finally:
        for pid in (postmaster, redis):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
