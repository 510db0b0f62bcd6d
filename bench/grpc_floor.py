"""The floor of event fan-out over grpc.aio on this machine: a bare ``WatchRun`` server.

``bench/events.py`` measures Baton; this process measures what the transport alone costs
with the same watchers and the same pattern of events, so that the two can be compared
in one run. It answers ``baton.v1.RunService/WatchRun`` and nothing else, with no
database, no Redis and no Baton code: each stream gets a snapshot event, then every run
(named by the requests) has a step boundary - two events, serialised once for all its
streams - every ``--step-ms``, ``--steps`` times, staggered over one step or all at
once as ``--starts`` says; the last event is terminal and ends the streams. An event's
timestamp is the moment the server hands it to its streams.

Run::

    python bench/grpc_floor.py --streams 1000 [--steps 12] [--step-ms 500]
        [--starts staggered|together]

It prints ``READY <port>`` once listening, starts the steps once ``--streams`` streams
are open, and exits once they have ended and its stdin is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "src" / "server"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import grpc  # noqa: E402

from baton.v1 import runs_pb2  # noqa: E402
from baton_server import loop  # noqa: E402

Event = runs_pb2.RunEvent


#: Serialised events for a run's streams, and whether the last one ends them.
Batch = tuple[list[bytes], bool]


class Runs:
    """The open streams of each run, and the next events for them."""

    def __init__(self, streams: int) -> None:
        self.waiting: dict[str, list[asyncio.Future[Batch]]] = defaultdict(list)
        self.streams = streams
        self.opened = 0
        self.open_streams = 0
        self.all_waiting = asyncio.Event()
        self.closed = asyncio.Event()

    async def next(self, run_id: str) -> Batch:
        future: asyncio.Future[Batch] = asyncio.get_running_loop().create_future()
        self.waiting[run_id].append(future)
        if sum(map(len, self.waiting.values())) == self.streams:
            self.all_waiting.set()
        return await future

    def send(self, run_id: str, batch: Batch) -> None:
        futures, self.waiting[run_id] = self.waiting[run_id], []
        self.all_waiting.clear()
        for future in futures:
            future.set_result(batch)


def _event(run_id: str, sequence: int, type_: int, step: int, *, terminal: bool) -> bytes:
    event = Event(
        run_id=run_id,
        sequence=sequence,
        type=type_,  # type: ignore[arg-type]
        step_id=f"s{step}",
        status=runs_pb2.Run.COMPLETED if terminal else runs_pb2.Run.RUNNING,
        progress=min(100, 8 * step),  # any value: only the message size matters
        message=f"Step 's{step}' event {sequence}",
        terminal=terminal,
    )
    event.timestamp.FromNanoseconds(time.time_ns())
    return event.SerializeToString()


async def serve(args: argparse.Namespace) -> None:
    runs = Runs(args.streams)

    async def watch_run(request: Any, context: Any) -> AsyncIterator[bytes]:
        runs.opened += 1
        runs.open_streams += 1
        try:
            yield Event(run_id=request.run_id, type=Event.state_sync).SerializeToString()
            final = False
            while not final:
                messages, final = await runs.next(request.run_id)
                for message in messages:
                    yield message
        finally:
            runs.open_streams -= 1
            if runs.open_streams == 0 and runs.opened >= runs.streams:
                runs.closed.set()

    handler = grpc.method_handlers_generic_handler(
        "baton.v1.RunService",
        {
            "WatchRun": grpc.unary_stream_rpc_method_handler(
                watch_run, request_deserializer=runs_pb2.WatchRunRequest.FromString
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"READY {port}", flush=True)
    await runs.all_waiting.wait()
    run_ids = sorted(runs.waiting)
    gap_s = args.step_ms / 1000 / len(run_ids) if args.starts == "staggered" else 0.0
    started = time.monotonic()
    for step in range(args.steps):
        last = step == args.steps - 1
        for index, run_id in enumerate(run_ids):
            due = started + step * args.step_ms / 1000 + index * gap_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            completed = _event(run_id, 2 * step + 1, Event.step_completed, step, terminal=False)
            following = (
                _event(run_id, 2 * step + 2, Event.run_status, step, terminal=True)
                if last
                else _event(run_id, 2 * step + 2, Event.step_started, step + 1, terminal=False)
            )
            runs.send(run_id, ([completed, following], last))
    await runs.closed.wait()
    await server.stop(1)
    # Stay until the parent has read this process's CPU time (it closes stdin).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--step-ms", type=int, default=500)
    parser.add_argument("--starts", choices=["staggered", "together"], default="staggered")
    loop.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
