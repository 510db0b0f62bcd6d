"""Register the three agents of the ETL example (idempotently).

    python examples/register_agents.py --agent-url http://localhost:8001/

Each agent is an A2A service; here all three point at the same URL, which is enough
for the echo agent in tests/agents/echo_agent.py. Running the script again updates
the agents instead of failing.
"""

from __future__ import annotations

import argparse
import asyncio

import baton_sdk
from baton_sdk import Agent, AlreadyExistsError, BatonClient

AGENTS = {
    "DataExtractorAgent": "Extracts raw records from a source",
    "DataTransformerAgent": "Normalises records to a schema",
    "DataLoaderAgent": "Loads records into a destination",
}


async def register(client: BatonClient, name: str, url: str, description: str) -> Agent:
    """Create the agent, or bring an existing one up to date."""
    try:
        return await client.agents.create(
            name=name,
            url=url,
            description=description,
            timeout_ms=30_000,
            retry_config={"max_retries": 2, "initial_delay_ms": 500},
        )
    except AlreadyExistsError:
        existing = await client.agents.find(name)
        assert existing is not None, "the name is taken, so the agent exists"
        return await client.agents.update(existing, url=url, description=description)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", help="host:port of Baton (default: $BATON_SERVER)")
    parser.add_argument("--agent-url", required=True, help="base URL of the A2A agent")
    args = parser.parse_args()

    async with baton_sdk.connect(args.server) as client:
        for name, description in AGENTS.items():
            agent = await register(client, name, args.agent_url, description)
            health = await client.agents.check_health(agent)
            state = "healthy" if health.healthy else f"unhealthy ({health.error})"
            print(f"{agent.name:<22} {agent.status.value:<8} {state}")


if __name__ == "__main__":
    asyncio.run(main())
