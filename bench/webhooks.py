"""Webhook benchmark: state change -> receiver latency, and what webhooks cost the executor.

Run::

    .venv/bin/python bench/webhooks.py [--runs 1000] [--in-flight 50] [--warmup 200]

The executor benchmark's setting (``bench/executor.py``: embedded PostgreSQL and Redis,
the lean A2A agent, ``baton serve --no-worker`` and one ``baton worker``, a load
generator process running the three-step workflow) is measured four times, side by side
on one database:

1. no webhook (the baseline);
2. 10 endpoints subscribed to every run event (5 events per run: ``workflow.executed``,
   three ``execution.step_completed``, ``execution.completed``, so 50 deliveries a run);
3. 100 endpoints subscribed to ``execution.completed`` (100 deliveries a run);
4. no webhook again (the baseline once more, so that drift on a noisy machine shows).

The endpoints are paths of one aiohttp receiver in this process that answers 200 at
once and records, for every delivery, its arrival minus the event's timestamp (the start
of the PostgreSQL transaction that made the change): commit, outbox claim, signing and
the HTTP POST. Printed: runs/s of each round and its ratio to the baseline (target: at
most 15% lost with 10 endpoints), and the delivery latency p50/p99 (target p99 < 250 ms
with 100 endpoints), plus how many deliveries were still pending when the round ended.
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
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web
from cryptography.fernet import Fernet

from baton_server.sealing import SecretBox
from baton_server.webhooks.events import EVENT_TYPES
from bench.executor import (
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


async def main_async(args: argparse.Namespace) -> int:
    # The receiver is on loopback, which workers refuse by default.
    os.environ["BATON_WEBHOOK_ALLOW_PRIVATE"] = "true"
    args.secret_key = Fernet.generate_key().decode()
    box = SecretBox([args.secret_key])
    rounds = [
        ("no webhook", 0, []),
        ("10 endpoints x every run event", 10, RUN_EVENTS),
        ("100 endpoints x execution.completed", 100, ["execution.completed"]),
        ("no webhook (again)", 0, []),
    ]
    print(
        f"Webhook benchmark: 3-step workflow, {args.runs} runs, {args.in_flight} in flight,"
        f" {args.warmup} warm-up runs per round"
    )
    results: list[tuple[str, float, list[float], int]] = []
    async with environment(args) as env, receiving() as receiver:
        for index, (label, count, events) in enumerate(rounds):
            if index:  # the first round's server creates the schema
                await subscribe(env, box, receiver.url, count, events)
            receiver.latencies_ms.clear()
            result, _ = await bench_baton(env, index)
            pending = 0
            if count:
                pending = await env.pg.fetchval(
                    "SELECT count(*) FROM deliveries WHERE status = 'pending'"
                )
                await env.pg.execute("DELETE FROM deliveries")
            results.append((label, result.runs_per_s, list(receiver.latencies_ms), pending))
            print(f"  {label}: {result.runs_per_s:.1f} runs/s ({result.failed} failed)")
    baseline = (results[0][1] + results[3][1]) / 2
    print()
    print(
        f"{'round':40} {'runs/s':>8} {'ratio':>6} {'deliveries':>10} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'pending':>8}"
    )
    for label, rate, latencies, pending in results:
        p50 = f"{percentile(latencies, 0.5):.1f}" if latencies else "-"
        p99 = f"{percentile(latencies, 0.99):.1f}" if latencies else "-"
        print(
            f"{label:40} {rate:8.1f} {rate / baseline:6.2f} {len(latencies):10d} {p50:>8}"
            f" {p99:>8} {pending:8d}"
        )
    ten, hundred = results[1], results[2]
    loss = 1 - ten[1] / baseline
    print()
    print(
        f"throughput lost with 10 endpoints: {loss:.0%} (target < 15%):"
        f" {'met' if loss < 0.15 else 'NOT met'}"
    )
    if hundred[2]:
        p99 = percentile(hundred[2], 0.99)
        print(
            f"delivery p99 with 100 endpoints: {p99:.0f} ms (target < 250 ms):"
            f" {'met' if p99 < 250 else 'NOT met'}"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    # What bench/executor.py's Baton round reads.
    args.workers, args.worker_mode, args.completion = 1, "separate", "wait"
    args.py_spy, args.repeat, args.systems, args.json = None, 1, ["baton"], None
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
