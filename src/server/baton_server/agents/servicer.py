"""``baton.v1.AgentService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

from typing import Any

import grpc

from baton.v1 import agents_pb2, agents_pb2_grpc
from baton_server.access.context import caller
from baton_server.agents.model import Agent, AgentChanges, AgentSpec, RetryPolicy
from baton_server.agents.service import AgentService
from baton_server.paging import Sort
from baton_server.rpc.convert import (
    page_fields,
    page_request,
    parse_uuid,
    present,
    struct_to_dict,
    timestamp,
)

_Context = grpc.aio.ServicerContext[Any, Any]
_RETRY_FIELDS = ("max_retries", "initial_delay_ms", "max_delay_ms", "backoff_multiplier")


def agent_to_proto(agent: Agent) -> agents_pb2.Agent:
    return agents_pb2.Agent(
        id=str(agent.id),
        name=agent.name,
        url=agent.url,
        description=agent.description,
        auth_type=agents_pb2.Agent.AuthType.Value(agent.auth_type),
        timeout_ms=agent.timeout_ms,
        retry_config=agents_pb2.RetryConfig(
            max_retries=agent.retry.max_retries,
            initial_delay_ms=agent.retry.initial_delay_ms,
            max_delay_ms=agent.retry.max_delay_ms,
            backoff_multiplier=agent.retry.backoff_multiplier,
        ),
        status=agents_pb2.Agent.Status.Value(agent.status),
        created_at=timestamp(agent.created_at),
        updated_at=timestamp(agent.updated_at),
        protocol=agents_pb2.Agent.Protocol.Value(agent.protocol),
        project_id=str(agent.project_id),
    )


class AgentServicer(agents_pb2_grpc.AgentServiceServicer):
    """Translates AgentService RPCs to ``AgentService`` use cases."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    async def CreateAgent(
        self, request: agents_pb2.CreateAgentRequest, context: _Context
    ) -> agents_pb2.Agent:
        retry = request.retry_config
        spec = AgentSpec(
            name=request.name,
            url=request.url,
            description=request.description,
            auth_type=(
                agents_pb2.Agent.AuthType.Name(request.auth_type) if request.auth_type else "none"
            ),
            auth_config=(
                struct_to_dict(request.auth_config) if request.HasField("auth_config") else None
            ),
            timeout_ms=request.timeout_ms if request.HasField("timeout_ms") else 30000,
            protocol=(
                agents_pb2.Agent.Protocol.Name(request.protocol) if request.protocol else "a2a"
            ),
            retry=RetryPolicy(
                **{
                    name: present(retry, name)
                    for name in (
                        "max_retries",
                        "initial_delay_ms",
                        "max_delay_ms",
                        "backoff_multiplier",
                    )
                    if retry.HasField(name)
                }
            ),
        )
        agent = await self._service.create(caller().project_id, spec)
        return agent_to_proto(agent)

    async def ListAgents(
        self, request: agents_pb2.ListAgentsRequest, context: _Context
    ) -> agents_pb2.ListAgentsResponse:
        page = await self._service.list_page(
            caller().project_id,
            status=agents_pb2.Agent.Status.Name(request.status) if request.status else None,
            name=request.name or None,
            sort=Sort.parse(request.sort_by, request.sort_order),
            page=page_request(request),
        )
        return agents_pb2.ListAgentsResponse(
            items=[agent_to_proto(a) for a in page.items],
            **page_fields(page),
        )

    async def GetAgent(
        self, request: agents_pb2.GetAgentRequest, context: _Context
    ) -> agents_pb2.Agent:
        agent = await self._service.get(
            caller().project_id, parse_uuid(request.agent_id, "agent_id")
        )
        return agent_to_proto(agent)

    async def UpdateAgent(
        self, request: agents_pb2.UpdateAgentRequest, context: _Context
    ) -> agents_pb2.Agent:
        retry = request.retry_config

        changes = AgentChanges(
            url=present(request, "url"),
            description=present(request, "description"),
            auth_type=(
                agents_pb2.Agent.AuthType.Name(request.auth_type)
                if request.HasField("auth_type")
                else None
            ),
            auth_config=(
                struct_to_dict(request.auth_config) if request.HasField("auth_config") else None
            ),
            timeout_ms=present(request, "timeout_ms"),
            max_retries=present(retry, "max_retries"),
            initial_delay_ms=present(retry, "initial_delay_ms"),
            max_delay_ms=present(retry, "max_delay_ms"),
            backoff_multiplier=present(retry, "backoff_multiplier"),
            status=(
                agents_pb2.Agent.Status.Name(request.status) if request.HasField("status") else None
            ),
            protocol=(
                agents_pb2.Agent.Protocol.Name(request.protocol)
                if request.HasField("protocol")
                else None
            ),
        )
        agent = await self._service.update(
            caller().project_id, parse_uuid(request.agent_id, "agent_id"), changes
        )
        return agent_to_proto(agent)

    async def DeleteAgent(
        self, request: agents_pb2.DeleteAgentRequest, context: _Context
    ) -> agents_pb2.DeleteAgentResponse:
        await self._service.delete(caller().project_id, parse_uuid(request.agent_id, "agent_id"))
        return agents_pb2.DeleteAgentResponse(
            message=f"Agent '{request.agent_id}' deleted successfully"
        )

    async def CheckAgentHealth(
        self, request: agents_pb2.CheckAgentHealthRequest, context: _Context
    ) -> agents_pb2.CheckAgentHealthResponse:
        health = await self._service.check_health(
            caller().project_id, parse_uuid(request.agent_id, "agent_id")
        )
        return agents_pb2.CheckAgentHealthResponse(
            healthy=health.healthy,
            status_code=health.status_code,
            response_time_ms=health.response_time_ms,
            error=health.error,
        )
