"""GetRun throughput: direct gRPC vs REST through Envoy, in the same run.

Run::

    .venv/bin/python bench/rest_vs_grpc.py [--duration 10] [--concurrency 32] [--rounds 2]

Starts ``baton serve --no-worker`` (embedded PostgreSQL and Redis, Envoy on its HTTP
port) in a temporary data directory, creates one run, then calls GetRun for
``--duration`` seconds with ``--concurrency`` calls in flight: over gRPC straight to the
server (grpc.aio, one channel), and over REST through Envoy (``GET /api/v1/runs/{id}``,
one keep-alive HTTP/1.1 connection per caller, a minimal asyncio client so the load
generator spends little CPU). Phases alternate for ``--rounds`` rounds after a warm-up.

Prints, per phase: calls per second, and CPU milliseconds per call of each process
(the Baton server, Envoy, PostgreSQL, Redis, this load generator), then the REST/gRPC
ratio (target: at least 0.8). Everything shares the machine's cores, so throughput is
bounded by their sum; the per-process CPU shows where it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "gen" / "python", ROOT / "src" / "server"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from baton.v1 import (  # noqa: E402
    agents_pb2,
    agents_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

BATON = Path(sys.executable).with_name("baton")
TARGET_RATIO = 0.8
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- CPU accounting from /proc ----------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command name, CPU seconds) of a live process.

    The CPU of children that exited is included (cutime, cstime): PostgreSQL backends of
    connections the server's pool closed would otherwise take their CPU with them.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), name, sum(int(f) for f in fields[11:15]) / CLOCK_TICK


def cpu_by_process(root: int) -> dict[str, float]:
    """CPU seconds of ``root`` ("baton") and its descendants, grouped by program."""
    stats = {
        int(entry.name): found
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None
    }
    totals: dict[str, float] = {}
    tree = {root}
    changed = True
    while changed:
        grown = tree | {pid for pid, (parent, _, _) in stats.items() if parent in tree}
        changed, tree = grown != tree, grown
    for pid in tree:
        if pid not in stats:
            continue
        _, name, seconds = stats[pid]
        group = "baton" if pid == root else name.split()[0]
        if group.startswith("postgres") or group in ("postmaster",):
            group = "postgres"
        elif group.startswith("redis"):
            group = "redis"
        totals[group] = totals.get(group, 0.0) + seconds
    return totals


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the server under test --------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    data_dir: Path
    grpc_port: int
    http_port: int

    @classmethod
    def start(cls) -> Server:
        data_dir = Path(tempfile.mkdtemp(prefix="baton-bench-"))
        grpc_port, http_port = free_port(), free_port()
        process = subprocess.Popen(
            [
                str(BATON),
                "serve",
                "--no-worker",
                "--data-dir",
                str(data_dir),
                "--grpc-port",
                str(grpc_port),
                "--http-port",
                str(http_port),
                "--log-level",
                "warning",
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("BATON_")},
        )
        return cls(process, data_dir, grpc_port, http_port)

    async def wait_serving(self, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit("baton serve exited during start")
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit("baton serve did not become SERVING")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


async def create_run(channel: grpc.aio.Channel) -> str:
    agents: Any = agents_pb2_grpc.AgentServiceStub(channel)
    workflows: Any = workflows_pb2_grpc.WorkflowServiceStub(channel)
    runs: Any = runs_pb2_grpc.RunServiceStub(channel)
    await agents.CreateAgent(agents_pb2.CreateAgentRequest(name="bench", url="http://bench:1"))
    workflow = await workflows.CreateWorkflow(
        json_format.ParseDict(
            {
                "name": "bench",
                "start_step": "a",
                "steps": {
                    "a": {"agent_name": "bench", "next_step": "b", "input_mapping": {"x": 1}},
                    "b": {"agent_name": "bench", "input_mapping": {"y": "${a.output.x}"}},
                },
            },
            workflows_pb2.CreateWorkflowRequest(),
        )
    )
    run = await runs.ExecuteWorkflow(
        json_format.ParseDict(
            {"workflow_id": workflow.id, "input_data": {"source": "bench", "n": 1}},
            runs_pb2.ExecuteWorkflowRequest(),
        )
    )
    return str(run.id)


# --- load generators --------------------------------------------------------------------

Caller = Callable[[float], Awaitable[int]]


def grpc_caller(channel: grpc.aio.Channel, run_id: str) -> Caller:
    runs: Any = runs_pb2_grpc.RunServiceStub(channel)
    request = runs_pb2.GetRunRequest(run_id=run_id)

    async def call_until(stop_at: float) -> int:
        calls = 0
        while time.monotonic() < stop_at:
            await runs.GetRun(request)
            calls += 1
        return calls

    return call_until


def rest_caller(port: int, run_id: str) -> Caller:
    request = f"GET /api/v1/runs/{run_id} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()

    async def call_until(stop_at: float) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        calls = 0
        try:
            while time.monotonic() < stop_at:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 "):
                    raise RuntimeError(head.decode(errors="replace"))
                length = _content_length(head)
                await reader.readexactly(length)
                calls += 1
        finally:
            writer.close()
        return calls

    return call_until


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    raise RuntimeError("response without content-length")


@dataclass
class Phase:
    name: str
    calls: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


async def measure(name: str, caller: Caller, concurrency: int, duration: float, root: int) -> Phase:
    cpu_before = {**cpu_by_process(root), "load generator": own_cpu()}
    started = time.monotonic()
    counts = await asyncio.gather(*(caller(started + duration) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    cpu_after = {**cpu_by_process(root), "load generator": own_cpu()}
    cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
    return Phase(name, sum(counts), elapsed, cpu)


def report(phase: Phase) -> None:
    per_call = ", ".join(
        f"{name} {seconds * 1000 / phase.calls:.3f}"
        for name, seconds in sorted(phase.cpu.items(), key=lambda item: -item[1])
        if seconds > 0
    )
    print(f"  {phase.name:<5} {phase.rate:8.0f} calls/s   CPU ms per call: {per_call}")


async def main_async(args: argparse.Namespace) -> int:
    server = Server.start()
    try:
        await server.wait_serving()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            run_id = await create_run(channel)
            callers = {
                "gRPC": grpc_caller(channel, run_id),
                "REST": rest_caller(server.http_port, run_id),
            }
            body = await _rest_body(server.http_port, run_id)
            assert body["run_id"] == run_id, body
            print(
                f"GetRun, {args.concurrency} in flight, {args.duration:.0f} s per phase, "
                f"{os.cpu_count()} CPUs"
            )
            for caller in callers.values():  # warm-up: connections, caches, JIT-less paths
                await measure("warm", caller, args.concurrency, 1.0, server.process.pid)
            phases: dict[str, list[Phase]] = {name: [] for name in callers}
            for round_number in range(1, args.rounds + 1):
                print(f"round {round_number}")
                for name, caller in callers.items():
                    phase = await measure(
                        name, caller, args.concurrency, args.duration, server.process.pid
                    )
                    phases[name].append(phase)
                    report(phase)
        grpc_rate = sum(p.calls for p in phases["gRPC"]) / sum(p.seconds for p in phases["gRPC"])
        rest_rate = sum(p.calls for p in phases["REST"]) / sum(p.seconds for p in phases["REST"])
        ratio = rest_rate / grpc_rate
        verdict = "meets" if ratio >= TARGET_RATIO else "is BELOW"
        print(
            f"overall: gRPC {grpc_rate:.0f} calls/s, REST via Envoy {rest_rate:.0f} calls/s, "
            f"ratio {ratio:.2f} ({verdict} the {TARGET_RATIO} target)"
        )
        return 0
    finally:
        server.stop()


async def _rest_body(port: int, run_id: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/v1/runs/{run_id} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    body: dict[str, Any] = json.loads(await reader.readexactly(_content_length(head)))
    writer.close()
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    parser.add_argument("--rounds", type=int, default=2, help="gRPC/REST phase pairs")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
