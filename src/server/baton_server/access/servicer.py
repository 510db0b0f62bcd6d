"""``baton.v1.AccessService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

from typing import Any

import grpc

from baton.v1 import access_pb2, access_pb2_grpc
from baton_server.access.context import caller
from baton_server.access.model import ApiKey, AuditEvent, Project, Role
from baton_server.access.service import AccessService
from baton_server.config import AccessSettings
from baton_server.rpc.convert import (
    filter_uuid,
    optional_datetime,
    page_fields,
    page_request,
    parse_uuid,
    timestamp,
)

_Context = grpc.aio.ServicerContext[Any, Any]


def project_to_proto(project: Project) -> access_pb2.Project:
    return access_pb2.Project(
        id=str(project.id),
        name=project.name,
        description=project.description,
        created_at=timestamp(project.created_at),
    )


def key_to_proto(key: ApiKey) -> access_pb2.ApiKey:
    message = access_pb2.ApiKey(
        id=str(key.id),
        name=key.name,
        role=access_pb2.Role.Value(key.role.name),
        project_id=str(key.project_id),
        prefix=key.prefix,
        created_at=timestamp(key.created_at),
        created_by=key.created_by,
    )
    for name in ("expires_at", "last_used_at", "revoked_at"):
        value = getattr(key, name)
        if value is not None:
            getattr(message, name).CopyFrom(timestamp(value))
    return message


def audit_event_to_proto(event: AuditEvent) -> access_pb2.AuditEvent:
    return access_pb2.AuditEvent(
        id=event.id,
        created_at=timestamp(event.created_at),
        actor=event.actor,
        actor_type=event.actor_type,
        role=access_pb2.Role.Value(event.role.name),
        project_id=str(event.project_id),
        method=event.method,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        client_address=event.client_address,
    )


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    """Translates AccessService RPCs to ``AccessService`` use cases."""

    def __init__(self, service: AccessService, settings: AccessSettings) -> None:
        self._service = service
        self._settings = settings

    async def CreateProject(
        self, request: access_pb2.CreateProjectRequest, context: _Context
    ) -> access_pb2.Project:
        project = await self._service.create_project(request.name, request.description)
        return project_to_proto(project)

    async def ListProjects(
        self, request: access_pb2.ListProjectsRequest, context: _Context
    ) -> access_pb2.ListProjectsResponse:
        page = await self._service.list_projects(page_request(request))
        return access_pb2.ListProjectsResponse(
            items=[project_to_proto(p) for p in page.items],
            **page_fields(page),
        )

    async def GetProject(
        self, request: access_pb2.GetProjectRequest, context: _Context
    ) -> access_pb2.Project:
        project = await self._service.project(parse_uuid(request.project_id, "project_id"))
        return project_to_proto(project)

    async def CreateApiKey(
        self, request: access_pb2.CreateApiKeyRequest, context: _Context
    ) -> access_pb2.CreateApiKeyResponse:
        key, secret = await self._service.create_key(
            caller(),
            name=request.name,
            role=Role(request.role),
            project_id=(
                parse_uuid(request.project_id, "project_id") if request.project_id else None
            ),
            expires_at=optional_datetime(request, "expires_at"),
        )
        return access_pb2.CreateApiKeyResponse(api_key=key_to_proto(key), secret=secret)

    async def ListApiKeys(
        self, request: access_pb2.ListApiKeysRequest, context: _Context
    ) -> access_pb2.ListApiKeysResponse:
        page = await self._service.list_keys(
            project_id=filter_uuid(request.project_id),
            include_revoked=request.include_revoked,
            page=page_request(request),
        )
        return access_pb2.ListApiKeysResponse(
            items=[key_to_proto(k) for k in page.items],
            **page_fields(page),
        )

    async def GetApiKey(
        self, request: access_pb2.GetApiKeyRequest, context: _Context
    ) -> access_pb2.ApiKey:
        return key_to_proto(await self._service.key(parse_uuid(request.key_id, "key_id")))

    async def RevokeApiKey(
        self, request: access_pb2.RevokeApiKeyRequest, context: _Context
    ) -> access_pb2.ApiKey:
        key = await self._service.revoke_key(caller(), parse_uuid(request.key_id, "key_id"))
        return key_to_proto(key)

    async def ListAuditEvents(
        self, request: access_pb2.ListAuditEventsRequest, context: _Context
    ) -> access_pb2.ListAuditEventsResponse:
        page = await self._service.audit_events(
            actor=request.actor or None,
            resource_type=request.resource_type or None,
            resource_id=request.resource_id or None,
            project_id=filter_uuid(request.project_id),
            created_after=optional_datetime(request, "created_after"),
            created_before=optional_datetime(request, "created_before"),
            page=page_request(request),
        )
        return access_pb2.ListAuditEventsResponse(
            items=[audit_event_to_proto(e) for e in page.items],
            **page_fields(page),
        )

    async def GetCaller(
        self, request: access_pb2.GetCallerRequest, context: _Context
    ) -> access_pb2.Caller:
        identity = caller()
        project = await self._service.project(identity.project_id)
        return access_pb2.Caller(
            identity=identity.name,
            identity_type=identity.type.value,
            role=access_pb2.Role.Value(identity.role.name),
            project=project_to_proto(project),
            auth_mode=self._settings.mode,
        )
