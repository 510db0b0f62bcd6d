"""``client.access``: projects, API keys, the audit trail and who the caller is.

Every call but :meth:`Access.caller` needs an ``admin`` credential.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from baton.v1 import access_pb2, access_pb2_grpc
from baton_sdk._convert import optional_datetime, to_datetime
from baton_sdk._transport import Transport
from baton_sdk.paging import AsyncPager, rpc_listing

T = TypeVar("T")


class Role(enum.StrEnum):
    """What a caller may do; each role includes the ones before it."""

    VIEWER = "viewer"
    """Reads everything of its project."""
    EDITOR = "editor"
    """Also creates and changes agents, workflows and runs."""
    ADMIN = "admin"
    """Also manages projects, API keys and the audit trail."""


def _role(number: int) -> Role:
    return Role(access_pb2.Role.Name(access_pb2.Role.ValueType(number)))


@dataclass(frozen=True, kw_only=True)
class Project:
    """A tenant: the agents, workflows, runs and keys of one team or application.

    Attributes:
        id: Server-assigned UUID.
        name: Unique name.
        description: Human-readable description.
        created_at: When the project was created.
        proto: The ``baton.v1.Project`` message.
    """

    id: str
    name: str
    description: str
    created_at: datetime
    proto: access_pb2.Project = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: access_pb2.Project) -> Project:
        """Build from the contract's message."""
        return cls(
            id=message.id,
            name=message.name,
            description=message.description,
            created_at=to_datetime(message.created_at),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """An API key, without its secret.

    Attributes:
        id: Server-assigned UUID.
        name: Name, recorded as the actor of the calls made with the key.
        role: What the key may do.
        project_id: The project it acts in.
        prefix: The key's first characters, to recognise it.
        created_by: Who created it.
        created_at: When it was created.
        expires_at: When it stops working, or ``None``.
        last_used_at: When it was last used (to the minute), or ``None``.
        revoked_at: When it was revoked, or ``None``.
        proto: The ``baton.v1.ApiKey`` message.
    """

    id: str
    name: str
    role: Role
    project_id: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    proto: access_pb2.ApiKey = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: access_pb2.ApiKey) -> ApiKey:
        """Build from the contract's message."""
        return cls(
            id=message.id,
            name=message.name,
            role=_role(message.role),
            project_id=message.project_id,
            prefix=message.prefix,
            created_by=message.created_by,
            created_at=to_datetime(message.created_at),
            expires_at=optional_datetime(message, "expires_at"),
            last_used_at=optional_datetime(message, "last_used_at"),
            revoked_at=optional_datetime(message, "revoked_at"),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class CreatedApiKey:
    """A new key and its secret, which the server never shows again.

    Attributes:
        api_key: The key's description.
        secret: The key itself: pass it as ``connect(api_key=...)``.
    """

    api_key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One successful write.

    Attributes:
        id: Increasing id.
        created_at: When it happened.
        actor: Who made it (key name, JWT subject or ``anonymous``).
        actor_type: ``api_key``, ``jwt`` or ``anonymous``.
        role: The actor's role.
        project_id: The project it happened in.
        method: The RPC, e.g. ``baton.v1.AgentService/CreateAgent``.
        resource_type: ``agent``, ``workflow``, ``run``, ``project`` or ``api_key``.
        resource_id: The id of what was written.
        client_address: The client's address.
        proto: The ``baton.v1.AuditEvent`` message.
    """

    id: int
    created_at: datetime
    actor: str
    actor_type: str
    role: Role
    project_id: str
    method: str
    resource_type: str
    resource_id: str
    client_address: str
    proto: access_pb2.AuditEvent = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: access_pb2.AuditEvent) -> AuditEvent:
        """Build from the contract's message."""
        return cls(
            id=message.id,
            created_at=to_datetime(message.created_at),
            actor=message.actor,
            actor_type=message.actor_type,
            role=_role(message.role),
            project_id=message.project_id,
            method=message.method,
            resource_type=message.resource_type,
            resource_id=message.resource_id,
            client_address=message.client_address,
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who the server takes the caller to be.

    Attributes:
        identity: Key name, JWT subject or ``anonymous``.
        identity_type: ``api_key``, ``jwt`` or ``anonymous``.
        role: The caller's role.
        project: The project the caller acts in.
        auth_mode: ``open`` or ``required``.
    """

    identity: str
    identity_type: str
    role: Role
    project: Project
    auth_mode: str


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


class Access:
    """Projects, API keys and the audit trail. Reached as ``client.access``."""

    def __init__(self, transport: Transport) -> None:
        """Bind to a client's transport; use ``client.access`` instead."""
        self._transport = transport
        self._stub = access_pb2_grpc.AccessServiceStub(transport.channel)

    def _listing(
        self,
        method: Any,
        request: Callable[[int], Any],
        convert: Callable[[Any], T],
        key: Callable[[T], str],
        *,
        limit: int | None,
        timeout: float | None,
    ) -> AsyncPager[T]:
        return rpc_listing(
            self._transport, method, request, convert, key, limit=limit, timeout=timeout
        )

    async def caller(self, *, timeout: float | None = None) -> Caller:
        """Who the server takes this client to be (any role)."""
        reply = await self._transport.unary(
            self._stub.GetCaller, access_pb2.GetCallerRequest(), timeout=timeout, idempotent=True
        )
        return Caller(
            identity=reply.identity,
            identity_type=reply.identity_type,
            role=_role(reply.role),
            project=Project.from_proto(reply.project),
            auth_mode=reply.auth_mode,
        )

    async def create_project(
        self, *, name: str, description: str = "", timeout: float | None = None
    ) -> Project:
        """Create a project (name: lower-case letters, digits and ``-``).

        Raises:
            AlreadyExistsError: The name is taken (``PROJECT_NAME_TAKEN``).
        """
        reply = await self._transport.unary(
            self._stub.CreateProject,
            access_pb2.CreateProjectRequest(name=name, description=description),
            timeout=timeout,
            idempotent=False,
        )
        return Project.from_proto(reply)

    async def get_project(self, project_id: str, *, timeout: float | None = None) -> Project:
        """Fetch one project by id."""
        reply = await self._transport.unary(
            self._stub.GetProject,
            access_pb2.GetProjectRequest(project_id=project_id),
            timeout=timeout,
            idempotent=True,
        )
        return Project.from_proto(reply)

    def list_projects(
        self, *, page_size: int = 20, limit: int | None = None, timeout: float | None = None
    ) -> AsyncPager[Project]:
        """List projects by name."""
        return self._listing(
            self._stub.ListProjects,
            lambda number: access_pb2.ListProjectsRequest(page=number, page_size=page_size),
            Project.from_proto,
            lambda project: project.id,
            limit=limit,
            timeout=timeout,
        )

    async def create_key(
        self,
        *,
        name: str,
        role: Role | str,
        project_id: str | None = None,
        expires_at: datetime | None = None,
        timeout: float | None = None,
    ) -> CreatedApiKey:
        """Create an API key; its secret is in the result, and nowhere else ever again.

        Args:
            name: Name of the key, unique among the project's live keys.
            role: ``viewer``, ``editor`` or ``admin``.
            project_id: The project it acts in (default: the caller's).
            expires_at: When it stops working (default: never).
            timeout: Deadline of this call in seconds.
        """
        request = access_pb2.CreateApiKeyRequest(
            name=name, role=access_pb2.Role.Value(Role(role).value), project_id=project_id or ""
        )
        if expires_at is not None:
            request.expires_at.CopyFrom(_timestamp(expires_at))
        reply = await self._transport.unary(
            self._stub.CreateApiKey, request, timeout=timeout, idempotent=False
        )
        return CreatedApiKey(api_key=ApiKey.from_proto(reply.api_key), secret=reply.secret)

    async def get_key(self, key_id: str, *, timeout: float | None = None) -> ApiKey:
        """Fetch one API key (never its secret)."""
        reply = await self._transport.unary(
            self._stub.GetApiKey,
            access_pb2.GetApiKeyRequest(key_id=key_id),
            timeout=timeout,
            idempotent=True,
        )
        return ApiKey.from_proto(reply)

    def list_keys(
        self,
        *,
        project_id: str | None = None,
        include_revoked: bool = False,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[ApiKey]:
        """List API keys, newest first."""
        return self._listing(
            self._stub.ListApiKeys,
            lambda number: access_pb2.ListApiKeysRequest(
                page=number,
                page_size=page_size,
                project_id=project_id or "",
                include_revoked=include_revoked,
            ),
            ApiKey.from_proto,
            lambda key: key.id,
            limit=limit,
            timeout=timeout,
        )

    async def revoke_key(self, key_id: str, *, timeout: float | None = None) -> ApiKey:
        """Revoke an API key; every server refuses it within a second."""
        reply = await self._transport.unary(
            self._stub.RevokeApiKey,
            access_pb2.RevokeApiKeyRequest(key_id=key_id),
            timeout=timeout,
            idempotent=True,
        )
        return ApiKey.from_proto(reply)

    def audit_events(
        self,
        *,
        actor: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        project_id: str | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[AuditEvent]:
        """List audit events, newest first, filtered."""
        return self._listing(
            self._stub.ListAuditEvents,
            lambda number: access_pb2.ListAuditEventsRequest(
                page=number,
                page_size=page_size,
                actor=actor or "",
                resource_type=resource_type or "",
                resource_id=resource_id or "",
                project_id=project_id or "",
            ),
            AuditEvent.from_proto,
            lambda event: str(event.id),
            limit=limit,
            timeout=timeout,
        )
