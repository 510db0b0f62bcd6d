"""The blocking client, for scripts and notebooks: start a run and wait for its result.

    python examples/sync_quickstart.py

``execute(..., wait=True, timeout=...)`` is the synchronous execution of the Workflows
API: it returns the finished run, or raises ``WaitTimeoutError`` (the run goes on).
"""

from __future__ import annotations

import argparse

import baton_sdk
from baton_sdk import RunStatus, WaitTimeoutError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", help="host:port of Baton (default: $BATON_SERVER)")
    parser.add_argument("--workflow", default="data-processing-pipeline")
    args = parser.parse_args()

    with baton_sdk.connect_sync(args.server) as client:
        workflow = client.workflows.find(args.workflow)
        if workflow is None:
            raise SystemExit(f"no workflow {args.workflow!r}: run etl_workflow.py first")
        try:
            run = client.runs.execute(
                workflow,
                input_data={
                    "data_source": "https://api.example.com/data",
                    "format": "csv",
                    "schema": "v1",
                    "destination": "s3://bucket/sync/",
                    "user": {"name": "Grace"},
                    "options": {"limit": 10},
                },
                wait=True,
                timeout=60,
            )
        except WaitTimeoutError as error:
            print(f"still running after 60s: {error.run_id}")
            return 2
        print(f"Execution ID: {run.id}")
        print(f"Status: {run.status.value}")
        print(f"Result: {run.output}")

        # The last runs of this workflow, newest first; pages are fetched as needed.
        for past in client.runs.list(workflow=workflow, status=RunStatus.COMPLETED, limit=5):
            print(f"{past.id}: {past.created_at:%Y-%m-%d %H:%M:%S} {past.status.value}")
        return 0 if run.status is RunStatus.COMPLETED else 1


if __name__ == "__main__":
    raise SystemExit(main())
