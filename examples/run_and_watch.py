"""Run the ETL workflow and follow it live, step by step.

    python examples/run_and_watch.py

The event stream starts with a snapshot of the run, then delivers every event in
order; if the connection drops, the SDK reconnects and resumes after the last event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime

import baton_sdk
from baton_sdk import RunEventType, RunStatus

INPUT = {
    "data_source": "https://api.example.com/data",
    "format": "json",
    "schema": "v2",
    "destination": "s3://bucket/output/",
    "user": {"name": "Ada"},
    "options": {"limit": 100},
}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", help="host:port of Baton (default: $BATON_SERVER)")
    parser.add_argument("--workflow", default="data-processing-pipeline")
    args = parser.parse_args()

    async with baton_sdk.connect(args.server) as client:
        workflow = await client.workflows.find(args.workflow)
        if workflow is None:
            raise SystemExit(f"no workflow {args.workflow!r}: run etl_workflow.py first")
        run = await client.runs.execute(workflow, input_data=INPUT, triggered_by="example")
        print(f"started {run.id}")

        started: dict[str, datetime] = {}
        async for event in run.watch(timeout=120):
            if event.type is RunEventType.STEP_STARTED and event.step_id and event.timestamp:
                started[event.step_id] = event.timestamp
            elif event.type is RunEventType.STEP_COMPLETED and event.step_id and event.timestamp:
                took = event.timestamp - started[event.step_id]
                print(f"  {event.step_id:<10} completed in {took.total_seconds():.2f}s")
            elif event.type is RunEventType.STEP_FAILED:
                print(f"  {event.step_id:<10} failed: {event.error_message}")
            elif event.type is RunEventType.STEP_RETRYING:
                print(f"  {event.step_id:<10} retrying in {event.delay_ms} ms")

        finished = await client.runs.get(run)
        print(f"{finished.status.value} in {finished.duration}")
        if finished.status is not RunStatus.COMPLETED:
            print(finished.error_message)
            return 1
        print(json.dumps(finished.output, indent=2))
        return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
