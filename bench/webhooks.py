"""Webhook benchmark: what webhooks cost the executor, and state change -> receiver latency.

Run::

    .venv/bin/python bench/webhooks.py [--runs 1000] [--in-flight 50] [--warmup 200]
                                       [--paced-runs 100] [--every-ms 250]

The executor benchmark's setting (``bench/executor.py``: embedded PostgreSQL and Redis,
the lean A2A agent, a load generator process running the three-step workflow), deployed
as for heavy webhook traffic: ``baton serve --no-worker``, ``baton worker
--no-deliveries`` and ``baton deliver`` (which lowers its CPU priority by 10). Four
rounds, side by side on one database:

1. no webhook (the baseline), at full load (``--in-flight`` runs at a time);
2. 10 endpoints subscribed to every run event (5 events per run: ``workflow.executed``,
   three ``execution.step_completed``, ``execution.completed``, so 50 deliveries a run),
   at full load;
3. no webhook again (the baseline once more, so that drift on a noisy machine shows);
4. 100 endpoints subscribed to ``execution.completed`` (100 deliveries a run), one run
   started every ``--every-ms``: the latency of a fan-out below saturation.

The endpoints are paths of one aiohttp receiver in this process that answers 200 at
once and records, for every delivery, its arrival minus the event's timestamp (the start
of the PostgreSQL transaction that made the change): commit, notification, fan-out,
claim, signing and the HTTP POST. Printed per round: runs/s and its ratio to the
baseline (target: at most 15% lost with 10 endpoints), deliveries received during the
round, their latency p50/p99 (target p99 < 250 ms with 100 endpoints), the backlog left
when the round ended, how fast a ``baton deliver`` alone then drained it, and the CPU
per run of every process (the receiver's, in this process, is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web
from cryptography.fernet import Fernet

from baton_server.sealing import SecretBox
from baton_server.webhooks.events import EVENT_TYPES
from bench.executor import (
    BATON,
    Environment,
    bench_baton,
    environment,
    percentile,
)

RUN_EVENTS = [e for e in EVENT_TYPES if e.startswith("execution.") or e == "workflow.executed"]


class Receiver:
    """Answers 200 and records each delivery's latency (ms)."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        happened = datetime.fromisoformat(body["timestamp"]).timestamp()
        self.latencies_ms.append((time.time() - happened) * 1000)
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def subscribe(
    env: Environment, box: SecretBox, url: str, count: int, events: list[str]
) -> None:
    await env.pg.execute("DELETE FROM webhooks")
    sealed = box.seal({"secret": "whsec_" + "A" * 43 + "="})
    await env.pg.executemany(
        "INSERT INTO webhooks (id, url, events, secret, enabled) VALUES ($1, $2, $3, $4, true)",
        [(uuid.uuid4(), f"{url}/hook{i}", events, sealed) for i in range(count)],
    )


@dataclass(frozen=True)
class Round:
    label: str
    endpoints: int
    events: list[str]
    #: Overrides of the executor benchmark's arguments (runs, warmup, in_flight, pace_ms).
    load: dict[str, float]


@dataclass
class Outcome:
    runs_per_s: float
    latencies_ms: list[float]
    pending_at_end: int
    drain_s: float
    received_while_draining: int
    #: CPU milliseconds per measured run, by process (the executor benchmark's roles).
    cpu_ms: dict[str, float]


async def pending(env: Environment) -> int:
    count: int = await env.pg.fetchval(
        "SELECT (SELECT count(*) FROM outbox_events)"
        " + (SELECT count(*) FROM deliveries WHERE status = 'pending')"
    )
    return count


async def run_round(env: Environment, receiver: Receiver, number: int, plan: Round) -> Outcome:
    saved = {name: getattr(env.args, name) for name in plan.load}
    for name, value in plan.load.items():
        setattr(env.args, name, value)
    receiver.latencies_ms.clear()
    try:
        result, _ = await bench_baton(env, number)
    finally:
        for name, value in saved.items():
            setattr(env.args, name, value)
    left = await pending(env)
    # The backlog drains while nothing else runs: the deliverer's own pace. (The
    # deliverer stopped with the round; this one drains what it left.)
    drain_s, received = 0.0, len(receiver.latencies_ms)
    if left:
        async with draining(env) as started:
            while time.monotonic() - started < DRAIN_LIMIT_S:
                if not await pending(env):
                    break
                await asyncio.sleep(0.1)
            drain_s = time.monotonic() - started
    return Outcome(
        result.runs_per_s,
        list(receiver.latencies_ms),
        left,
        drain_s,
        len(receiver.latencies_ms) - received,
        {role: seconds * 1000 / result.runs for role, seconds in result.cpu_s.items()},
    )


DRAIN_LIMIT_S = 120.0


@contextlib.asynccontextmanager
async def draining(env: Environment) -> AsyncIterator[float]:
    """A ``baton deliver`` of its own for the backlog a round left."""
    process = await asyncio.create_subprocess_exec(
        str(BATON),
        "deliver",
        "--database-url",
        env.database_url,
        "--secret-key",
        env.args.secret_key,
        "--log-level",
        "warning",
    )
    try:
        yield time.monotonic()
    finally:
        process.terminate()
        await process.wait()


async def main_async(args: argparse.Namespace) -> int:
    # The receiver is on loopback, which deliverers refuse by default.
    os.environ["BATON_WEBHOOK_ALLOW_PRIVATE"] = "true"
    args.secret_key = Fernet.generate_key().decode()
    box = SecretBox([args.secret_key])
    paced = {"runs": args.paced_runs, "warmup": 5, "in_flight": 1, "pace_ms": args.every_ms}
    rounds = [
        Round("no webhook", 0, [], {}),
        Round("10 endpoints x every run event", 10, RUN_EVENTS, {}),
        Round("no webhook (again)", 0, [], {}),
        Round(
            f"100 endpoints x execution.completed, a run every {args.every_ms:g} ms",
            100,
            ["execution.completed"],
            paced,
        ),
    ]
    print(
        f"Webhook benchmark: 3-step workflow; throughput rounds {args.runs} runs,"
        f" {args.in_flight} in flight, {args.warmup} warm-up runs; latency round"
        f" {args.paced_runs} runs, one every {args.every_ms:g} ms. Topology: baton serve"
        " --no-worker, baton worker --no-deliveries, baton deliver (nice 10)."
    )
    results: list[Outcome] = []
    async with environment(args) as env, receiving() as receiver:
        for index, plan in enumerate(rounds):
            if index:  # the first round's server creates the schema
                await subscribe(env, box, receiver.url, plan.endpoints, plan.events)
            outcome = await run_round(env, receiver, index, plan)
            await env.pg.execute("DELETE FROM deliveries")
            results.append(outcome)
            print(f"  {plan.label}: {outcome.runs_per_s:.1f} runs/s")
    baseline = (results[0].runs_per_s + results[2].runs_per_s) / 2
    print()
    print(
        f"{'round':56} {'runs/s':>7} {'ratio':>6} {'received':>9} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'backlog':>8} {'drain/s':>8}"
    )
    for plan, outcome in zip(rounds, results, strict=True):
        latencies = outcome.latencies_ms
        p50 = f"{percentile(latencies, 0.5):.1f}" if latencies else "-"
        p99 = f"{percentile(latencies, 0.99):.1f}" if latencies else "-"
        rate = (
            f"{outcome.received_while_draining / outcome.drain_s:.0f}" if outcome.drain_s else "-"
        )
        ratio = outcome.runs_per_s / baseline if plan.load == {} else float("nan")
        print(
            f"{plan.label:56} {outcome.runs_per_s:7.1f} {ratio:6.2f} {len(latencies):9d}"
            f" {p50:>8} {p99:>8} {outcome.pending_at_end:8d} {rate:>8}"
        )
    roles = ["server", "worker", "deliverer", "postgres", "redis", "loadgen", "agent"]
    print()
    print(f"{'CPU ms per run':56} " + " ".join(f"{role:>9}" for role in roles))
    for plan, outcome in zip(rounds, results, strict=True):
        cells = " ".join(f"{outcome.cpu_ms.get(role, 0.0):9.2f}" for role in roles)
        print(f"{plan.label:56} {cells}")
    loss = 1 - results[1].runs_per_s / baseline
    print()
    print(
        f"throughput lost with 10 endpoints: {loss:.0%} (target < 15%):"
        f" {'met' if loss < 0.15 else 'NOT met'}"
    )
    if results[3].latencies_ms:
        fan_out_p99 = percentile(results[3].latencies_ms, 0.99)
        print(
            f"delivery p99 with 100 endpoints: {fan_out_p99:.0f} ms (target < 250 ms):"
            f" {'met' if fan_out_p99 < 250 else 'NOT met'}"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--paced-runs", type=int, default=100, help="runs of the latency round")
    parser.add_argument(
        "--every-ms", type=float, default=250, help="latency round: one run this often"
    )
    args = parser.parse_args(argv)
    # What bench/executor.py's Baton round reads.
    args.workers, args.worker_mode, args.completion = 1, "separate", "wait"
    # Deliveries in a process of their own, at a lower CPU priority (docs/webhooks.md).
    args.worker_args, args.deliverers, args.pace_ms = ["--no-deliveries"], 1, 0
    args.py_spy, args.repeat, args.systems, args.json = None, 1, ["baton"], None
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
