"""AgentService over a real channel against real PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from baton.v1 import agents_pb2, agents_pb2_grpc
from tests.agents.process import unused_loopback_port
from tests.rpc_errors import failure

SECRET = "secret-token-123"

# The seed's full create body (REST contract, "Create Agent").
SEED_AGENT: dict[str, Any] = {
    "name": "data-processor",
    "url": "http://data-processor:8080",
    "description": "Processes data transformations",
    "auth_type": "bearer",
    "auth_config": {"token": SECRET},
    "timeout_ms": 30000,
    "retry_config": {
        "max_retries": 3,
        "initial_delay_ms": 1000,
        "max_delay_ms": 30000,
        "backoff_multiplier": 2.0,
    },
}


def create_request(**fields: Any) -> agents_pb2.CreateAgentRequest:
    return json_format.ParseDict(fields, agents_pb2.CreateAgentRequest())


def as_json(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


async def test_create_with_seed_body_returns_documented_fields(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
) -> None:
    agent = await agents.CreateAgent(create_request(**SEED_AGENT))
    body = as_json(agent)
    assert set(body) == {
        "id",
        "name",
        "url",
        "description",
        "auth_type",
        "timeout_ms",
        "retry_config",
        "status",
        "created_at",
        "updated_at",
        "protocol",
        "project_id",
    }
    assert body["name"] == "data-processor"
    assert body["auth_type"] == "bearer"
    assert body["status"] == "active"
    assert body["protocol"] == "a2a"
    assert body["retry_config"] == SEED_AGENT["retry_config"]
    assert body["created_at"].endswith("Z")


async def test_create_minimal_applies_documented_defaults(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
) -> None:
    agent = await agents.CreateAgent(create_request(name="my-first-agent", url="http://a:8080"))
    assert agent.auth_type == agents_pb2.Agent.AuthType.none
    assert agent.timeout_ms == 30000
    assert as_json(agent.retry_config) == {
        "max_retries": 3,
        "initial_delay_ms": 1000,
        "max_delay_ms": 30000,
        "backoff_multiplier": 2.0,
    }
    assert agent.description == ""


async def test_auth_config_is_never_returned_or_logged(
    agents: agents_pb2_grpc.AgentServiceAsyncStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await agents.CreateAgent(create_request(**SEED_AGENT))
    responses: list[Any] = [
        created,
        await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=created.id)),
        await agents.ListAgents(agents_pb2.ListAgentsRequest()),
        await agents.UpdateAgent(
            agents_pb2.UpdateAgentRequest(
                agent_id=created.id,
                auth_type=agents_pb2.Agent.AuthType.apikey,
                auth_config=json_format.ParseDict(
                    {"key": SECRET}, agents_pb2.CreateAgentRequest().auth_config
                ),
            )
        ),
        await agents.DeleteAgent(agents_pb2.DeleteAgentRequest(agent_id=created.id)),
    ]
    for response in responses:
        assert SECRET.encode() not in response.SerializeToString()
    assert SECRET not in caplog.text


async def test_duplicate_name_is_rejected_naming_the_name(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
) -> None:
    await agents.CreateAgent(create_request(name="dup", url="http://a:1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.CreateAgent(create_request(name="dup", url="http://b:1"))
    found = failure(caught.value)
    assert found.code == grpc.StatusCode.ALREADY_EXISTS
    assert found.reason == "AGENT_NAME_TAKEN"
    assert "'dup'" in found.message
    listed = await agents.ListAgents(agents_pb2.ListAgentsRequest(name="dup"))
    assert [a.url for a in listed.items] == ["http://a:1"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "", "url": "http://a:1"}, "name"),
        ({"name": "x" * 256, "url": "http://a:1"}, "name"),
        ({"name": "a", "url": ""}, "url"),
        ({"name": "a", "url": "not a url"}, "url"),
        ({"name": "a", "url": "ftp://a/b"}, "url"),
        ({"name": "a", "url": "http://a:1", "timeout_ms": 999}, "timeout_ms"),
        ({"name": "a", "url": "http://a:1", "timeout_ms": 300001}, "timeout_ms"),
        (
            {"name": "a", "url": "http://a:1", "retry_config": {"max_retries": 11}},
            "retry_config.max_retries",
        ),
        (
            {"name": "a", "url": "http://a:1", "retry_config": {"max_retries": -1}},
            "retry_config.max_retries",
        ),
        (
            {"name": "a", "url": "http://a:1", "retry_config": {"initial_delay_ms": 99}},
            "retry_config.initial_delay_ms",
        ),
        (
            {"name": "a", "url": "http://a:1", "retry_config": {"max_delay_ms": 999}},
            "retry_config.max_delay_ms",
        ),
        (
            {"name": "a", "url": "http://a:1", "retry_config": {"backoff_multiplier": 0.9}},
            "retry_config.backoff_multiplier",
        ),
        ({"name": "a", "url": "http://a:1", "auth_type": "bearer"}, "auth_config.token"),
        (
            {"name": "a", "url": "http://a:1", "auth_type": "apikey", "auth_config": {"key": ""}},
            "auth_config.key",
        ),
    ],
)
async def test_invalid_fields_are_rejected_by_name_and_change_nothing(
    agents: agents_pb2_grpc.AgentServiceAsyncStub, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.CreateAgent(create_request(**fields))
    found = failure(caught.value)
    assert found.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in found.fields, found
    assert field in found.message
    assert (await agents.ListAgents(agents_pb2.ListAgentsRequest())).total == 0


async def test_get_unknown_and_malformed_ids(agents: agents_pb2_grpc.AgentServiceAsyncStub) -> None:
    unknown = "123e4567-e89b-12d3-a456-426614174000"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=unknown))
    found = failure(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.NOT_FOUND, "AGENT_NOT_FOUND")
    assert unknown in found.message
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id="nope"))
    found = failure(caught.value)
    assert found.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_id" in found.fields


async def test_partial_update_changes_only_given_fields(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
) -> None:
    created = await agents.CreateAgent(create_request(**SEED_AGENT))
    updated = await agents.UpdateAgent(
        json_format.ParseDict(
            {
                "agent_id": created.id,
                "description": "Updated description",
                "timeout_ms": 60000,
                "retry_config": {"max_retries": 5},
            },
            agents_pb2.UpdateAgentRequest(),
        )
    )
    assert updated.description == "Updated description"
    assert updated.timeout_ms == 60000
    assert updated.retry_config.max_retries == 5
    # Everything not in the request is unchanged, including the rest of retry_config.
    assert updated.retry_config.initial_delay_ms == 1000
    assert updated.retry_config.backoff_multiplier == 2.0
    assert (updated.name, updated.url, updated.auth_type) == (
        created.name,
        created.url,
        created.auth_type,
    )
    assert updated.updated_at.ToDatetime() > created.updated_at.ToDatetime()
    assert updated.created_at == created.created_at


async def test_update_validates_and_rejects_bad_values(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
) -> None:
    created = await agents.CreateAgent(create_request(name="a", url="http://a:1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.UpdateAgent(agents_pb2.UpdateAgentRequest(agent_id=created.id, timeout_ms=10))
    assert "timeout_ms" in failure(caught.value).fields
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.UpdateAgent(
            agents_pb2.UpdateAgentRequest(
                agent_id=created.id, auth_type=agents_pb2.Agent.AuthType.bearer
            )
        )
    assert "auth_config.token" in failure(caught.value).fields
    again = await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=created.id))
    assert again == created


async def test_soft_delete(agents: agents_pb2_grpc.AgentServiceAsyncStub) -> None:
    created = await agents.CreateAgent(create_request(name="gone", url="http://a:1"))
    deleted = await agents.DeleteAgent(agents_pb2.DeleteAgentRequest(agent_id=created.id))
    assert deleted.message == f"Agent '{created.id}' deleted successfully"
    fetched = await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=created.id))
    assert fetched.status == agents_pb2.Agent.Status.deleted
    assert (await agents.ListAgents(agents_pb2.ListAgentsRequest())).total == 0
    only_deleted = await agents.ListAgents(
        agents_pb2.ListAgentsRequest(status=agents_pb2.Agent.Status.deleted)
    )
    assert [a.id for a in only_deleted.items] == [created.id]
    # Deleting again is harmless; changing a deleted agent is not allowed.
    await agents.DeleteAgent(agents_pb2.DeleteAgentRequest(agent_id=created.id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.UpdateAgent(
            agents_pb2.UpdateAgentRequest(
                agent_id=created.id, status=agents_pb2.Agent.Status.active
            )
        )
    found = failure(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AGENT_DELETED")
    # The name of a deleted agent can be registered again.
    again = await agents.CreateAgent(create_request(name="gone", url="http://b:1"))
    assert again.id != created.id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.DeleteAgent(
            agents_pb2.DeleteAgentRequest(agent_id="123e4567-e89b-12d3-a456-426614174000")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pagination_filters_and_sorting(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
) -> None:
    for i in range(25):
        await agents.CreateAgent(create_request(name=f"agent-{i:02d}", url="http://a:1"))
    inactive = await agents.CreateAgent(create_request(name="zz-inactive", url="http://a:1"))
    await agents.UpdateAgent(
        agents_pb2.UpdateAgentRequest(agent_id=inactive.id, status=agents_pb2.Agent.Status.inactive)
    )

    first = await agents.ListAgents(
        agents_pb2.ListAgentsRequest(
            page=1,
            page_size=10,
            status=agents_pb2.Agent.Status.active,
            sort_by="name",
            sort_order="asc",
        )
    )
    assert (first.total, first.page, first.page_size, first.total_pages) == (25, 1, 10, 3)
    assert [a.name for a in first.items] == [f"agent-{i:02d}" for i in range(10)]
    last = await agents.ListAgents(
        agents_pb2.ListAgentsRequest(
            page=3,
            page_size=10,
            status=agents_pb2.Agent.Status.active,
            sort_by="name",
            sort_order="asc",
        )
    )
    assert [a.name for a in last.items] == [f"agent-{i:02d}" for i in range(20, 25)]
    beyond = await agents.ListAgents(agents_pb2.ListAgentsRequest(page=9, page_size=10))
    assert (len(beyond.items), beyond.total, beyond.page) == (0, 26, 9)

    default = await agents.ListAgents(agents_pb2.ListAgentsRequest())
    assert (default.page, default.page_size, default.total) == (1, 20, 26)
    assert default.items[0].name == "zz-inactive"  # newest first by default
    by_name = await agents.ListAgents(agents_pb2.ListAgentsRequest(name="agent-07"))
    assert [a.name for a in by_name.items] == ["agent-07"]
    only_inactive = await agents.ListAgents(
        agents_pb2.ListAgentsRequest(status=agents_pb2.Agent.Status.inactive)
    )
    assert [a.name for a in only_inactive.items] == ["zz-inactive"]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page": 0}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"sort_by": "version"}, "sort_by"),
        ({"sort_order": "up"}, "sort_order"),
    ],
)
async def test_invalid_list_parameters_are_rejected_by_name(
    agents: agents_pb2_grpc.AgentServiceAsyncStub, request_fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agents.ListAgents(agents_pb2.ListAgentsRequest(**request_fields))
    found = failure(caught.value)
    assert found.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in found.fields


async def test_health_of_a_live_and_a_dead_agent(
    agents: agents_pb2_grpc.AgentServiceAsyncStub, echo_agent_url: str
) -> None:
    live = await agents.CreateAgent(create_request(name="live", url=echo_agent_url))
    health = await agents.CheckAgentHealth(agents_pb2.CheckAgentHealthRequest(agent_id=live.id))
    assert health.healthy
    assert health.status_code == 200
    assert health.response_time_ms > 0
    assert not health.HasField("error")

    dead = await agents.CreateAgent(
        create_request(
            name="dead", url=f"http://127.0.0.1:{unused_loopback_port()}", timeout_ms=1000
        )
    )
    health = await agents.CheckAgentHealth(agents_pb2.CheckAgentHealthRequest(agent_id=dead.id))
    assert not health.healthy
    assert not health.HasField("status_code")
    assert health.error
