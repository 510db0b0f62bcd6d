"""Define the ETL workflow of the Workflow Management API guide: extract -> transform -> load.

    python examples/etl_workflow.py

Steps pass data along with ``${...}`` references: ``${workflow.input.x}`` reads the
run's input, ``${extract.output.data}`` the output of an earlier step. Running the
script again leaves an unchanged workflow alone, or stores a new version.
"""

from __future__ import annotations

import argparse
import asyncio

import baton_sdk
from baton_sdk import BatonClient, Step, Workflow, WorkflowStatus

NAME = "data-processing-pipeline"
START = "extract"
STEPS = {
    "extract": Step(
        agent_name="DataExtractorAgent",
        next_step="transform",
        input_mapping={
            "source_url": "${workflow.input.data_source}",
            "format": "${workflow.input.format}",
            "limit": "${workflow.input.options.limit}",
        },
    ),
    "transform": Step(
        agent_name="DataTransformerAgent",
        next_step="load",
        input_mapping={
            "raw_data": "${extract.output.data}",
            "schema": "${workflow.input.schema}",
            # References inside a longer string are interpolated as text.
            "note": "Hello, ${workflow.input.user.name}!",
        },
    ),
    "load": Step(
        agent_name="DataLoaderAgent",
        input_mapping={
            "transformed_data": "${transform.output.data}",
            "destination": "${workflow.input.destination}",
            "static": {"retries": 2},
        },
    ),
}


async def define(client: BatonClient) -> Workflow:
    """Create the workflow, or update it (a changed graph becomes a new version)."""
    existing = await client.workflows.find(NAME)
    if existing is None:
        return await client.workflows.create(
            name=NAME,
            description="Extract, transform and load a data set",
            start_step=START,
            steps=STEPS,
        )
    workflow = await client.workflows.update(existing, start_step=START, steps=STEPS)
    if workflow.status is not WorkflowStatus.ACTIVE:
        workflow = await client.workflows.activate(workflow)
    return workflow


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", help="host:port of Baton (default: $BATON_SERVER)")
    args = parser.parse_args()

    async with baton_sdk.connect(args.server) as client:
        workflow = await define(client)
        print(f"{workflow.name} version {workflow.version} ({workflow.id})")
        async for version in client.workflows.versions(workflow):
            print(f"  v{version.version} {version.status.value} created {version.created_at:%c}")


if __name__ == "__main__":
    asyncio.run(main())
