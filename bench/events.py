"""Event delivery benchmark: state change -> subscriber, over gRPC and over SSE.

Run::

    .venv/bin/python bench/events.py [--watchers 1,100,1000] [--transports grpc,sse]
        [--patterns shared,own] [--starts staggered,together] [--client lean|grpcio]

Everything is a real process on loopback: PostgreSQL and Redis (embedded wheels), an
A2A agent (``tests/agents/echo_agent.py`` in sleep mode, so runs progress at a steady,
modest pace), ``baton serve --no-worker`` (gRPC, and SSE through its Envoy) and one
``baton worker``. Two patterns of watchers (``--patterns``):

``shared``
    For each number of watchers W, ``ceil(W / 100)`` runs of a 12-step workflow (every
    step sleeps 500 ms at the agent), W watchers subscribed to them round-robin: a run
    on a big screen, watched by up to 100.
``own``
    W runs of a 4-step workflow of 8 s steps, one watcher each: many dashboards, one run
    each (1,000 runs in flight: 125 step boundaries a second).

Watchers are spread over watcher processes of their own. The gRPC watchers are
``bench/lean_watcher.py`` streams (``--client lean``, little CPU, so that the load
generator does not set the figure) or grpc.aio calls, as the SDK makes (``--client
grpcio``); the CPU the server and the watchers spend per delivered event is printed
beside the latencies. After each gRPC round the same watchers, with the same pattern of
events, watch ``bench/grpc_floor.py``: a bare grpc.aio server with no database, no Redis
and no Baton code, the floor the transport sets on this machine (``--no-floor`` skips it).

``--starts`` says how the runs start: ``staggered`` spreads their starts over one step,
as independent runs would be; ``together`` starts them back to back, so that their
steps - and every event of every run - fall due at the same instants.

Latency of an event = the time a watcher receives it minus the event's timestamp, which
is the start of the PostgreSQL transaction that made the change (so it includes the
commit, the Redis publish, the fan-out and the transport). Only the steady state counts:
events that happened once every watcher of the round was subscribed. Targets, printed
as verdicts for every round measured both ways: Baton's gRPC p99 within 1.5x of the
floor's, and SSE's p99 within 2x of gRPC's at the same number of watchers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet

ROOT: Final = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "src" / "server"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from baton_server import loop  # noqa: E402
from bench import lean_watcher  # noqa: E402
from bench.executor import BATON, Child, free_port, percentile, process_cpu_s  # noqa: E402


@dataclass(frozen=True)
class Pattern:
    """How watchers spread over runs, and the pace of those runs."""

    name: str
    #: Watchers per run: 100 (a run on a big screen), or 1 (a dashboard per run).
    per_run: int
    steps: int
    step_ms: int

    def runs_for(self, watchers: int) -> int:
        return math.ceil(watchers / self.per_run)


PATTERNS: Final = {
    # A few runs, each watched by up to 100: bursts of 200 messages per step boundary.
    "shared": Pattern("shared", per_run=100, steps=12, step_ms=500),
    # Every watcher on a run of its own; slower steps keep the executor's load the same
    # order as "shared" (1,000 runs of 8 s steps: 125 step boundaries a second).
    "own": Pattern("own", per_run=1, steps=4, step_ms=8000),
}
WATCHERS_PER_PROCESS: Final = 500
# A connection per 50 streams keeps HTTP/2 stream limits out of the measurement.
STREAMS_PER_CONNECTION: Final = 50
#: Baton's p99 against the bare grpc.aio floor's, and SSE's against gRPC's.
TARGET_FLOOR_RATIO: Final = 1.5
TARGET_SSE_RATIO: Final = 2.0
THIS_FILE: Final = Path(__file__).resolve()
FLOOR_FILE: Final = THIS_FILE.parent / "grpc_floor.py"


def _event_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp with up to 9 fraction digits."""
    head, _, fraction = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + fraction) if fraction else 0.0)


# --- watcher processes ----------------------------------------------------------------


class Recorder:
    """What one watcher process saw: when each stream got its snapshot, and for each
    later event when it happened and how long it took to arrive. Says ``subscribed`` on
    stdout once every stream has its snapshot."""

    def __init__(self, streams: int) -> None:
        self.last_subscribed = 0.0
        self.events: list[tuple[float, float]] = []  # (happened, latency ms)
        self._waiting = streams

    def subscribed(self, received: float) -> float:
        self.last_subscribed = max(self.last_subscribed, received)
        self._waiting -= 1
        if self._waiting == 0:
            print("subscribed", flush=True)
        return received

    def received(self, subscribed: float, happened: float, received: float) -> None:
        if happened > subscribed:
            self.events.append((happened, (received - happened) * 1000))


async def _watch_grpc(channel: Any, run_id: str, recorder: Recorder) -> None:
    from baton.v1 import runs_pb2, runs_pb2_grpc

    stub = runs_pb2_grpc.RunServiceStub(channel)
    subscribed = math.inf
    async for event in stub.WatchRun(runs_pb2.WatchRunRequest(run_id=run_id)):
        received = time.time()
        if event.type == runs_pb2.RunEvent.state_sync:
            subscribed = recorder.subscribed(received)
        else:
            recorder.received(subscribed, event.timestamp.ToMicroseconds() / 1e6, received)


async def _watch_sse(client: Any, base_url: str, run_id: str, recorder: Recorder) -> None:
    subscribed = math.inf
    async with client.stream("GET", f"{base_url}/api/v1/runs/{run_id}/events") as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            received = time.time()
            event = json.loads(line[5:])
            if event["type"] == "state_sync":
                subscribed = recorder.subscribed(received)
            else:
                recorder.received(subscribed, _event_time(event["timestamp"]), received)


async def _watch_sse_lean(base_url: str, run_id: str, recorder: Recorder) -> None:
    subscribed = math.inf

    def on_event(data: str, received: float) -> None:
        nonlocal subscribed
        event = json.loads(data)
        if event["type"] == "state_sync":
            subscribed = recorder.subscribed(received)
        else:
            recorder.received(subscribed, _event_time(event["timestamp"]), received)

    failure = await lean_watcher.run_sse_stream(base_url, f"/api/v1/runs/{run_id}/events", on_event)
    if failure is not None:
        raise RuntimeError(f"SSE stream of {run_id} failed: {failure}")


async def _watch_lean(target: str, run_ids: list[str], recorder: Recorder) -> None:
    from baton.v1 import runs_pb2

    subscribed = [math.inf] * len(run_ids)

    def on_message(index: int, raw: bytes, received: float) -> None:
        event = runs_pb2.RunEvent.FromString(raw)
        if event.type == runs_pb2.RunEvent.state_sync:
            subscribed[index] = recorder.subscribed(received)
        else:
            happened = event.timestamp.ToMicroseconds() / 1e6
            recorder.received(subscribed[index], happened, received)

    def on_connection(first: int) -> lean_watcher.OnMessage:
        return lambda index, raw, received: on_message(first + index, raw, received)

    bodies = [runs_pb2.WatchRunRequest(run_id=r).SerializeToString() for r in run_ids]
    failures = await asyncio.gather(
        *(
            lean_watcher.run_streams(
                target,
                "/baton.v1.RunService/WatchRun",
                bodies[i : i + STREAMS_PER_CONNECTION],
                on_connection(i),
            )
            for i in range(0, len(bodies), STREAMS_PER_CONNECTION)
        )
    )
    problems = [problem for batch in failures for problem in batch]
    if problems:
        raise RuntimeError(f"{len(problems)} stream(s) failed, first: {problems[0]}")


async def watcher_role(args: argparse.Namespace) -> None:
    """Open one stream per assigned run id; print what was seen as JSON when all end."""
    import httpx

    run_ids: list[str] = args.run_ids.split(",")
    recorder = Recorder(len(run_ids))
    if args.transport == "grpc" and args.client == "lean":
        await _watch_lean(args.target, run_ids, recorder)
    elif args.transport == "grpc":
        import grpc

        channels = [
            grpc.aio.insecure_channel(args.target)
            for _ in range(math.ceil(len(run_ids) / STREAMS_PER_CONNECTION))
        ]
        try:
            await asyncio.gather(
                *(
                    _watch_grpc(channels[i // STREAMS_PER_CONNECTION], run_id, recorder)
                    for i, run_id in enumerate(run_ids)
                )
            )
        finally:
            for channel in channels:
                await channel.close()
    elif args.client == "lean":
        await asyncio.gather(*(_watch_sse_lean(args.target, r, recorder) for r in run_ids))
    else:
        limits = httpx.Limits(max_connections=len(run_ids) + 10)
        async with httpx.AsyncClient(timeout=None, limits=limits) as client:
            await asyncio.gather(*(_watch_sse(client, args.target, r, recorder) for r in run_ids))
    print(json.dumps({"last_subscribed": recorder.last_subscribed, "events": recorder.events}))
    sys.stdout.flush()
    # Stay until the parent has read this process's CPU time (it closes stdin).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- the parent -----------------------------------------------------------------------


def wakeup_round_trip_us(rounds: int = 2000) -> float:
    """A byte bounced between two threads over a socket pair: what waking a sleeping
    thread costs on this machine. Every hop of an event (worker, PostgreSQL, Redis,
    server, gRPC's poller thread, watcher) pays it, and virtual machines of the same
    size differ in it by several times, so the figures are printed with it."""
    import socket
    import threading

    here, there = socket.socketpair()

    def echo() -> None:
        for _ in range(rounds):
            there.sendall(there.recv(1))

    with here, there:
        thread = threading.Thread(target=echo)
        thread.start()
        started = time.perf_counter()
        for _ in range(rounds):
            here.sendall(b"x")
            here.recv(1)
        elapsed = time.perf_counter() - started
        thread.join()
    return elapsed / rounds * 1e6


async def wait_serving(target: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        for _ in range(600):
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("Baton did not become SERVING")


@dataclass(frozen=True)
class Round:
    """One measurement: the latencies (ms) of the steady-state events, and the CPU
    seconds the server and the watchers spent meanwhile."""

    latencies: list[float]
    server_cpu_s: float
    watchers_cpu_s: float


async def _line(child: Child) -> bytes:
    assert child.process.stdout is not None
    line = await asyncio.wait_for(child.process.stdout.readline(), 120)
    if not line:
        raise child.failure("ended without results")
    return line


async def start_runs(
    stub: Any, workflow_id: str, count: int, starts: str, pattern: Pattern
) -> list[str]:
    from google.protobuf import struct_pb2

    from baton.v1 import runs_pb2

    gap_s = pattern.step_ms / 1000 / count if starts == "staggered" else 0.0
    run_ids: list[str] = []
    for _ in range(count):
        request = runs_pb2.ExecuteWorkflowRequest(
            workflow_id=workflow_id, input_data=struct_pb2.Struct()
        )
        run_ids.append((await stub.ExecuteWorkflow(request)).id)
        await asyncio.sleep(gap_s)
    return run_ids


@dataclass(frozen=True)
class Setting:
    """What a round is measured with."""

    transport: str
    client: str
    starts: str
    pattern: Pattern
    work: Path


async def watch_round(
    run_ids: list[str], watchers: int, setting: Setting, target: str, server_pid: int
) -> Round:
    """``watchers`` watcher processes' worth of streams on ``run_ids`` (round-robin)."""
    assignments = [run_ids[i % len(run_ids)] for i in range(watchers)]
    groups = [
        assignments[i : i + WATCHERS_PER_PROCESS] for i in range(0, watchers, WATCHERS_PER_PROCESS)
    ]
    children = [
        await Child.spawn(
            f"watchers-{index}",
            [
                sys.executable,
                str(THIS_FILE),
                "--role",
                "watch",
                "--transport",
                setting.transport,
                "--client",
                setting.client,
                "--target",
                target,
                "--run-ids",
                ",".join(group),
            ],
            setting.work
            / f"watchers-{setting.pattern.name}-{setting.transport}-{watchers}-{index}.log",
            talk=True,
        )
        for index, group in enumerate(groups)
    ]

    def cpu_s() -> tuple[float, float]:
        return process_cpu_s(server_pid), sum(process_cpu_s(c.pid) for c in children)

    for child in children:
        if await _line(child) != b"subscribed\n":
            raise child.failure("did not say it subscribed")
    server_before, watchers_before = cpu_s()
    reports = [json.loads(await _line(child)) for child in children]
    server_after, watchers_after = cpu_s()
    for child in children:
        await child.stop()
    # Steady state only: events that happened once every watcher was subscribed (the
    # connection storm of a thousand subscriptions is not delivery latency).
    all_subscribed = max(report["last_subscribed"] for report in reports)
    return Round(
        latencies=[
            latency
            for report in reports
            for happened, latency in report["events"]
            if happened > all_subscribed
        ],
        server_cpu_s=server_after - server_before,
        watchers_cpu_s=watchers_after - watchers_before,
    )


async def floor_round(watchers: int, setting: Setting) -> Round:
    """The same watchers and pattern of events against bench/grpc_floor.py."""
    runs = setting.pattern.runs_for(watchers)
    floor = await Child.spawn(
        "grpc floor",
        [
            sys.executable,
            str(FLOOR_FILE),
            "--streams",
            str(watchers),
            "--steps",
            str(setting.pattern.steps),
            "--step-ms",
            str(setting.pattern.step_ms),
            "--starts",
            setting.starts,
        ],
        setting.work / f"floor-{setting.pattern.name}-{watchers}.log",
        talk=True,
    )
    try:
        port = (await _line(floor)).decode().split()[1]
        run_ids = [f"floor-run-{i}" for i in range(runs)]
        return await watch_round(run_ids, watchers, setting, f"127.0.0.1:{port}", floor.pid)
    finally:
        await floor.stop()


def print_row(label: str, setting: Setting, watchers: int, measured: Round) -> float:
    """Print one line of figures; return the p99."""
    latencies = measured.latencies
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    per_event = 1e6 / max(len(latencies), 1)
    print(
        f"{label:<11}{setting.pattern.name:<8}{setting.starts:<10}{watchers:>9}"
        f"{len(latencies):>9}{p50:>9.2f}{p99:>9.2f}{measured.server_cpu_s * per_event:>11.1f}"
        f"{measured.watchers_cpu_s * per_event:>12.1f}",
        flush=True,
    )
    return p99


def verdicts(p99s: dict[tuple[str, str, str, int], float]) -> list[str]:
    """Baton against the floor, and SSE against gRPC, wherever both were measured;
    keys are (transport, pattern, starts, watchers)."""
    comparisons = {
        # transport: (what it is held against, its label, that one's label, the limit)
        "grpc": ("grpc floor", "Baton", "floor", TARGET_FLOOR_RATIO),
        "sse": ("grpc", "SSE", "gRPC", TARGET_SSE_RATIO),
    }
    lines = []
    for (transport, pattern, starts, watchers), p99 in p99s.items():
        if transport not in comparisons:
            continue
        against, label, base_label, limit = comparisons[transport]
        base = p99s.get((against, pattern, starts, watchers))
        if base is None:
            continue
        ratio = p99 / base
        lines.append(
            f"target: {label} p99 within {limit}x of {base_label}'s, {watchers} watchers,"
            f" {pattern} runs, started {starts}: {'met' if ratio <= limit else 'missed'}"
            f" ({label} {p99:.1f} ms, {base_label} {base:.1f} ms: {ratio:.2f}x)"
        )
    return lines


async def main_async(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from baton.v1 import (
        agents_pb2,
        agents_pb2_grpc,
        runs_pb2_grpc,
        workflows_pb2,
        workflows_pb2_grpc,
    )
    from baton_server.embedded import run_embedded
    from tests.agents.process import AgentProcess

    work = Path(tempfile.mkdtemp(prefix="baton-events-bench-"))
    grpc_port, http_port = free_port(), free_port()
    grpc_target, http_base = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
    async with contextlib.AsyncExitStack() as stack:
        services = await stack.enter_async_context(run_embedded(work / "data"))
        agent_url = stack.enter_context(AgentProcess()).start()
        backends = ["--database-url", services.database_url, "--redis-url", services.redis_url]
        # Server and workers must share the key that seals agent credentials.
        backends += ["--secret-key", Fernet.generate_key().decode()]
        server = await Child.spawn(
            "server",
            [
                str(BATON),
                "serve",
                "--no-worker",
                "--grpc-port",
                str(grpc_port),
                "--http-port",
                str(http_port),
                "--log-level",
                "warning",
                *backends,
            ],
            work / "server.log",
        )
        stack.push_async_callback(server.stop)
        await wait_serving(grpc_target)
        worker = await Child.spawn(
            "worker",
            [str(BATON), "worker", "--log-level", "warning", *backends],
            work / "worker.log",
            # The "own" pattern keeps 1,000 runs in flight, above the default 512.
            env={"BATON_MAX_RUNS": "2000"},
        )
        stack.push_async_callback(worker.stop)
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(grpc_target))
        await agents_pb2_grpc.AgentServiceStub(channel).CreateAgent(
            agents_pb2.CreateAgentRequest(name="sleeper", url=agent_url)
        )
        workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)
        workflow_ids = {}
        for pattern in (PATTERNS[name] for name in args.patterns.split(",")):
            steps = {
                f"s{i}": {
                    "agent_name": "sleeper",
                    "input_mapping": {"_mode": "sleep", "_sleep_ms": pattern.step_ms},
                    **({"next_step": f"s{i + 1}"} if i + 1 < pattern.steps else {}),
                }
                for i in range(pattern.steps)
            }
            workflow = await workflows.CreateWorkflow(
                json_format.ParseDict(
                    {"name": f"paced-{pattern.name}", "start_step": "s0", "steps": steps},
                    workflows_pb2.CreateWorkflowRequest(),
                )
            )
            workflow_ids[pattern.name] = workflow.id
        runs = runs_pb2_grpc.RunServiceStub(channel)
        print(
            f"Event delivery latency (state change -> subscriber), {os.cpu_count()} CPUs"
            f" (thread wake-up round trip {wakeup_round_trip_us():.0f} us); patterns: "
            + "; ".join(
                f"{p.name}: <= {p.per_run} watcher(s) per run, {p.steps} steps x {p.step_ms} ms"
                for p in PATTERNS.values()
            )
        )
        print(
            f"{'transport':<11}{'pattern':<8}{'starts':<10}{'watchers':>9}{'events':>9}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'server us':>11}{'watchers us':>12}"
        )
        p99s: dict[tuple[str, str, str, int], float] = {}
        for pattern in (PATTERNS[name] for name in args.patterns.split(",")):
            for transport in args.transports.split(","):
                target = grpc_target if transport == "grpc" else http_base
                for starts in args.starts.split(","):
                    setting = Setting(transport, args.client, starts, pattern, work)
                    for watchers in (int(w) for w in args.watchers.split(",")):
                        run_ids = await start_runs(
                            runs,
                            workflow_ids[pattern.name],
                            pattern.runs_for(watchers),
                            starts,
                            pattern,
                        )
                        measured = await watch_round(run_ids, watchers, setting, target, server.pid)
                        key = (pattern.name, starts, watchers)
                        p99s[(transport, *key)] = print_row(transport, setting, watchers, measured)
                        if transport == "grpc" and not args.no_floor:
                            bare = await floor_round(watchers, setting)
                            p99s[("grpc floor", *key)] = print_row(
                                "grpc floor", setting, watchers, bare
                            )
        for line in verdicts(p99s):
            print(line)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--watchers", default="1,100,1000")
    parser.add_argument("--transports", default="grpc,sse")
    parser.add_argument(
        "--patterns",
        default="shared,own",
        help="shared: up to 100 watchers per run; own: every watcher on a run of its own",
    )
    parser.add_argument(
        "--starts",
        default="staggered,together",
        help="how the runs start: spread over a step (staggered) or back to back (together)",
    )
    parser.add_argument(
        "--client",
        choices=["lean", "grpcio"],
        default="lean",
        help="watchers: bench/lean_watcher.py (default), or grpc.aio and httpx as the SDK uses",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the bare grpc.aio server (bench/grpc_floor.py) measured after each gRPC round",
    )
    parser.add_argument("--role", choices=["watch"], help=argparse.SUPPRESS)
    parser.add_argument("--transport", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--run-ids", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "watch":
        # The watchers share the machine with the server: they run as lean as Baton's
        # own processes do (uvloop, few garbage collections), so that their pauses
        # are not counted as delivery latency.
        loop.run(watcher_role(args))
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
