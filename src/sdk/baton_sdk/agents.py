"""``client.agents``: register and manage the agents that execute workflow steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from baton.v1 import agents_pb2, agents_pb2_grpc
from baton_sdk._convert import parse_mapping, to_struct
from baton_sdk._transport import Transport
from baton_sdk.models import Agent, AgentHealth, AgentProtocol, AgentStatus, AuthType, RetryConfig
from baton_sdk.paging import AsyncPager, Page, SortOrder, numbered_pages

AgentSortField = Literal["name", "created_at", "updated_at"]
"""Fields agents can be sorted by."""


def _agent_id(agent: str | Agent) -> str:
    """Return the id of ``agent`` (an :class:`Agent` or an id)."""
    return agent.id if isinstance(agent, Agent) else agent


def _retry_config_proto(config: RetryConfig | Mapping[str, Any]) -> agents_pb2.RetryConfig:
    """Return ``config`` as the contract's message; a mapping sets only its keys."""
    if isinstance(config, RetryConfig):
        return config.to_proto()
    return parse_mapping(config, agents_pb2.RetryConfig(), "retry_config")


class Agents:
    """Agents: external services (A2A or plain HTTP) that execute workflow steps.

    Reached as ``client.agents``.
    """

    def __init__(self, transport: Transport) -> None:
        """Bind to a client's transport; use ``client.agents`` instead."""
        self._transport = transport
        self._stub = agents_pb2_grpc.AgentServiceStub(transport.channel)

    async def create(
        self,
        *,
        name: str,
        url: str,
        description: str = "",
        auth_type: AuthType | None = None,
        auth_config: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retry_config: RetryConfig | Mapping[str, Any] | None = None,
        protocol: AgentProtocol | None = None,
        timeout: float | None = None,
    ) -> Agent:
        """Register an agent.

        Args:
            name: Unique name (1-255 characters); workflow steps refer to it.
            url: Base URL of the agent (``http`` or ``https``).
            description: Human-readable description.
            auth_type: How Baton authenticates to the agent (default ``none``).
            auth_config: Credentials for ``auth_type``: ``{"token": ...}`` for bearer,
                ``{"key": ..., "header": ...}`` for apikey. Write-only: never returned.
            timeout_ms: Timeout of one call to the agent, 1000-300000 (default 30000).
            retry_config: Retry policy; keys absent from a mapping take their defaults.
            protocol: How Baton talks to the agent (default ``a2a``).
            timeout: Deadline of this call in seconds (default: the client's).

        Returns:
            The registered agent.

        Raises:
            AlreadyExistsError: Another agent has the name (``AGENT_NAME_TAKEN``).
            InvalidArgumentError: A field breaks a rule; ``field_violations`` says which.
        """
        request = agents_pb2.CreateAgentRequest(name=name, url=url, description=description)
        if auth_type is not None:
            request.auth_type = agents_pb2.Agent.AuthType.Value(AuthType(auth_type).value)
        if auth_config is not None:
            request.auth_config.CopyFrom(to_struct(auth_config))
        if timeout_ms is not None:
            request.timeout_ms = timeout_ms
        if retry_config is not None:
            request.retry_config.CopyFrom(_retry_config_proto(retry_config))
        if protocol is not None:
            request.protocol = agents_pb2.Agent.Protocol.Value(AgentProtocol(protocol).value)
        reply = await self._transport.unary(
            self._stub.CreateAgent, request, timeout=timeout, idempotent=False
        )
        return Agent.from_proto(reply)

    def list(
        self,
        *,
        status: AgentStatus | None = None,
        name: str | None = None,
        sort_by: AgentSortField | None = None,
        sort_order: SortOrder | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[Agent]:
        """List agents, newest first unless sorted otherwise.

        Args:
            status: Only agents with this status; by default every agent that is not
                deleted (``AgentStatus.DELETED`` lists only deleted ones).
            name: Only the agent with exactly this name.
            sort_by: ``name``, ``created_at`` (default) or ``updated_at``.
            sort_order: ``asc`` or ``desc`` (default).
            page_size: Agents fetched per call, 1-100.
            limit: Stop after this many agents.
            timeout: Deadline of each page's call in seconds.

        Returns:
            An async iterable over the agents, fetching pages as needed.
        """
        request = agents_pb2.ListAgentsRequest(
            page_size=min(page_size, limit) if limit else page_size,
            name=name or "",
            sort_by=sort_by or "",
            sort_order=sort_order or "",
        )
        if status is not None:
            request.status = agents_pb2.Agent.Status.Value(AgentStatus(status).value)

        async def fetch(number: int) -> Page[Agent]:
            paged = agents_pb2.ListAgentsRequest()
            paged.CopyFrom(request)
            paged.page = number
            reply = await self._transport.unary(
                self._stub.ListAgents, paged, timeout=timeout, idempotent=True
            )
            return Page(
                items=tuple(Agent.from_proto(item) for item in reply.items),
                page=reply.page,
                page_size=reply.page_size,
                total=reply.total,
                total_pages=reply.total_pages,
            )

        return AsyncPager(lambda: numbered_pages(fetch), key=lambda agent: agent.id, limit=limit)

    async def get(self, agent: str | Agent, *, timeout: float | None = None) -> Agent:
        """Fetch one agent, including a deleted one.

        Args:
            agent: The agent or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The agent.

        Raises:
            NotFoundError: No agent has this id (``AGENT_NOT_FOUND``).
        """
        request = agents_pb2.GetAgentRequest(agent_id=_agent_id(agent))
        reply = await self._transport.unary(
            self._stub.GetAgent, request, timeout=timeout, idempotent=True
        )
        return Agent.from_proto(reply)

    async def find(self, name: str, *, timeout: float | None = None) -> Agent | None:
        """Fetch the agent (not deleted) with this name.

        Args:
            name: The agent's exact name.
            timeout: Deadline of this call in seconds.

        Returns:
            The agent, or ``None`` when no agent that is not deleted has the name.
        """
        # Names are unique among agents that are not deleted, so one page suffices.
        async for found in self.list(name=name, limit=1, timeout=timeout):
            return found
        return None

    async def update(
        self,
        agent: str | Agent,
        *,
        url: str | None = None,
        description: str | None = None,
        auth_type: AuthType | None = None,
        auth_config: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retry_config: RetryConfig | Mapping[str, Any] | None = None,
        status: AgentStatus | None = None,
        protocol: AgentProtocol | None = None,
        timeout: float | None = None,
    ) -> Agent:
        """Change some fields of an agent; arguments left ``None`` keep their values.

        Args:
            agent: The agent or its id.
            url: New base URL.
            description: New description.
            auth_type: New authentication type.
            auth_config: New credentials (replace the stored ones as a whole).
            timeout_ms: New call timeout in milliseconds.
            retry_config: Retry fields to change: a mapping changes only its keys, a
                :class:`RetryConfig` sets every field.
            status: New status.
            protocol: New protocol.
            timeout: Deadline of this call in seconds.

        Returns:
            The updated agent.

        Raises:
            NotFoundError: No agent has this id.
            FailedPreconditionError: The agent is deleted (``AGENT_DELETED``).
            InvalidArgumentError: A field breaks a rule.
        """
        request = agents_pb2.UpdateAgentRequest(agent_id=_agent_id(agent))
        if url is not None:
            request.url = url
        if description is not None:
            request.description = description
        if auth_type is not None:
            request.auth_type = agents_pb2.Agent.AuthType.Value(AuthType(auth_type).value)
        if auth_config is not None:
            request.auth_config.CopyFrom(to_struct(auth_config))
        if timeout_ms is not None:
            request.timeout_ms = timeout_ms
        if retry_config is not None:
            request.retry_config.CopyFrom(_retry_config_proto(retry_config))
        if status is not None:
            request.status = agents_pb2.Agent.Status.Value(AgentStatus(status).value)
        if protocol is not None:
            request.protocol = agents_pb2.Agent.Protocol.Value(AgentProtocol(protocol).value)
        reply = await self._transport.unary(
            self._stub.UpdateAgent, request, timeout=timeout, idempotent=False
        )
        return Agent.from_proto(reply)

    async def delete(self, agent: str | Agent, *, timeout: float | None = None) -> None:
        """Soft-delete an agent (status ``deleted``); deleting it again succeeds.

        Args:
            agent: The agent or its id.
            timeout: Deadline of this call in seconds.

        Raises:
            NotFoundError: No agent has this id.
        """
        request = agents_pb2.DeleteAgentRequest(agent_id=_agent_id(agent))
        await self._transport.unary(
            self._stub.DeleteAgent, request, timeout=timeout, idempotent=True
        )

    async def check_health(
        self, agent: str | Agent, *, timeout: float | None = None
    ) -> AgentHealth:
        """Probe an agent (its ``/health``, else its A2A agent card).

        An unreachable agent is a normal answer (``healthy=False`` with the error).

        Args:
            agent: The agent or its id.
            timeout: Deadline of this call in seconds; the probe itself is bounded by
                the agent's ``timeout_ms``.

        Returns:
            The outcome of the probe.

        Raises:
            NotFoundError: No agent has this id.
        """
        request = agents_pb2.CheckAgentHealthRequest(agent_id=_agent_id(agent))
        reply = await self._transport.unary(
            self._stub.CheckAgentHealth, request, timeout=timeout, idempotent=True
        )
        return AgentHealth.from_proto(reply)
