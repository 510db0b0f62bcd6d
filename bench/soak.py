"""Soak: Baton at half its measured maximum throughput for a long while, watched for leaks.

Run::

    .venv/bin/python bench/soak.py [--minutes 10] [--warmup-minutes 2]

The executor benchmark's setting (``bench/executor.py``: embedded PostgreSQL and Redis,
the lean A2A agent, ``baton serve --no-worker`` and one ``baton worker``, a load
generator process running the three-step workflow). First a short round at full load
measures the maximum runs/s; then the soak round starts runs at half that rate (paced
lanes) for ``--minutes``. Every minute it samples:

* the resident memory (RSS) of every Baton process (and of the load generator);
* the size of PostgreSQL's tables (with indexes and TOAST) and the number of runs;
* Redis's ``used_memory`` and the length of the run stream.

Targets: RSS of each Baton process flat within +-10% after the warm-up minutes; Redis
memory bounded: it grows only with the run stream (at most 200 bytes per new entry),
which is trimmed at ``RUN_STREAM_MAXLEN`` entries; tables growing only by the rows of
new runs (the bytes per new run the same from minute to minute, within 25%).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as redis

from baton_server.keys import RUN_STREAM, RUN_STREAM_MAXLEN
from bench.executor import Environment, bench_baton, children_of, environment

#: Processes sampled, by a word of their command line.
ROLES = {"serve": "baton serve", "worker": "baton worker", "baton-load": "load generator"}
BATON_ROLES = ("baton serve", "baton worker")


@dataclass
class Sample:
    minute: float
    rss_mb: dict[str, float]
    table_mb: float
    runs: int
    redis_mb: float
    #: Entries of the run stream (capped at ``RUN_STREAM_MAXLEN``).
    stream_len: int


@dataclass
class Soak:
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _processes() -> dict[str, int]:
    """The sampled processes among this benchmark's descendants, by role."""
    found: dict[str, int] = {}
    pending = children_of(os.getpid())
    while pending:
        pid = pending.pop()
        pending.extend(children_of(pid))
        argv = _cmdline(pid)
        for word, role in ROLES.items():
            if word in argv and role not in found:
                found[role] = pid
    return found


async def _sample(env: Environment, soak: Soak) -> None:
    table_bytes: int = await env.pg.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r'"
    )
    runs: int = await env.pg.fetchval("SELECT count(*) FROM runs")
    client = redis.Redis.from_url(env.redis_url)
    try:
        memory = await client.info("memory")
        stream_len = int(await client.xlen(RUN_STREAM))
    finally:
        await client.aclose()
    rss = {}
    for role, pid in _processes().items():
        try:
            rss[role] = _rss_mb(pid)
        except OSError:
            continue  # it ended between the listing and the read
    minute = (time.monotonic() - soak.started) / 60
    memory_mb = int(memory["used_memory"]) / 2**20
    soak.samples.append(Sample(minute, rss, table_bytes / 2**20, runs, memory_mb, stream_len))


async def _sampling(env: Environment, soak: Soak, every_s: float) -> None:
    while True:
        await _sample(env, soak)
        await asyncio.sleep(every_s)


def _verdicts(samples: list[Sample], warmup_minutes: float) -> list[str]:
    settled = [s for s in samples if s.minute >= warmup_minutes]
    if len(settled) < 3:
        return ["too few samples after the warm-up for a verdict: soak longer"]
    lines = []
    for role in BATON_ROLES:
        values = [s.rss_mb[role] for s in settled if role in s.rss_mb]
        if not values:
            continue
        first = values[0]
        spread = max(abs(v - first) / first for v in values)
        lines.append(
            f"{role} RSS {first:.0f} -> {values[-1]:.0f} MB, at most {spread:.1%} from the"
            f" first settled sample (target +-10%): {'met' if spread <= 0.10 else 'NOT met'}"
        )
    # The last sample is taken after the round (connections closed, a short interval):
    # the growth checks use the minutes of the round.
    during = settled[:-1]
    # Redis holds the run stream, trimmed to RUN_STREAM_MAXLEN entries, and nothing else
    # that grows with runs: its growth is the stream's, so it stops at the cap.
    start, end = during[0], during[-1]
    entries = end.stream_len - start.stream_len
    if entries > 0:
        per_entry = (end.redis_mb - start.redis_mb) * 2**20 / entries
        at_cap = start.redis_mb + per_entry * (RUN_STREAM_MAXLEN - start.stream_len) / 2**20
        lines.append(
            f"Redis used_memory {start.redis_mb:.1f} -> {end.redis_mb:.1f} MB while the run"
            f" stream grew by {entries} entries: {per_entry:.0f} bytes per entry (target"
            f" <= 200: nothing else grows), about {at_cap:.0f} MB once the stream reaches its"
            f" cap of {RUN_STREAM_MAXLEN:,} entries: {'met' if per_entry <= 200 else 'NOT met'}"
        )
    per_run = [
        (b.table_mb - a.table_mb) * 2**20 / (b.runs - a.runs)
        for a, b in itertools.pairwise(during)
        if b.runs > a.runs
    ]
    if per_run:
        middle = sorted(per_run)[len(per_run) // 2]
        spread = max(abs(v - middle) / middle for v in per_run) if middle > 0 else 0.0
        lines.append(
            f"tables grew {middle / 1024:.1f} KB per new run (median of the minutes; at most"
            f" {spread:.0%} from it, target 25%): {'met' if spread <= 0.25 else 'NOT met'}"
        )
    return lines


async def main_async(args: argparse.Namespace) -> int:
    async with environment(args) as env:
        print(f"1. maximum: {args.runs} runs, {args.in_flight} in flight", flush=True)
        full, _ = await bench_baton(env, 0)
        rate = full.runs_per_s / 2
        lanes = 10
        args.runs = int(rate * args.minutes * 60)
        args.in_flight, args.warmup, args.pace_ms = lanes, lanes, lanes * 1000 / rate
        print(
            f"   {full.runs_per_s:.1f} runs/s; soaking at {rate:.1f} runs/s for"
            f" {args.minutes:g} minutes ({args.runs} runs)",
            flush=True,
        )
        soak = Soak()
        sampler = asyncio.create_task(_sampling(env, soak, args.sample_s))
        try:
            result, _ = await bench_baton(env, 1)
        finally:
            sampler.cancel()
        await _sample(env, soak)  # the end (the processes have stopped: tables and Redis)
    roles = [role for role in ROLES.values() if any(role in s.rss_mb for s in soak.samples)]
    print()
    print(f"2. soak: {result.runs_per_s:.1f} runs/s achieved, {result.failed} failed")
    header = " ".join(f"{role + ' MB':>20}" for role in roles)
    print(f"{'minute':>6} {header} {'tables MB':>10} {'runs':>8} {'Redis MB':>9}")
    for s in soak.samples:
        cells = " ".join(f"{s.rss_mb.get(role, float('nan')):20.1f}" for role in roles)
        print(f"{s.minute:6.1f} {cells} {s.table_mb:10.1f} {s.runs:8d} {s.redis_mb:9.1f}")
    print()
    for line in _verdicts(soak.samples, args.warmup_minutes):
        print(line)
    return 0 if result.failed == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    parser.add_argument(
        "--warmup-minutes", type=float, default=2.0, help="minutes before the targets apply"
    )
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--runs", type=int, default=1000, help="runs of the maximum round")
    parser.add_argument("--in-flight", type=int, default=50, help="maximum round: in flight")
    args = parser.parse_args(argv)
    # What bench/executor.py's Baton round reads.
    args.warmup, args.pace_ms, args.workers, args.worker_mode = 200, 0, 1, "separate"
    args.completion, args.py_spy, args.repeat, args.systems, args.json = "wait", None, 1, [], None
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
