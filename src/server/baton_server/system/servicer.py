"""``baton.v1.SystemService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2

from baton.v1 import system_pb2, system_pb2_grpc
from baton_server.access.context import answer_with_status
from baton_server.rpc.convert import timestamp
from baton_server.system.service import Check, SystemService

_Context = grpc.aio.ServicerContext[Any, Any]
#: REST answers "not ready" with 503 (and the same body); gRPC has no such notion.
#: The Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def check_to_proto(check: Check) -> system_pb2.DependencyCheck:
    message = system_pb2.DependencyCheck(
        status=(
            system_pb2.DependencyCheck.healthy
            if check.healthy
            else system_pb2.DependencyCheck.unhealthy
        ),
        message=check.message,
    )
    if check.response_time_ms is not None:
        message.response_time_ms = check.response_time_ms
    return message


class SystemServicer(system_pb2_grpc.SystemServiceServicer):
    """Translates SystemService RPCs to ``SystemService`` calls."""

    def __init__(self, service: SystemService) -> None:
        self._service = service

    async def GetHealth(
        self, request: system_pb2.GetHealthRequest, context: _Context
    ) -> system_pb2.GetHealthResponse:
        health = self._service.health()
        return system_pb2.GetHealthResponse(
            status="healthy",
            timestamp=timestamp(health.timestamp),
            version=health.version,
            uptime_seconds=health.uptime_seconds,
            services=health.services,
        )

    async def GetReadiness(
        self, request: system_pb2.GetReadinessRequest, context: _Context
    ) -> system_pb2.GetReadinessResponse:
        readiness = await self._service.readiness()
        if not readiness.ready:
            answer_with_status(503)
        return system_pb2.GetReadinessResponse(
            ready=readiness.ready,
            timestamp=timestamp(readiness.timestamp),
            checks={name: check_to_proto(c) for name, c in readiness.checks.items()},
        )

    async def GetMetrics(
        self, request: system_pb2.GetMetricsRequest, context: _Context
    ) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(
            content_type=METRICS_CONTENT_TYPE, data=await self._service.metrics()
        )
