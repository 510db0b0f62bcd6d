"""Chaos: many faults at once, under load, and what clients and agents saw meanwhile.

Run::

    .venv/bin/python bench/chaos.py [--runs 1000] [--rate 15] [--kill-every 5]
        [--agent-delay-ms 100] [--settle-s 120] [--fast-recovery] [--json PATH]

Everything is a real process on loopback, started here and stopped at the end:

* the embedded PostgreSQL and Redis (``baton_server.embedded``), on ports that stay
  theirs so that a restarted server comes back where it was;
* the lean A2A agent (``bench/lean_agent.py``), holding every answer
  ``--agent-delay-ms`` so that calls are in flight when faults hit, and recording every
  call by its idempotency key;
* two API servers, ``baton serve --no-worker`` (the first with its Envoy, for REST),
  and two ``baton worker`` processes, all on the same PostgreSQL and Redis.

Load: ``--runs`` runs of the executor benchmark's three-step workflow, started at
``--rate`` runs/s, alternately on the two servers. Each ``ExecuteWorkflow`` carries a
``request_id``; a call that fails is retried with the same ``request_id`` on the other
server until accepted, as a careful client does. Readers meanwhile call ``GetRun`` on
both servers and ``GET /api/v1/runs/{id}`` through Envoy, and every answer is counted by
its code.

Faults, all in the one run, spread over the load window:

* every ``--kill-every`` seconds a random worker gets SIGKILL and is started again;
* at a quarter, the second API server gets SIGKILL (started again 2 s later);
* at half, Redis gets SIGKILL, its data directory is deleted and it starts empty;
* at three quarters, PostgreSQL gets SIGQUIT (immediate shutdown: no checkpoint, WAL
  recovery at the next start) and is started again.

It prints runs accepted, completed, failed, lost (accepted, then missing: must be 0) and
stuck (not finished ``--settle-s`` after the load and the faults: must be 0); duplicate
agent executions, each with the fault it straddles (allowed only across a worker kill,
the step in flight when its worker died, or a PostgreSQL kill, the step's commit in
flight when the database died); the longest time from a worker kill to the
first progress of a run that worker was driving; and the answers clients got, by code,
overall and around each fault (``INTERNAL``/``UNKNOWN`` and REST 500 must be 0). The
exit status is 0 when every target is met.

``--fast-recovery`` gives the workers short leases (3 s) and a fast reconciler, as the
bounded version in the test suite (``tests/test_chaos.py``) does; without it the workers
run with their production defaults (15 s leases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import grpc
import httpx
from cryptography.fernet import Fernet
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from baton.v1 import agents_pb2, agents_pb2_grpc, runs_pb2, runs_pb2_grpc, workflows_pb2
from baton.v1 import workflows_pb2_grpc as wf_grpc
from baton_server.children import ChildProcess
from baton_server.embedded import (
    _claim_data_dir,
    _Layout,
    _prepare_filesystem,
    _start_postgres,
    _start_redis,
    _stop_all,
)
from bench.executor import (
    BATON,
    RUN_INPUT,
    Child,
    baton_workflow,
    check_output,
    free_port,
)
from bench.lean_agent import LeanAgentProcess

TERMINAL: Final = ("COMPLETED", "FAILED", "CANCELLED")
#: Codes a careful client retries (with the same request_id).
RETRIED: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
#: Answers that must never be seen: a fault is not a bug in the request.
FORBIDDEN: Final = ("grpc INTERNAL", "grpc UNKNOWN", "rest 500")
SUBMIT_GIVE_UP_S: Final = 120.0
CALL_TIMEOUT_S: Final = 10.0
READ_EVERY_S: Final = 0.05
FAST_RECOVERY_ENV: Final = {
    "BATON_LEASE_TTL_S": "3",
    "BATON_RECONCILE_INTERVAL_S": "0.5",
    "BATON_ENQUEUE_GRACE_S": "2",
}


# --- the backends, restartable where they were -------------------------------------------


class Backends:
    """The embedded PostgreSQL and Redis, each restartable on its own port."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._lock_fd = -1
        self._servers: list[ChildProcess] = []
        self._account: Any = None
        self.database_url = ""
        self.redis_url = ""

    async def start(self) -> None:
        data_dir, self._lock_fd = _claim_data_dir(self._data_dir)
        self._layout = _Layout.of(data_dir)
        self._account = await asyncio.to_thread(_prepare_filesystem, self._layout)
        self.database_url = await _start_postgres(self._layout, self._account, self._servers)
        self.redis_url = await _start_redis(self._layout, self._account, self._servers)

    def _running(self, name: str) -> ChildProcess:
        return next(s for s in self._servers if s.name == name and s.process.returncode is None)

    @staticmethod
    def _port(url: str) -> int:
        return int(url.rsplit(":", 1)[1].split("/", 1)[0])

    async def restart_postgres(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint), then a start with WAL recovery."""
        server = self._running("PostgreSQL")
        server.process.send_signal(signal.SIGQUIT)
        await server.process.wait()
        port = self._port(self.database_url)
        await _start_postgres(self._layout, self._account, self._servers, port)

    async def restart_redis_empty(self) -> None:
        """SIGKILL, every file of Redis deleted, a start with nothing."""
        server = self._running("Redis")
        server.process.kill()
        await server.process.wait()
        for entry in self._layout.redis_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        await _start_redis(self._layout, self._account, self._servers, self._port(self.redis_url))

    async def stop(self) -> None:
        await _stop_all(self._servers)
        if self._lock_fd >= 0:  # not if the start failed before it claimed the directory
            os.close(self._lock_fd)


# --- what happened ---------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    at: float  # time.monotonic() when it was applied
    #: Seconds until the component was back (serving, ready).
    recovery_s: float = 0.0
    #: Runs the killed worker was driving (worker kills only).
    orphans: list[str] = field(default_factory=list)


@dataclass
class Answer:
    at: float
    what: str  # "grpc OK", "grpc UNAVAILABLE", "rest 503", ...


@dataclass
class Record:
    started: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[int, str] = field(default_factory=dict)  # submission -> run id
    given_up: dict[int, str] = field(default_factory=dict)  # submission -> last error

    def answer(self, what: str) -> None:
        self.answers.append(Answer(time.monotonic(), what))


@dataclass
class Duplicate:
    """An idempotency key the agent got more than once."""

    key: str
    calls: int
    cause: str
    #: A worker kill fell between the first call and the last: the step was in flight.
    across_a_kill: bool


@dataclass
class Report:
    runs: int
    accepted: int
    given_up: int
    completed: int
    failed: int
    cancelled: int
    lost: int
    stuck: int
    wrong_output: int
    duplicates: list[Duplicate]
    unexplained_duplicates: int
    faults: list[dict[str, Any]]
    orphans: int
    orphan_progress_max_s: float
    orphan_progress_p50_s: float
    answers: dict[str, int]
    forbidden_answers: dict[str, int]
    wall_s: float

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.stuck == 0
            and self.given_up == 0
            and self.failed == 0
            and self.wrong_output == 0
            and self.unexplained_duplicates == 0
            and not self.forbidden_answers
        )


# --- the processes under test ------------------------------------------------------------


class Cluster:
    """Two API servers and two workers over the same backends."""

    def __init__(self, backends: Backends, logs: Path, fast_recovery: bool) -> None:
        self._backends = backends
        self._logs = logs
        self._fast = fast_recovery
        self._options = [
            "--database-url",
            backends.database_url,
            "--redis-url",
            backends.redis_url,
            "--secret-key",
            Fernet.generate_key().decode(),
        ]
        self.grpc_ports = [free_port(), free_port()]
        self.http_port = free_port()
        self.servers: list[Child | None] = [None, None]
        self.workers: list[Child | None] = [None, None]
        self._starts = Counter[str]()

    async def _spawn(self, name: str, argv: list[str]) -> Child:
        self._starts[name] += 1
        log = self._logs / f"{name}-{self._starts[name]}.log"
        return await Child.spawn(name, argv, log, env=FAST_RECOVERY_ENV if self._fast else None)

    async def start_server(self, index: int) -> None:
        rest = ["--http-port", str(self.http_port)] if index == 0 else ["--no-envoy"]
        argv = [str(BATON), "serve", "--no-worker", "--host", "127.0.0.1"]
        argv += ["--grpc-port", str(self.grpc_ports[index]), *rest, *self._options]
        self.servers[index] = await self._spawn(f"serve{index}", argv)
        await _wait_serving(f"127.0.0.1:{self.grpc_ports[index]}", self.servers[index])

    async def start_worker(self, index: int) -> None:
        argv = [str(BATON), "worker", *self._options]
        self.workers[index] = await self._spawn(f"worker{index}", argv)

    @staticmethod
    async def kill(child: Child | None) -> None:
        assert child is not None
        child.assert_running()  # one that died by itself is a finding, with its log
        child.process.kill()
        await child.process.wait()

    async def stop(self) -> None:
        for child in [*self.workers, *self.servers]:
            if child is not None:
                await child.stop()


async def _wait_serving(target: str, child: Child | None, within_s: float = 90.0) -> None:
    assert child is not None
    deadline = time.monotonic() + within_s
    async with grpc.aio.insecure_channel(target) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        while True:
            child.assert_running()
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise child.failure(f"not SERVING within {within_s:.0f} s")
            await asyncio.sleep(0.1)


# --- faults --------------------------------------------------------------------------------


async def kill_a_worker(cluster: Cluster, pg_url: str, record: Record, rng: random.Random) -> None:
    index = rng.randrange(len(cluster.workers))
    victim = cluster.workers[index]
    assert victim is not None
    # A worker's id is <host>-<pid>-<random>; it leases runs under it.
    orphans = await _runs_led_by(pg_url, f"{socket.gethostname()}-{victim.pid}-")
    fault = Fault("worker kill -9", time.monotonic(), orphans=orphans)
    await cluster.kill(victim)
    record.faults.append(fault)
    await cluster.start_worker(index)
    fault.recovery_s = time.monotonic() - fault.at


async def _runs_led_by(pg_url: str, owner_prefix: str) -> list[str]:
    """Runs whose lease the worker holds (read just before it is killed)."""
    try:
        connection = await asyncpg.connect(pg_url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return []  # PostgreSQL is restarting: the kill goes ahead unrecorded
    try:
        rows = await connection.fetch(
            "SELECT id::text FROM runs WHERE status IN ('PENDING', 'RUNNING')"
            " AND starts_with(lease_owner, $1)",
            owner_prefix,
        )
    finally:
        await connection.close()
    return [row[0] for row in rows]


async def kill_an_api_server(cluster: Cluster, record: Record) -> None:
    fault = Fault("API server kill -9", time.monotonic())
    record.faults.append(fault)
    await cluster.kill(cluster.servers[1])
    await asyncio.sleep(2)
    await cluster.start_server(1)
    fault.recovery_s = time.monotonic() - fault.at


async def restart_redis(backends: Backends, record: Record) -> None:
    fault = Fault("Redis kill -9, data deleted", time.monotonic())
    record.faults.append(fault)
    await backends.restart_redis_empty()
    fault.recovery_s = time.monotonic() - fault.at


async def restart_postgres(backends: Backends, record: Record) -> None:
    fault = Fault("PostgreSQL immediate restart", time.monotonic())
    record.faults.append(fault)
    await backends.restart_postgres()
    fault.recovery_s = time.monotonic() - fault.at


async def nemesis(
    args: argparse.Namespace,
    backends: Backends,
    cluster: Cluster,
    record: Record,
    window_s: float,
) -> None:
    """Every fault of the run, each on its own schedule over ``window_s`` seconds of load
    (a slow recovery of one does not delay the others)."""

    async def at(fraction: float, fault: Awaitable[None]) -> None:
        await asyncio.sleep(max(0.0, record.started + fraction * window_s - time.monotonic()))
        await fault

    async def kill_workers() -> None:
        rng = random.Random(args.seed)
        pg_url = _plain(backends.database_url)
        every = args.kill_every
        for due in itertools.takewhile(lambda t: t <= window_s, itertools.count(every, every)):
            await asyncio.sleep(max(0.0, record.started + due - time.monotonic()))
            await kill_a_worker(cluster, pg_url, record, rng)

    await asyncio.gather(
        kill_workers(),
        at(0.25, kill_an_api_server(cluster, record)),
        at(0.50, restart_redis(backends, record)),
        at(0.75, restart_postgres(backends, record)),
    )


def _plain(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --- the clients --------------------------------------------------------------------------


async def submit(
    index: int,
    request: runs_pb2.ExecuteWorkflowRequest,
    stubs: Sequence[runs_pb2_grpc.RunServiceAsyncStub],
    record: Record,
) -> None:
    """Start one run; retried on the other server with the same request_id until accepted."""
    give_up_at = time.monotonic() + SUBMIT_GIVE_UP_S
    attempt = 0
    while True:
        stub = stubs[(index + attempt) % len(stubs)]
        try:
            run = await stub.ExecuteWorkflow(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            record.answer(f"grpc {error.code().name}")
            if error.code() not in RETRIED or time.monotonic() > give_up_at:
                record.given_up[index] = f"{error.code().name}: {error.details()}"
                return
            attempt += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
            continue
        record.answer("grpc OK")
        record.accepted[index] = run.id
        return


async def load(
    args: argparse.Namespace, workflow_id: str, targets: Sequence[str], record: Record
) -> None:
    input_data = struct_pb2.Struct()
    input_data.update(RUN_INPUT)
    async with contextlib.AsyncExitStack() as stack:
        channels = [await stack.enter_async_context(grpc.aio.insecure_channel(t)) for t in targets]
        stubs = [runs_pb2_grpc.RunServiceStub(c) for c in channels]
        tasks = []
        for index in range(args.runs):
            await asyncio.sleep(max(0.0, record.started + index / args.rate - time.monotonic()))
            request = runs_pb2.ExecuteWorkflowRequest(
                workflow_id=workflow_id,
                input_data=input_data,
                request_id=f"chaos-{index}-{uuid.uuid4().hex[:8]}",
            )
            tasks.append(asyncio.create_task(submit(index, request, stubs, record)))
        await asyncio.gather(*tasks)


async def read(record: Record, rng: random.Random, get: Callable[[str], Awaitable[str]]) -> None:
    """Read a random accepted run every ``READ_EVERY_S``; count the answers by code."""
    while True:
        await asyncio.sleep(READ_EVERY_S)
        if record.accepted:
            record.answer(await get(rng.choice(list(record.accepted.values()))))


async def read_grpc(target: str, record: Record, rng: random.Random) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = runs_pb2_grpc.RunServiceStub(channel)

        async def get(run_id: str) -> str:
            try:
                await stub.GetRun(runs_pb2.GetRunRequest(run_id=run_id), timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                return f"grpc {error.code().name}"
            return "grpc OK"

        await read(record, rng, get)


async def read_rest(base_url: str, record: Record, rng: random.Random) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=CALL_TIMEOUT_S) as http:

        async def get(run_id: str) -> str:
            try:
                response = await http.get(f"/api/v1/runs/{run_id}")
            except httpx.HTTPError as error:
                return f"rest {type(error).__name__}"
            return f"rest {response.status_code}"

        await read(record, rng, get)


# --- the end: what PostgreSQL and the agent say -------------------------------------------


async def settle(pg_url: str, run_ids: list[str], within_s: float) -> list[asyncpg.Record]:
    """Wait until every run has ended (or ``within_s`` passed); return their rows."""
    deadline = time.monotonic() + within_s
    while True:
        connection = await asyncpg.connect(pg_url)
        try:
            rows = await connection.fetch(
                "SELECT id::text AS id, status, output::text AS output,"
                " extract(epoch FROM COALESCE(completed_at, cancelled_at)) AS ended"
                " FROM runs WHERE id = ANY($1::text[])",
                run_ids,
            )
        finally:
            await connection.close()
        if all(row["status"] in TERMINAL for row in rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(1)


async def agent_calls(agent_url: str) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(last call per idempotency key, every arrival of keys called more than once)."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{agent_url}timings")
        response.raise_for_status()
        body = response.json()
    return body["timings"], body["repeats"]


#: Faults that may leave a step in flight with nobody sure it ran: a second call of it is
#: at-least-once delivery, not a defect.
_EXECUTION_KILLS = ("worker", "PostgreSQL")


def duplicate(key: str, arrivals: list[int], faults: list[Fault], started: float) -> Duplicate:
    """A key called more than once, with the fault that falls between its calls."""
    first, last = min(arrivals) / 1e9, max(arrivals) / 1e9
    between = [f for f in faults if first <= f.at <= last]
    # A worker killed with the step in flight, or PostgreSQL killed while the step's
    # commit was in flight (its outcome unknown to the worker that sent it).
    kills = [f for f in between if f.kind.startswith(_EXECUTION_KILLS)]
    if kills:
        return Duplicate(
            key, len(arrivals), f"{kills[0].kind} at {kills[0].at - started:.1f} s", True
        )
    cause = ", ".join(f.kind for f in between) or "no fault"
    return Duplicate(key, len(arrivals), f"no kill between the calls ({cause})", False)


def orphan_progress(
    faults: list[Fault],
    calls: dict[str, list[int]],
    repeats: dict[str, list[int]],
    ended: dict[str, float],
) -> list[float]:
    """For every run a killed worker was driving: seconds from the kill to its next step
    reaching the agent (or to its end, if no step was left to call)."""
    arrivals: dict[str, list[float]] = {}
    for key, (arrived, _) in calls.items():
        arrivals.setdefault(key.rsplit("/", 1)[0], []).append(arrived / 1e9)
    for key, times in repeats.items():
        arrivals.setdefault(key.rsplit("/", 1)[0], []).extend(t / 1e9 for t in times)
    waits = []
    for fault in faults:
        for run_id in fault.orphans:
            later = [t for t in arrivals.get(run_id, []) if t > fault.at]
            if run_id in ended and ended[run_id] > fault.at:
                later.append(ended[run_id])
            if later:
                waits.append(min(later) - fault.at)
    return waits


def around(record: Record, fault: Fault, after_s: float = 5.0) -> dict[str, int]:
    """Client answers from the fault to ``after_s`` after its recovery, by code."""
    end = fault.at + fault.recovery_s + after_s
    return dict(Counter(a.what for a in record.answers if fault.at <= a.at <= end))


async def build_report(
    args: argparse.Namespace, record: Record, pg_url: str, agent_url: str, wall_s: float
) -> Report:
    run_ids = list(record.accepted.values())
    rows = await settle(pg_url, run_ids, args.settle_s)
    statuses = Counter(row["status"] for row in rows)
    wrong = 0
    for row in rows:
        if row["status"] == "COMPLETED":
            try:
                check_output(json.loads(row["output"]))
            except (AssertionError, ValueError, TypeError, KeyError):
                wrong += 1
    calls, repeats = await agent_calls(agent_url)
    # The runs' clock is the database's; the agent's and the faults' is CLOCK_MONOTONIC.
    offset = time.monotonic() - time.time()
    ended = {row["id"]: float(row["ended"]) + offset for row in rows if row["ended"] is not None}
    ours = set(run_ids)
    duplicates = [
        duplicate(key, arrivals, record.faults, record.started)
        for key, arrivals in sorted(repeats.items())
        if key.rsplit("/", 1)[0] in ours
    ]
    waits = orphan_progress(record.faults, calls, repeats, ended)
    answers = Counter(a.what for a in record.answers)
    return Report(
        runs=args.runs,
        accepted=len(record.accepted),
        given_up=len(record.given_up),
        completed=statuses["COMPLETED"],
        failed=statuses["FAILED"],
        cancelled=statuses["CANCELLED"],
        lost=len(ours - {row["id"] for row in rows}),
        stuck=sum(1 for row in rows if row["status"] not in TERMINAL),
        wrong_output=wrong,
        duplicates=duplicates,
        unexplained_duplicates=sum(1 for d in duplicates if not d.across_a_kill),
        faults=[
            {
                "kind": f.kind,
                "at_s": round(f.at - record.started, 2),
                "recovery_s": round(f.recovery_s, 2),
                "orphans": len(f.orphans),
                "answers_around": around(record, f),
            }
            for f in record.faults
        ],
        orphans=sum(len(f.orphans) for f in record.faults),
        orphan_progress_max_s=max(waits, default=0.0),
        orphan_progress_p50_s=statistics.median(waits) if waits else 0.0,
        answers=dict(answers),
        forbidden_answers={k: answers[k] for k in FORBIDDEN if answers[k]},
        wall_s=wall_s,
    )


def render(report: Report) -> list[str]:
    lines = [
        f"runs asked {report.runs}: accepted {report.accepted}, given up {report.given_up}",
        f"completed {report.completed}, failed {report.failed}, cancelled "
        f"{report.cancelled}, wrong output {report.wrong_output}",
        f"lost {report.lost}, stuck {report.stuck}",
        "",
        f"{'fault':32} {'at s':>7} {'restart s':>9} {'orphans':>7}  client answers around it",
    ]
    for fault in report.faults:
        answers = ", ".join(f"{k} {v}" for k, v in sorted(fault["answers_around"].items()))
        lines.append(
            f"{fault['kind']:32} {fault['at_s']:7.1f} {fault['recovery_s']:9.2f}"
            f" {fault['orphans']:7}  {answers}"
        )
    lines += [
        "",
        f"runs orphaned by a worker kill: {report.orphans}; kill to first progress: "
        f"p50 {report.orphan_progress_p50_s:.1f} s, max {report.orphan_progress_max_s:.1f} s",
        f"duplicate agent executions: {len(report.duplicates)}"
        f" ({report.unexplained_duplicates} not across a worker or PostgreSQL kill)",
        *(f"  {d.key}: {d.calls} calls, {d.cause}" for d in report.duplicates),
        "client answers: " + ", ".join(f"{k} {v}" for k, v in sorted(report.answers.items())),
        "",
        *verdicts(report),
    ]
    return lines


def verdicts(report: Report) -> list[str]:
    def line(name: str, ok: bool, detail: str) -> str:
        return f"target: {name}: {'met' if ok else 'MISSED'} ({detail})"

    forbidden = ", ".join(f"{k} {v}" for k, v in report.forbidden_answers.items()) or "none"
    return [
        line("0 lost", report.lost == 0, f"{report.lost}"),
        line("0 stuck", report.stuck == 0, f"{report.stuck}"),
        line(
            "every run accepted and completed correctly",
            report.given_up == 0 and report.failed == 0 and report.wrong_output == 0,
            f"given up {report.given_up}, failed {report.failed}, "
            f"wrong output {report.wrong_output}",
        ),
        line(
            "duplicates only across a worker or PostgreSQL kill",
            report.unexplained_duplicates == 0,
            f"{report.unexplained_duplicates} of {len(report.duplicates)} not",
        ),
        line("no INTERNAL, UNKNOWN or 500", not report.forbidden_answers, forbidden),
    ]


# --- the whole run -------------------------------------------------------------------------


async def prepare(targets: Sequence[str], agent_url: str) -> str:
    """Register the agent and the workflow; return the workflow's id."""
    async with grpc.aio.insecure_channel(targets[0]) as channel:
        agents = agents_pb2_grpc.AgentServiceStub(channel)
        workflows = wf_grpc.WorkflowServiceStub(channel)
        await agents.CreateAgent(
            agents_pb2.CreateAgentRequest(name="chaos-echo", url=agent_url, timeout_ms=30_000)
        )
        workflow = await workflows.CreateWorkflow(
            json_format.ParseDict(
                baton_workflow("chaos", "chaos-echo"), workflows_pb2.CreateWorkflowRequest()
            )
        )
    return workflow.id


@contextlib.asynccontextmanager
async def system(
    args: argparse.Namespace, work_dir: Path
) -> AsyncIterator[tuple[Backends, Cluster, str]]:
    logs = work_dir / "logs"
    logs.mkdir(parents=True)
    backends = Backends(work_dir / "data")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(backends.stop)
        await backends.start()
        agent = stack.enter_context(LeanAgentProcess())
        agent_url = agent.start(
            protocol_version="1.0", record_timings=True, delay_ms=args.agent_delay_ms
        )
        cluster = Cluster(backends, logs, args.fast_recovery)
        stack.push_async_callback(cluster.stop)
        await cluster.start_server(0)  # migrates the database first
        await cluster.start_server(1)
        for index in range(len(cluster.workers)):
            await cluster.start_worker(index)
        yield backends, cluster, agent_url


async def run(args: argparse.Namespace) -> Report:
    work_dir = Path(tempfile.mkdtemp(prefix="baton-chaos-"))
    try:
        async with system(args, work_dir) as (backends, cluster, agent_url):
            targets = [f"127.0.0.1:{port}" for port in cluster.grpc_ports]
            workflow_id = await prepare(targets, agent_url)
            record = Record()
            window_s = args.runs / args.rate
            rng = random.Random(args.seed)
            readers = [asyncio.create_task(read_grpc(t, record, rng)) for t in targets] + [
                asyncio.create_task(read_rest(f"http://127.0.0.1:{cluster.http_port}", record, rng))
            ]
            try:
                await asyncio.gather(
                    load(args, workflow_id, targets, record),
                    nemesis(args, backends, cluster, record, window_s),
                )
                wall_s = time.monotonic() - record.started
                report = await build_report(
                    args, record, _plain(backends.database_url), agent_url, wall_s
                )
            finally:
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
            if not report.ok:
                args.keep = True
                print(f"logs of the processes: {work_dir / 'logs'} (kept)", flush=True)
            return report
    except BaseException:
        args.keep = True
        print(f"logs of the processes: {work_dir / 'logs'} (kept)", flush=True)
        raise
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=15.0, help="runs started per second")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    parser.add_argument("--agent-delay-ms", type=float, default=100.0)
    parser.add_argument(
        "--settle-s", type=float, default=120.0, help="how long runs may take to end"
    )
    parser.add_argument("--fast-recovery", action="store_true", help="3 s worker leases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    for line in render(report):
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
