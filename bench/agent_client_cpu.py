"""CPU per agent call: Baton's AgentClient vs the a2a-sdk client, lean vs SDK agent.

Run::

    .venv/bin/python bench/agent_client_cpu.py [--calls 2000] [--concurrency 32]
        [--agents lean,lean-uvicorn,echo,echo-legacy] [--versions 1.0,0.3]
        [--clients baton,sdk] [--repeat 1]

For every agent x protocol version x client it makes ``--calls`` calls with
``--concurrency`` in flight (after a warm-up of 10%, at least 50 calls) and
prints, per call: the client's CPU (this process, ``getrusage``), the agent's
CPU (its ``/proc/<pid>/stat`` utime+stime) and the throughput, plus the number
of failed calls (counted, not fatal). Client and agent
share the machine, so throughput is bounded by their sum.

Agents:
  lean          bench/lean_agent.py, hand-written asyncio HTTP/1.1 server
  lean-uvicorn  the same agent logic as a raw ASGI app under uvicorn (h11)
  echo          tests/agents/echo_agent.py (a2a-sdk server, DefaultRequestHandler)
  echo-legacy   the same with the SDK's LegacyRequestHandler

Clients:
  baton  baton_server.agents.client.AgentClient.call (blocking send), on an
         aiohttp session as Baton's worker makes
  sdk    a2a-sdk: card resolved and Client created once (ClientFactory, shared
         httpx client, streaming off), then per call SendMessageRequest ->
         send_message -> artifact data part -> MessageToDict; this is the SDK's
         cheapest correct use, not a client per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "src" / "server"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# As in the echo agent: OpenTelemetry (if installed) would otherwise open spans
# in the SDK client on every call and inflate its figure.
os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory  # noqa: E402
from a2a.types import Message, Part, Role, SendMessageRequest  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402

from baton_server.agents.client import AgentClient, AgentEndpoint  # noqa: E402
from bench.lean_agent import LeanAgentProcess  # noqa: E402
from tests.agents.process import AgentProcess  # noqa: E402

AGENTS = ("lean", "lean-uvicorn", "echo", "echo-legacy")
VERSIONS = ("1.0", "0.3")
CLIENTS = ("baton", "sdk")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# A small but realistic step input: nested objects, ints, floats, strings, a list.
PAYLOAD: dict[str, Any] = {
    "data": {
        "customer_id": 48213,
        "text": "Please summarise the attached quarterly report in three bullet points.",
        "scores": [0.25, 0.5, 0.75],
        "tags": ["finance", "q3", "summary"],
        "options": {"max_tokens": 256, "temperature": 0.2, "stream": False},
    },
    "step": "summarise",
    "attempt": 1,
}

Call = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class Result:
    """One measured run."""

    agent: str
    version: str
    client: str
    calls: int
    wall_s: float
    client_cpu_s: float
    agent_cpu_s: float
    failures: int

    def row(self) -> str:
        """The table row."""
        per_call = 1000 / self.calls
        return (
            f"{self.agent:<13} {self.version:<4} {self.client:<6} "
            f"{self.calls / self.wall_s:>8.0f} "
            f"{self.client_cpu_s * per_call:>10.3f} "
            f"{self.agent_cpu_s * per_call:>10.3f} "
            f"{(self.client_cpu_s + self.agent_cpu_s) * per_call:>10.3f} "
            f"{self.failures:>6}"
        )


HEADER = (
    f"{'agent':<13} {'ver':<4} {'client':<6} {'calls/s':>8} "
    f"{'client ms':>10} {'agent ms':>10} {'total ms':>10} {'failed':>6}"
)


def process_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds, from /proc (no psutil)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def self_cpu_s() -> float:
    """This process's user + system CPU in seconds (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def run_agent(kind: str, version: str) -> Iterator[tuple[str, int]]:
    """Start an agent of ``kind`` speaking ``version``; yield (url, pid)."""
    if kind.startswith("lean"):
        with LeanAgentProcess() as lean:
            url = lean.start(
                protocol_version="1.0" if version == "1.0" else "0.3",
                server="uvicorn" if kind == "lean-uvicorn" else "asyncio",
            )
            assert lean.pid is not None
            yield url, lean.pid
    else:
        with AgentProcess() as echo:
            url = echo.start(
                protocol_version="1.0" if version == "1.0" else "0.3",
                request_handler="legacy" if kind == "echo-legacy" else "default",
            )
            assert echo.pid is not None
            yield url, echo.pid


async def baton_caller(session: aiohttp.ClientSession, url: str) -> Call:
    """Per-call function using Baton's AgentClient."""
    client = AgentClient(session)
    endpoint = AgentEndpoint(url=url, protocol="a2a", timeout_ms=30_000, headers={})
    run = uuid.uuid4().hex[:8]

    async def call(index: int) -> Any:
        return await client.call(endpoint, PAYLOAD, idempotency_key=f"{run}:{index}")

    return call


async def sdk_caller(http: httpx.AsyncClient, url: str) -> Call:
    """Per-call function using the a2a-sdk client, created once."""
    card = await A2ACardResolver(http, url).get_agent_card()
    client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)

    async def call(index: int) -> Any:
        data = struct_pb2.Value()
        json_format.ParseDict(PAYLOAD, data)
        request = SendMessageRequest(
            message=Message(
                message_id=str(uuid.uuid4()),
                role=Role.ROLE_USER,
                parts=[Part(data=data)],
            )
        )
        output: Any = None
        async for response in client.send_message(request):
            for artifact in response.task.artifacts:
                for part in artifact.parts:
                    output = json_format.MessageToDict(part.data)
        return output

    return call


async def drive(call: Call, calls: int, concurrency: int) -> int:
    """Make ``calls`` calls, ``concurrency`` in flight; return how many failed.

    A failed call (an overloaded agent resetting a connection, say) is counted,
    not fatal: the figures stay meaningful and the table says how many failed.
    """
    counter = iter(range(calls))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for index in counter:
            try:
                output = await call(index)
            except Exception as error:  # counted and reported, see above
                failures += 1
                if failures == 1:
                    print(f"  first failure: {type(error).__name__}: {error}", file=sys.stderr)
                continue
            if not output or not output.get("echo"):
                raise RuntimeError(f"unexpected output {output!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def measure(agent: str, version: str, client: str, calls: int, concurrency: int) -> Result:
    """One run against a fresh agent process."""
    with run_agent(agent, version) as (url, pid):
        async with contextlib.AsyncExitStack() as stack:
            # Each client on its own HTTP stack, pooled as Baton's worker pools.
            if client == "baton":
                connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=4)
                session = aiohttp.ClientSession(connector=connector)
                await stack.enter_async_context(session)
                call = await baton_caller(session, url)
            else:
                limits = httpx.Limits(
                    max_connections=concurrency, max_keepalive_connections=concurrency
                )
                http = await stack.enter_async_context(httpx.AsyncClient(limits=limits))
                call = await sdk_caller(http, url)
            await drive(call, max(calls // 10, 50), concurrency)  # warm-up: pool, caches
            agent_before, client_before = process_cpu_s(pid), self_cpu_s()
            started = time.perf_counter()
            failures = await drive(call, calls, concurrency)
            wall = time.perf_counter() - started
            client_cpu = self_cpu_s() - client_before
            agent_cpu = process_cpu_s(pid) - agent_before
    return Result(agent, version, client, calls, wall, client_cpu, agent_cpu, failures)


def _choices(text: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = set(chosen) - set(allowed)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; choose from {allowed}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--agents", type=lambda t: _choices(t, AGENTS), default=list(AGENTS))
    parser.add_argument("--versions", type=lambda t: _choices(t, VERSIONS), default=list(VERSIONS))
    parser.add_argument("--clients", type=lambda t: _choices(t, CLIENTS), default=list(CLIENTS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per combination")
    return parser.parse_args(argv)


def median_result(results: list[Result]) -> Result:
    """The per-field median of several runs of one combination."""
    first = results[0]
    return Result(
        first.agent,
        first.version,
        first.client,
        first.calls,
        statistics.median(r.wall_s for r in results),
        statistics.median(r.client_cpu_s for r in results),
        statistics.median(r.agent_cpu_s for r in results),
        sum(r.failures for r in results),
    )


async def main_async(args: argparse.Namespace) -> None:
    """Run every combination, print rows as they arrive, then the medians."""
    print(
        f"{args.calls} calls, {args.concurrency} in flight, {os.cpu_count()} CPUs; "
        "CPU figures are milliseconds per call"
    )
    print(HEADER)
    runs: dict[tuple[str, str, str], list[Result]] = {}
    # Repeats outermost: each combination is sampled at several moments, so a
    # burst of load from elsewhere on the machine skews one run, not one row.
    for _ in range(args.repeat):
        for agent in args.agents:
            for version in args.versions:
                for client in args.clients:
                    result = await measure(agent, version, client, args.calls, args.concurrency)
                    runs.setdefault((agent, version, client), []).append(result)
                    print(result.row(), flush=True)
    if args.repeat > 1:
        print(f"\nmedian of {args.repeat} runs (failed: total)")
        print(HEADER)
        for results in runs.values():
            print(median_result(results).row())


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
