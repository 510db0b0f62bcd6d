"""Assembles the gRPC server: services by domain, the shared interceptor, health, reflection."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import aiohttp
import asyncpg
import grpc
import redis.asyncio as redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import (
    access_pb2,
    access_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    schedules_pb2,
    schedules_pb2_grpc,
    stats_pb2,
    stats_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from baton_server import tracing
from baton_server.access.audit import AuditLog
from baton_server.access.authenticator import Authenticator
from baton_server.access.guard import AccessGuard
from baton_server.access.ratelimit import RateLimiter
from baton_server.access.rules import method_rules
from baton_server.access.service import AccessService
from baton_server.access.servicer import AccessServicer
from baton_server.access.tokens import JwtVerifier
from baton_server.agents.client import AgentClient
from baton_server.agents.service import AgentService
from baton_server.agents.servicer import AgentServicer
from baton_server.config import AccessSettings
from baton_server.db.pool import create_pool
from baton_server.events.hub import EventHub
from baton_server.events.publisher import EventPublisher
from baton_server.limits import MAX_GRPC_RECEIVE_BYTES
from baton_server.rpc.interceptor import ErrorMappingInterceptor
from baton_server.rpc.metrics import MetricsInterceptor
from baton_server.runs.dispatch import Dispatcher
from baton_server.runs.service import RunService
from baton_server.runs.servicer import RunServicer
from baton_server.runs.watch import WatchService
from baton_server.schedules.service import ScheduleService
from baton_server.schedules.servicer import ScheduleServicer
from baton_server.sealing import SecretBox
from baton_server.stats.service import StatsService
from baton_server.stats.servicer import StatsServicer
from baton_server.step_tests.service import StepTestService
from baton_server.system.service import SystemService
from baton_server.system.servicer import SystemServicer
from baton_server.usage.service import ModelPriceService
from baton_server.usage.servicer import ModelPriceServicer
from baton_server.webhooks.delivery import allow_private_default
from baton_server.webhooks.service import WebhookService
from baton_server.webhooks.servicer import WebhookServicer
from baton_server.workflows.service import WorkflowService
from baton_server.workflows.servicer import WorkflowServicer

log = logging.getLogger(__name__)

CONTRACT_MODULES = (
    access_pb2,
    agents_pb2,
    workflows_pb2,
    runs_pb2,
    system_pb2,
    webhooks_pb2,
    schedules_pb2,
    usage_pb2,
    stats_pb2,
)
SERVICE_NAMES = (
    access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    runs_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    system_pb2.DESCRIPTOR.services_by_name["SystemService"].full_name,
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    schedules_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    usage_pb2.DESCRIPTOR.services_by_name["ModelPriceService"].full_name,
    stats_pb2.DESCRIPTOR.services_by_name["StatsService"].full_name,
)

_SERVER_OPTIONS = [
    # grpc.aio defaults to SO_REUSEPORT: a second server would bind the same port
    # silently and take half the calls. Fail instead.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_GRPC_RECEIVE_BYTES),
]


class PortInUseError(RuntimeError):
    """The gRPC port is already bound by another process."""


@dataclass
class GrpcApp:
    """A started gRPC server and what it owns."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    agent_http: aiohttp.ClientSession
    pool: asyncpg.Pool
    hub: EventHub
    publisher: EventPublisher
    system: SystemService
    authenticator: Authenticator
    audit: AuditLog

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)
        self.system.set_serving(serving)

    async def stop(self, grace: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)
        await self.hub.stop()
        await self.publisher.stop()
        await self.audit.stop()
        await self.authenticator.stop()
        await self.agent_http.close()
        await self.pool.close()


async def start_grpc(
    engine: AsyncEngine,
    redis_client: redis.Redis,
    address: str,
    *,
    secrets: SecretBox,
    access: AccessSettings | None = None,
    allow_private_targets: bool | None = None,
) -> GrpcApp:
    """Bind ``address`` and start serving, reporting NOT_SERVING until told otherwise.

    ``access`` defaults to an open server (no credential needed) with rate limits.
    ``allow_private_targets`` (webhook and callback URLs) defaults to
    ``BATON_WEBHOOK_ALLOW_PRIVATE``, else to whether the server is open.
    """
    access = access or AccessSettings()
    authenticator = Authenticator(engine, JwtVerifier(access.jwt) if access.jwt else None)
    audit = AuditLog(engine)
    limiter = RateLimiter(redis_client, window_s=access.rate_window_s)
    guard = AccessGuard(access, authenticator, limiter if access.rate_limits else None, audit)
    rules = method_rules(module.DESCRIPTOR for module in CONTRACT_MODULES)
    # Tracing (when on) and metrics first (outermost): they see what the client finally
    # gets.
    server = grpc.aio.server(
        interceptors=[
            *tracing.server_interceptors(),
            MetricsInterceptor(),
            ErrorMappingInterceptor(guard, rules),
        ],
        options=_SERVER_OPTIONS,
    )
    # Runs take the hot path on plain asyncpg (see baton_server.db.pool); connections
    # are opened on demand, so the server starts before PostgreSQL accepts them.
    pool = await create_pool(
        engine.url.render_as_string(hide_password=False), min_size=0, max_size=10
    )
    access_pb2_grpc.add_AccessServiceServicer_to_server(
        AccessServicer(AccessService(engine, audit), access), server
    )
    # Agent calls of step tests and health probes, over the same HTTP stack as the
    # worker's.
    agent_http = aiohttp.ClientSession()
    agents_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentServicer(AgentService(engine, agent_http, secrets)), server
    )
    step_tests = StepTestService(pool, secrets, AgentClient(agent_http))
    workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(
        WorkflowServicer(WorkflowService(engine), step_tests), server
    )
    hub = EventHub(redis_client)
    publisher = EventPublisher(redis_client)
    if allow_private_targets is None:
        allow_private_targets = allow_private_default(
            access.mode, os.environ.get("BATON_WEBHOOK_ALLOW_PRIVATE")
        )
    webhooks = WebhookService(pool, secrets, allow_private=allow_private_targets)
    webhooks_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(webhooks), server)
    runs = RunService(pool, Dispatcher(redis_client), publisher)
    runs_pb2_grpc.add_RunServiceServicer_to_server(
        RunServicer(runs, WatchService(pool, hub), webhooks), server
    )
    schedules_pb2_grpc.add_ScheduleServiceServicer_to_server(
        ScheduleServicer(ScheduleService(pool, runs)), server
    )
    usage_pb2_grpc.add_ModelPriceServiceServicer_to_server(
        ModelPriceServicer(ModelPriceService(pool)), server
    )
    stats_pb2_grpc.add_StatsServiceServicer_to_server(StatsServicer(StatsService(pool)), server)
    system = SystemService(engine, redis_client, SERVICE_NAMES)
    system_pb2_grpc.add_SystemServiceServicer_to_server(SystemServicer(system), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        await agent_http.close()
        await pool.close()
        raise PortInUseError(f"cannot listen on {address}: the port is in use") from error
    hub.start()
    publisher.start()
    audit.start()
    app = GrpcApp(
        server=server,
        port=port,
        health=health_servicer,
        agent_http=agent_http,
        pool=pool,
        hub=hub,
        publisher=publisher,
        system=system,
        authenticator=authenticator,
        audit=audit,
    )
    await app.set_serving(False)
    await server.start()
    log.info("gRPC listening on port %d", port)
    return app
