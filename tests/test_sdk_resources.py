"""The async SDK against the real server: agents and workflows, typed results, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton.v1 import agents_pb2, workflows_pb2
from baton_sdk import (
    AgentProtocol,
    AgentStatus,
    AuthType,
    BatonClient,
    RetryConfig,
    Step,
    WorkflowStatus,
)
from baton_server.app import GrpcApp
from tests.agents.process import unused_loopback_port


@pytest.fixture
async def client(grpc_app: GrpcApp, engine: AsyncEngine) -> AsyncIterator[BatonClient]:
    async with baton_sdk.connect(f"127.0.0.1:{grpc_app.port}") as client:
        yield client


async def test_agent_lifecycle_with_typed_results(client: BatonClient, echo_agent_url: str) -> None:
    created = await client.agents.create(
        name="extractor",
        url=echo_agent_url,
        description="Extracts data",
        auth_type=AuthType.BEARER,
        auth_config={"token": "secret"},
        timeout_ms=5000,
        retry_config={"max_retries": 1},
    )
    assert created.status is AgentStatus.ACTIVE
    assert created.status.value == "active"  # enum values are the REST strings
    assert f"{created.status}" == "active"
    assert (created.auth_type, created.protocol) == (AuthType.BEARER, AgentProtocol.A2A)
    # Absent retry fields took the server's defaults.
    assert created.retry_config == RetryConfig(max_retries=1)
    assert created.created_at.tzinfo is UTC
    assert abs((datetime.now(UTC) - created.created_at).total_seconds()) < 60
    assert isinstance(created.proto, agents_pb2.Agent)
    assert created.proto.id == created.id

    assert await client.agents.get(created) == created
    assert await client.agents.get(created.id) == created
    assert await client.agents.find("extractor") == created
    assert await client.agents.find("nobody") is None

    updated = await client.agents.update(
        created, description="Extracts more", retry_config={"initial_delay_ms": 200}
    )
    # A mapping changes only its keys: max_retries is still 1.
    assert updated.retry_config == RetryConfig(max_retries=1, initial_delay_ms=200)
    assert (updated.description, updated.url) == ("Extracts more", echo_agent_url)
    replaced = await client.agents.update(created, retry_config=RetryConfig(), protocol=None)
    assert replaced.retry_config == RetryConfig()

    health = await client.agents.check_health(created)
    assert health.healthy
    assert health.status_code == 200
    assert health.error is None
    assert health.response_time_ms is not None

    deactivated = await client.agents.update(created, status=AgentStatus.INACTIVE)
    assert deactivated.status is AgentStatus.INACTIVE

    await client.agents.delete(created)
    await client.agents.delete(created)  # idempotent
    assert (await client.agents.get(created)).status is AgentStatus.DELETED
    assert await client.agents.list().to_list() == []
    assert [a.id for a in await client.agents.list(status=AgentStatus.DELETED).to_list()] == [
        created.id
    ]


async def test_unreachable_agent_is_an_answer_not_an_error(client: BatonClient) -> None:
    agent = await client.agents.create(
        name="gone", url=f"http://127.0.0.1:{unused_loopback_port()}", timeout_ms=1000
    )
    health = await client.agents.check_health(agent)
    assert not health.healthy
    assert health.status_code is None
    assert health.response_time_ms is None
    assert health.error


async def test_listing_pages_through_transparently(client: BatonClient) -> None:
    for index in range(7):
        await client.agents.create(name=f"agent-{index}", url="http://agents.example:8080")

    names = [
        a.name async for a in client.agents.list(page_size=3, sort_by="name", sort_order="asc")
    ]
    assert names == [f"agent-{index}" for index in range(7)]
    newest_first = [a.name async for a in client.agents.list(page_size=2)]
    assert newest_first == [f"agent-{index}" for index in reversed(range(7))]

    pages = [page async for page in client.agents.list(page_size=3).pages()]
    assert [len(page.items) for page in pages] == [3, 3, 1]
    assert [page.page for page in pages] == [1, 2, 3]
    assert {(page.total, page.total_pages) for page in pages} == {(7, 3)}
    assert pages[-1].is_last

    limited = await client.agents.list(
        page_size=3, limit=4, sort_by="name", sort_order="asc"
    ).to_list()
    assert [a.name for a in limited] == ["agent-0", "agent-1", "agent-2", "agent-3"]
    assert await client.agents.list(limit=0).to_list() == []
    only = await client.agents.list(name="agent-5").to_list()
    assert [a.name for a in only] == ["agent-5"]
    # Each iteration starts over from the first page.
    pager = client.agents.list(page_size=5)
    assert len(await pager.to_list()) == len(await pager.to_list()) == 7


async def test_workflow_lifecycle_versions_and_activation(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await client.workflows.create(
        name="pipeline",
        description="Two steps",
        start_step="first",
        steps={
            # A Step object and a REST-shaped dict are both accepted.
            "first": Step(
                agent_name="echo",
                next_step="second",
                input_mapping={"source": "${workflow.input.source}", "limit": 100},
            ),
            "second": {
                "agent_name": "echo",
                "next_step": None,
                "input_mapping": {"data": "${first.output.data}"},
            },
        },
    )
    assert (workflow.version, workflow.status) == (1, WorkflowStatus.ACTIVE)
    assert workflow.workflow_data.start_step == "first"
    first = workflow.workflow_data.steps["first"]
    assert first == Step(
        id="first",
        agent_name="echo",
        next_step="second",
        input_mapping={"source": "${workflow.input.source}", "limit": 100},
    )
    assert isinstance(first.input_mapping["limit"], int)  # not 100.0
    assert workflow.workflow_data.steps["second"].next_step is None
    assert isinstance(workflow.proto, workflows_pb2.Workflow)
    assert await client.workflows.get(workflow.id) == workflow
    assert await client.workflows.find("pipeline") == workflow

    renamed = await client.workflows.update(workflow, description="Still two steps")
    assert renamed.version == 1, "a description change keeps the version"
    changed = await client.workflows.update(
        workflow,
        start_step="only",
        steps={"only": Step(agent_name="echo", depends_on=())},
    )
    assert changed.version == 2
    assert changed.definition_id != workflow.definition_id
    versions = await client.workflows.versions(workflow).to_list()
    assert [(v.version, v.status) for v in versions] == [
        (2, WorkflowStatus.ACTIVE),
        (1, WorkflowStatus.INACTIVE),
    ]
    assert versions[1].id == workflow.definition_id
    assert versions[1].workflow_data == workflow.workflow_data
    assert [
        v.version for v in await client.workflows.versions(workflow, page_size=1).to_list()
    ] == [
        2,
        1,
    ]

    assert (await client.workflows.deactivate(workflow)).status is WorkflowStatus.INACTIVE
    assert (await client.workflows.deactivate(workflow)).status is WorkflowStatus.INACTIVE
    assert [
        w.id for w in await client.workflows.list(status=WorkflowStatus.INACTIVE).to_list()
    ] == [workflow.id]
    assert (await client.workflows.activate(workflow)).status is WorkflowStatus.ACTIVE

    await client.workflows.delete(workflow)
    assert (await client.workflows.get(workflow)).status is WorkflowStatus.DELETED
    assert await client.workflows.list().to_list() == []
    assert await client.workflows.find("pipeline") is None


async def test_workflow_listing_filters_and_sorting(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    for name in ("b", "a", "c"):
        await client.workflows.create(
            name=name, start_step="x", steps={"x": Step(agent_name="echo")}
        )
    by_name = client.workflows.list(sort_by="name", sort_order="desc", page_size=1)
    assert [w.name async for w in by_name] == ["c", "b", "a"]
    assert [w.name async for w in client.workflows.list(name="a")] == ["a"]


async def test_step_mapping_with_an_unknown_field_is_rejected_locally(client: BatonClient) -> None:
    with pytest.raises(ValueError, match=r"steps\.x: unknown field .agnet_name."):
        await client.workflows.create(
            name="typo", start_step="x", steps={"x": {"agnet_name": "echo"}}
        )


async def test_api_key_and_metadata_go_with_every_call() -> None:
    """A server of the contract's AgentService.ListAgents that remembers what metadata
    each call brought."""
    seen: list[dict[str, str | bytes]] = []

    async def list_agents(
        request: agents_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agents_pb2.ListAgentsResponse:
        seen.append(dict(context.invocation_metadata() or ()))
        return agents_pb2.ListAgentsResponse(page=1, page_size=request.page_size)

    handler = grpc.unary_unary_rpc_method_handler(
        list_agents,
        request_deserializer=agents_pb2.ListAgentsRequest.FromString,
        response_serializer=agents_pb2.ListAgentsResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("baton.v1.AgentService", {"ListAgents": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with baton_sdk.connect(
            f"127.0.0.1:{port}", api_key="k-123", metadata={"x-tenant": "acme"}
        ) as client:
            assert await client.agents.list().to_list() == []
            assert await client.agents.list(name="x").to_list() == []
        # A JWT goes as a bearer token instead.
        async with baton_sdk.connect(f"127.0.0.1:{port}", token="e.y.j") as client:
            assert await client.agents.list().to_list() == []
        with pytest.raises(ValueError, match="not both"):
            baton_sdk.connect(f"127.0.0.1:{port}", api_key="k", token="t")
    finally:
        await server.stop(0)
    jwt_call = seen.pop()
    assert jwt_call["authorization"] == "Bearer e.y.j"
    assert "x-api-key" not in jwt_call
    assert len(seen) == 2
    for metadata in seen:
        assert metadata["x-api-key"] == "k-123"
        assert "authorization" not in metadata
        assert metadata["x-tenant"] == "acme"
        assert str(metadata["user-agent"]).startswith("baton-sdk/")
