"""Access control through real PostgreSQL, Redis and Envoy: every RPC against every kind
of caller (gRPC and REST), projects as tenants, revocation, JWTs, rate limits, the
audit trail and secrets at rest."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import jwt
import pytest
import redis.asyncio as redis
import sqlalchemy as sa
from google.api import annotations_pb2
from google.protobuf import json_format, message_factory, struct_pb2
from google.protobuf.descriptor import MethodDescriptor
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import (
    access_pb2,
    access_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from baton_server.access.model import Role
from baton_server.access.ratelimit import UNAVAILABLE, RateLimiter
from baton_server.access.tokens import JwtSettings
from baton_server.app import CONTRACT_MODULES, GrpcApp, start_grpc
from baton_server.config import AccessSettings
from baton_server.db.tables import agents as agents_table
from baton_server.db.tables import metadata
from baton_server.executor.worker import Worker
from tests.access_support import TEST_SECRETS, make_key, make_project
from tests.rest_support import RestProxy, error_of, start_envoy
from tests.rpc_errors import failure
from tests.runs_support import chain, create_workflow, register_agent

JWT_SECRET = "a-test-secret-of-sufficient-length-for-hs256"
_Stubs = tuple[
    "agents_pb2_grpc.AgentServiceAsyncStub",
    "workflows_pb2_grpc.WorkflowServiceAsyncStub",
    "runs_pb2_grpc.RunServiceAsyncStub",
]


@dataclass
class Secured:
    """A server with ``--auth required`` and JWTs, with Envoy in front."""

    app: GrpcApp
    proxy: RestProxy

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"


async def _secured(
    engine: AsyncEngine, redis_client: redis.Redis, **overrides: Any
) -> tuple[GrpcApp, RestProxy]:
    settings = AccessSettings(mode="required", jwt=JwtSettings(secret=JWT_SECRET), **overrides)
    app = await start_grpc(
        engine, redis_client, "127.0.0.1:0", secrets=TEST_SECRETS, access=settings
    )
    await app.set_serving(True)
    return app, await start_envoy(app.port)


@pytest.fixture(scope="module")
async def secured(engine: AsyncEngine, redis_client: redis.Redis) -> AsyncIterator[Secured]:
    app, proxy = await _secured(engine, redis_client)
    yield Secured(app, proxy)
    await proxy.envoy.stop()
    await app.stop(grace=1)


def token(**claims: Any) -> str:
    payload = {"sub": "ci-bot", "exp": datetime.now(UTC) + timedelta(minutes=5), **claims}
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


def key_metadata(secret: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", secret),)


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


# -- the matrix ------------------------------------------------------------------------


def _methods() -> list[tuple[str, MethodDescriptor]]:
    found: list[tuple[str, MethodDescriptor]] = []
    for module in CONTRACT_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend((f"/{service.full_name}/{m.name}", m) for m in service.methods)
    return found


METHODS = _methods()


def _rule(method: MethodDescriptor) -> access_pb2.AccessRule:
    return method.GetOptions().Extensions[access_pb2.access]


def test_every_rpc_of_the_contract_declares_who_may_call_it() -> None:
    for path, method in METHODS:
        rule = _rule(method)
        assert rule.public or rule.role != access_pb2.ROLE_UNSPECIFIED, path
    public = {path for path, method in METHODS if _rule(method).public}
    assert public == {
        "/baton.v1.SystemService/GetHealth",
        "/baton.v1.SystemService/GetReadiness",
    }


@dataclass(frozen=True)
class Caller:
    """One kind of caller and the metadata it sends."""

    name: str
    metadata: tuple[tuple[str, str], ...]
    role: Role | None  # None: not authenticated
    reason: str = ""  # the UNAUTHENTICATED reason expected


async def _callers(engine: AsyncEngine) -> list[Caller]:
    other = await make_project(engine, f"other-{uuid.uuid4().hex[:6]}")
    revoked = await make_key(engine, Role.admin, name="revoked")
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE api_keys SET revoked_at = now() WHERE name = 'revoked'"))
    expired = await make_key(engine, Role.admin, name="expired")
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE name = 'expired'"
            )
        )
    forged = jwt.encode(
        {"sub": "mallory", "role": "admin", "exp": datetime.now(UTC) + timedelta(minutes=5)},
        "not-the-secret-at-all-but-long-enough",
        algorithm="HS256",
    )
    return [
        Caller("anonymous", (), None, "CREDENTIAL_MISSING"),
        Caller("viewer", key_metadata(await make_key(engine, Role.viewer)), Role.viewer),
        Caller("editor", bearer(await make_key(engine, Role.editor)), Role.editor),
        Caller("admin", key_metadata(await make_key(engine, Role.admin)), Role.admin),
        Caller(
            "other project",
            key_metadata(await make_key(engine, Role.editor, project_id=other)),
            Role.editor,
        ),
        Caller("revoked", key_metadata(revoked), None, "API_KEY_REVOKED"),
        Caller("expired", key_metadata(expired), None, "API_KEY_EXPIRED"),
        Caller("bad jwt", bearer(forged), None, "JWT_BAD_SIGNATURE"),
        Caller("garbage", bearer("not-a-credential"), None, "CREDENTIAL_INVALID"),
        Caller("jwt viewer", bearer(token(role="viewer")), Role.viewer),
    ]


async def _row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: (
                await conn.execute(sa.select(sa.func.count()).select_from(table))
            ).scalar_one()
            for table in metadata.sorted_tables
            if table.name != "audit_events"
        }


async def _call_grpc(
    channel: grpc.aio.Channel, path: str, method: MethodDescriptor, caller: Caller
) -> tuple[grpc.StatusCode, str, str]:
    """The call's status code, ErrorInfo reason and message."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(
                request_class(), metadata=caller.metadata, timeout=0.5
            )
            async for _ in stream:
                break
            stream.cancel()
        else:
            await channel.unary_unary(path, **kwargs)(
                request_class(), metadata=caller.metadata, timeout=5
            )
    except grpc.aio.AioRpcError as error:
        denied = error.code() in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        )
        return error.code(), failure(error).reason if denied else "", error.details() or ""
    return grpc.StatusCode.OK, "", ""


def _expected_denial(method: MethodDescriptor, caller: Caller) -> grpc.StatusCode | None:
    rule = _rule(method)
    if rule.public:
        return None
    if caller.role is None:
        return grpc.StatusCode.UNAUTHENTICATED
    if caller.role < Role(rule.role):
        return grpc.StatusCode.PERMISSION_DENIED
    return None


async def test_every_rpc_answers_every_kind_of_caller_as_documented(
    secured: Secured, engine: AsyncEngine
) -> None:
    callers = await _callers(engine)
    before = await _row_counts(engine)
    async with grpc.aio.insecure_channel(secured.target) as channel:
        for path, method in METHODS:
            for caller in callers:
                code, reason, message = await _call_grpc(channel, path, method, caller)
                denied = _expected_denial(method, caller)
                if denied == grpc.StatusCode.UNAUTHENTICATED:
                    assert (code, reason) == (denied, caller.reason), (path, caller.name)
                elif denied == grpc.StatusCode.PERMISSION_DENIED:
                    assert (code, reason) == (denied, "ROLE_INSUFFICIENT"), (path, caller.name)
                    assert f"needs the {Role(_rule(method).role).name} role" in message
                else:
                    assert code not in (
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.INTERNAL,
                        grpc.StatusCode.UNKNOWN,
                    ), (path, caller.name, code)
    # Empty requests are invalid for every write, so nothing may have changed at all.
    assert await _row_counts(engine) == before


def _rest_routes() -> list[tuple[str, str, MethodDescriptor]]:
    routes = []
    for _, method in METHODS:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for verb in ("get", "post", "put", "delete"):
            template = getattr(rule, verb)
            if template:
                path = template
                for name in ("agent_id", "workflow_id", "run_id", "key_id", "project_id"):
                    path = path.replace("{" + name + "}", str(uuid.uuid4()))
                routes.append((verb.upper(), path, method))
    return routes


async def test_every_rest_route_answers_every_kind_of_caller_as_documented(
    secured: Secured, engine: AsyncEngine
) -> None:
    callers = await _callers(engine)
    before = await _row_counts(engine)
    statuses = {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403}
    async with httpx.AsyncClient(base_url=secured.proxy.url, timeout=5) as client:
        for verb, path, method in _rest_routes():
            for caller in callers:
                headers = dict(caller.metadata)
                body: dict[str, Any] | None = {} if verb in ("POST", "PUT") else None
                try:
                    async with client.stream(verb, path, headers=headers, json=body) as response:
                        status = response.status_code
                        if status >= 400:
                            await response.aread()
                except httpx.ReadTimeout:
                    status = 200  # an event stream that stays open: admitted
                denied = _expected_denial(method, caller)
                if denied is not None:
                    assert status == statuses[denied], (verb, path, caller.name, status)
                    found = error_of(response)
                    assert found["reason"] == (caller.reason or "ROLE_INSUFFICIENT")
                else:
                    assert status not in (401, 403, 500), (verb, path, caller.name, status)
    assert await _row_counts(engine) == before


# -- projects as tenants ---------------------------------------------------------------


def _stubs(channel: grpc.aio.Channel) -> _Stubs:
    return (
        agents_pb2_grpc.AgentServiceStub(channel),
        workflows_pb2_grpc.WorkflowServiceStub(channel),
        runs_pb2_grpc.RunServiceStub(channel),
    )


async def _expect(code: grpc.StatusCode, call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value


async def test_another_projects_resources_are_invisible_and_untouchable(
    secured: Secured, engine: AsyncEngine, worker: Worker, echo_agent_url: str
) -> None:
    project_a = await make_project(engine, "team-a")
    project_b = await make_project(engine, "team-b")
    a = key_metadata(await make_key(engine, Role.editor, name="alice", project_id=project_a))
    b = key_metadata(await make_key(engine, Role.editor, name="bob", project_id=project_b))
    async with grpc.aio.insecure_channel(secured.target) as channel:
        agents, workflows, runs = _stubs(channel)
        created = await agents.CreateAgent(
            agents_pb2.CreateAgentRequest(name="echo", url=echo_agent_url), metadata=a
        )
        assert created.project_id == str(project_a)
        # Names are unique per project: B may use the same name.
        theirs = await agents.CreateAgent(
            agents_pb2.CreateAgentRequest(name="echo", url=echo_agent_url), metadata=b
        )
        assert theirs.id != created.id
        workflow = await create_workflow(workflows, chain(("only", "echo", {})), metadata=a)
        run = await runs.ExecuteWorkflow(
            runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id, request_id="r-1"),
            metadata=a,
        )
        assert run.triggered_by == "alice"
        assert run.project_id == str(project_a)
        done = await runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run.id), metadata=a)
        assert done.status == runs_pb2.Run.COMPLETED

        not_found = grpc.StatusCode.NOT_FOUND
        await _expect(
            not_found, agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=created.id), metadata=b)
        )
        await _expect(
            not_found,
            agents.UpdateAgent(
                agents_pb2.UpdateAgentRequest(agent_id=created.id, description="x"), metadata=b
            ),
        )
        await _expect(
            not_found,
            agents.DeleteAgent(agents_pb2.DeleteAgentRequest(agent_id=created.id), metadata=b),
        )
        await _expect(
            not_found,
            agents.CheckAgentHealth(
                agents_pb2.CheckAgentHealthRequest(agent_id=created.id), metadata=b
            ),
        )
        await _expect(
            not_found,
            workflows.GetWorkflow(
                workflows_pb2.GetWorkflowRequest(workflow_id=workflow.id), metadata=b
            ),
        )
        await _expect(
            not_found,
            workflows.ListWorkflowVersions(
                workflows_pb2.ListWorkflowVersionsRequest(workflow_id=workflow.id), metadata=b
            ),
        )
        await _expect(
            not_found,
            workflows.DeactivateWorkflow(
                workflows_pb2.DeactivateWorkflowRequest(workflow_id=workflow.id), metadata=b
            ),
        )
        # Same idempotency key from another project: no access to A's run either.
        await _expect(
            not_found,
            runs.ExecuteWorkflow(
                runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id, request_id="r-1"),
                metadata=b,
            ),
        )
        for call in (
            runs.GetRun(runs_pb2.GetRunRequest(run_id=run.id), metadata=b),
            runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run.id), metadata=b),
            runs.ListRunSteps(runs_pb2.ListRunStepsRequest(run_id=run.id), metadata=b),
            runs.GetRunLogs(runs_pb2.GetRunLogsRequest(run_id=run.id), metadata=b),
            runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id), metadata=b),
            runs.RetryRun(runs_pb2.RetryRunRequest(run_id=run.id), metadata=b),
        ):
            await _expect(not_found, call)
        for after in (0, 1):
            stream = runs.WatchRun(
                runs_pb2.WatchRunRequest(run_id=run.id, after_sequence=after), metadata=b
            )
            await _expect(not_found, anext(aiter(stream)))
        # A workflow of B cannot use A's agents (B's own "echo" is another agent).
        await agents.DeleteAgent(agents_pb2.DeleteAgentRequest(agent_id=theirs.id), metadata=b)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await create_workflow(workflows, chain(("only", "echo", {})), metadata=b)
        assert failure(raised.value).reason == "AGENT_UNAVAILABLE"
        # Lists never include another project's resources.
        assert (await agents.ListAgents(agents_pb2.ListAgentsRequest(), metadata=b)).total == 0
        assert (
            await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest(), metadata=b)
        ).total == 0
        assert (await runs.ListRuns(runs_pb2.ListRunsRequest(), metadata=b)).total == 0
        listed = await runs.ListRuns(
            runs_pb2.ListRunsRequest(project_id=str(project_a)), metadata=a
        )
        assert [r.id for r in listed.items] == [run.id]
        assert (
            await runs.ListRuns(runs_pb2.ListRunsRequest(project_id=str(project_a)), metadata=b)
        ).total == 0


async def test_runs_record_who_started_and_cancelled_them(
    secured: Secured, engine: AsyncEngine, worker: Worker, echo_agent_url: str
) -> None:
    editor = bearer(token(sub="ops@example.com", role="editor"))
    async with grpc.aio.insecure_channel(secured.target) as channel:
        agents, workflows, runs = _stubs(channel)
        await register_agent(agents, "slow", echo_agent_url, metadata=editor)
        workflow = await create_workflow(
            workflows,
            chain(("wait", "slow", {"_mode": "sleep", "_sleep_ms": 30000})),
            metadata=editor,
        )
        run = await runs.ExecuteWorkflow(
            runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id, triggered_by="someone-else"),
            metadata=editor,
        )
        assert run.triggered_by == "ops@example.com"  # the identity, not the claim
        cancelled = await runs.CancelRun(
            runs_pb2.CancelRunRequest(run_id=run.id, cancelled_by="nobody"), metadata=editor
        )
        assert cancelled.cancelled_by == "ops@example.com"


# -- credentials -----------------------------------------------------------------------


async def test_jwts_name_identity_project_and_role(secured: Secured, engine: AsyncEngine) -> None:
    project = await make_project(engine, "jwt-team")
    async with grpc.aio.insecure_channel(secured.target) as channel:
        access = access_pb2_grpc.AccessServiceStub(channel)
        found = await access.GetCaller(
            access_pb2.GetCallerRequest(),
            metadata=bearer(token(sub="ci", project="jwt-team", role="editor")),
        )
        assert (found.identity, found.identity_type) == ("ci", "jwt")
        assert found.role == access_pb2.editor
        assert found.project.id == str(project)
        assert found.auth_mode == "required"
        for claims, reason in (
            ({"exp": datetime.now(UTC) - timedelta(seconds=5)}, "JWT_EXPIRED"),
            ({"project": "no-such-project"}, "JWT_UNKNOWN_PROJECT"),
            ({"role": "owner"}, "JWT_INVALID_ROLE"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await access.GetCaller(
                    access_pb2.GetCallerRequest(), metadata=bearer(token(**claims))
                )
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert failure(raised.value).reason == reason
            assert "Traceback" not in (raised.value.details() or "")


async def test_rs256_tokens_verify_with_a_public_key_file_or_a_jwks_file(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from baton_server.access.tokens import JwtVerifier
    from baton_server.errors import Unauthenticated

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    (tmp_path / "jwks.json").write_text(__import__("json").dumps({"keys": [{**jwk, "kid": "k1"}]}))
    signed = jwt.encode(
        {"sub": "svc", "role": "viewer", "exp": datetime.now(UTC) + timedelta(minutes=1)},
        private,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    for settings in (
        JwtSettings(public_key_file=tmp_path / "key.pem"),
        JwtSettings(jwks_file=tmp_path / "jwks.json"),
    ):
        assert JwtVerifier(settings).verify(signed).subject == "svc"
    # A token signed with the shared-secret algorithm must not pass as RS256.
    hs = jwt.encode({"sub": "x", "exp": datetime.now(UTC) + timedelta(minutes=1)}, "s" * 32)
    with pytest.raises(Unauthenticated):
        JwtVerifier(JwtSettings(public_key_file=tmp_path / "key.pem")).verify(hs)


async def test_revocation_reaches_every_api_server_within_a_second(
    secured: Secured, engine: AsyncEngine, redis_client: redis.Redis
) -> None:
    admin = key_metadata(await make_key(engine, Role.admin, name="root"))
    second, second_proxy = await _secured(engine, redis_client)
    try:
        async with (
            grpc.aio.insecure_channel(secured.target) as one,
            grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as two,
        ):
            created = await access_pb2_grpc.AccessServiceStub(one).CreateApiKey(
                access_pb2.CreateApiKeyRequest(name="temp", role=access_pb2.viewer),
                metadata=admin,
            )
            temp = key_metadata(created.secret)
            for channel in (one, two):
                await access_pb2_grpc.AccessServiceStub(channel).GetCaller(
                    access_pb2.GetCallerRequest(), metadata=temp
                )
            await access_pb2_grpc.AccessServiceStub(one).RevokeApiKey(
                access_pb2.RevokeApiKeyRequest(key_id=created.api_key.id), metadata=admin
            )
            revoked_at = time.monotonic()
            for channel in (one, two):
                stub = access_pb2_grpc.AccessServiceStub(channel)
                refused: grpc.aio.AioRpcError | None = None
                while refused is None:
                    try:
                        await stub.GetCaller(access_pb2.GetCallerRequest(), metadata=temp)
                    except grpc.aio.AioRpcError as error:
                        refused = error
                    await asyncio.sleep(0.05)
                assert time.monotonic() - revoked_at < 1.0
                assert failure(refused).reason == "API_KEY_REVOKED"
            # An admin cannot lock itself out by revoking its own key.
            me = await access_pb2_grpc.AccessServiceStub(one).ListApiKeys(
                access_pb2.ListApiKeysRequest(), metadata=admin
            )
            own = next(k for k in me.items if k.name == "root")
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await access_pb2_grpc.AccessServiceStub(one).RevokeApiKey(
                    access_pb2.RevokeApiKeyRequest(key_id=own.id), metadata=admin
                )
            assert failure(raised.value).reason == "API_KEY_IN_USE"
    finally:
        await second_proxy.envoy.stop()
        await second.stop(grace=1)


async def test_created_keys_are_shown_once_and_stored_only_as_a_hash(
    secured: Secured, engine: AsyncEngine
) -> None:
    admin = key_metadata(await make_key(engine, Role.admin))
    async with httpx.AsyncClient(base_url=secured.proxy.url, headers=dict(admin)) as rest:
        created = await rest.post("/api/v1/api_keys", json={"name": "deploy", "role": "editor"})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        key = created.json()["api_key"]
        assert secret.startswith(key["prefix"])
        assert len(secret) > 40
        assert key["role"] == "editor"
        assert "last_used_at" not in key
        fetched = await rest.get(f"/api/v1/api_keys/{key['id']}")
        assert secret not in fetched.text
        listed = await rest.get("/api/v1/api_keys")
        assert secret not in listed.text
        taken = await rest.post("/api/v1/api_keys", json={"name": "deploy", "role": "viewer"})
        assert taken.status_code == 409
        assert error_of(taken)["reason"] == "API_KEY_NAME_TAKEN"
        past = await rest.post(
            "/api/v1/api_keys",
            json={"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"},
        )
        assert past.status_code == 400
        assert "expires_at" in error_of(past)["fields"]
    # The key works (through Envoy as X-API-Key and as a bearer token).
    async with httpx.AsyncClient(base_url=secured.proxy.url) as plain:
        for headers in ({"X-API-Key": secret}, {"Authorization": f"Bearer {secret}"}):
            caller = await plain.get("/api/v1/access/caller", headers=headers)
            assert caller.json()["identity"] == "deploy"
    async with httpx.AsyncClient(base_url=secured.proxy.url, headers=dict(admin)) as rest:
        await asyncio.sleep(0.2)  # last_used_at is written in the background
        assert "last_used_at" in (await rest.get(f"/api/v1/api_keys/{key['id']}")).json()
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT * FROM api_keys WHERE name = 'deploy'"))).one()
    assert secret.encode() not in repr(stored).encode()


# -- rate limits -----------------------------------------------------------------------


async def test_rate_limit_headers_and_429_through_envoy(
    engine: AsyncEngine, redis_client: redis.Redis
) -> None:
    app, proxy = await _secured(
        engine,
        redis_client,
        rate_limits={"viewer": 5, "editor": 5, "admin": 5, "anonymous": 5},
        rate_window_s=60,
    )
    viewer = await make_key(engine, Role.viewer)
    # Counters are shared by every server on this Redis: start from none.
    async for counter in redis_client.scan_iter("baton:rate:*"):
        await redis_client.delete(counter)
    try:
        async with httpx.AsyncClient(base_url=proxy.url, headers={"X-API-Key": viewer}) as rest:
            seen = []
            for _ in range(5):
                response = await rest.get("/api/v1/agents")
                assert response.status_code == 200
                seen.append(int(response.headers["x-ratelimit-remaining"]))
                assert response.headers["x-ratelimit-limit"] == "5"
                assert int(response.headers["x-ratelimit-reset"]) > time.time()
            assert seen == [4, 3, 2, 1, 0]
            over = await rest.get("/api/v1/agents")
            assert over.status_code == 429
            assert error_of(over)["reason"] == "RATE_LIMIT_EXCEEDED"
            assert 1 <= int(over.headers["retry-after"]) <= 60
            assert over.headers["x-ratelimit-remaining"] == "0"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            call = agents_pb2_grpc.AgentServiceStub(channel).ListAgents(
                agents_pb2.ListAgentsRequest(), metadata=key_metadata(viewer)
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = dict(raised.value.trailing_metadata() or ())
            assert "retry-after" in trailers
            assert trailers["x-ratelimit-limit"] == "5"
            # Guessing keys spends the guesser's address budget (5 here): 401s, then 429.
            guesses = []
            for _ in range(6):
                with pytest.raises(grpc.aio.AioRpcError) as guessed:
                    await agents_pb2_grpc.AgentServiceStub(channel).ListAgents(
                        agents_pb2.ListAgentsRequest(), metadata=key_metadata("bk_" + "g" * 40)
                    )
                guesses.append(guessed.value.code())
            assert guesses == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [
                grpc.StatusCode.RESOURCE_EXHAUSTED
            ]
            # Another key has a budget of its own.
            fresh = key_metadata(await make_key(engine, Role.viewer))
            call = agents_pb2_grpc.AgentServiceStub(channel).ListAgents(
                agents_pb2.ListAgentsRequest(), metadata=fresh
            )
            await call
            headers = dict(await call.initial_metadata())
            assert headers["x-ratelimit-remaining"] == "4"
    finally:
        await proxy.envoy.stop()
        await app.stop(grace=1)


async def test_rate_limits_fail_open_when_redis_is_unreachable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    before = UNAVAILABLE._value.get()
    assert await RateLimiter(dead, window_s=60).take("key:x", 1) is None
    assert UNAVAILABLE._value.get() == before + 1
    await dead.aclose()


# -- open mode -------------------------------------------------------------------------


async def test_an_open_server_serves_anonymous_callers_but_checks_credentials_sent(
    rest: httpx.AsyncClient,
) -> None:
    created = await rest.post("/api/v1/agents", json={"name": "a", "url": "http://a:1"})
    assert created.status_code == 201
    assert created.headers["x-ratelimit-limit"] == "60000"
    caller = (await rest.get("/api/v1/access/caller")).json()
    assert caller["identity"] == "anonymous"
    assert caller["auth_mode"] == "open"
    assert caller["project"]["name"] == "default"
    bad = await rest.get("/api/v1/agents", headers={"X-API-Key": "bk_" + "x" * 40})
    assert bad.status_code == 401
    assert error_of(bad)["reason"] == "API_KEY_INVALID"


# -- audit trail -----------------------------------------------------------------------


async def test_every_write_is_in_the_audit_trail(secured: Secured, engine: AsyncEngine) -> None:
    editor = await make_key(engine, Role.editor, name="writer")
    admin = await make_key(engine, Role.admin, name="auditor")
    async with httpx.AsyncClient(base_url=secured.proxy.url) as rest:
        made = await rest.post(
            "/api/v1/agents",
            json={"name": "audited", "url": "http://x:1"},
            headers={"X-API-Key": editor},
        )
        agent_id = made.json()["id"]
        await rest.put(
            f"/api/v1/agents/{agent_id}", json={"description": "d"}, headers={"X-API-Key": editor}
        )
        await rest.get("/api/v1/agents", headers={"X-API-Key": editor})  # a read: not audited
        denied = await rest.get("/api/v1/audit_events", headers={"X-API-Key": editor})
        assert denied.status_code == 403
        assert error_of(denied)["metadata"] == {"required_role": "admin", "role": "editor"}
        events = (
            await rest.get(
                "/api/v1/audit_events", params={"actor": "writer"}, headers={"X-API-Key": admin}
            )
        ).json()
    assert [e["method"] for e in events["items"]] == [
        "baton.v1.AgentService/UpdateAgent",
        "baton.v1.AgentService/CreateAgent",
    ]
    for event in events["items"]:
        assert event["resource_type"] == "agent"
        assert event["resource_id"] == agent_id
        assert event["actor_type"] == "api_key"
        assert event["role"] == "editor"
        # Envoy's view of the HTTP client (for a loopback client, this host's address).
        assert ipaddress.ip_address(event["client_address"])


# -- secrets at rest -------------------------------------------------------------------


async def test_agent_secrets_are_sealed_at_rest_and_never_returned_or_logged(
    grpc_app: GrpcApp,
    stubs: _Stubs,
    engine: AsyncEngine,
    echo_agent_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agents, workflows, runs = stubs
    secret = f"sekrit-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    created = await agents.CreateAgent(
        agents_pb2.CreateAgentRequest(
            name="guarded",
            url=echo_agent_url,
            auth_type=agents_pb2.Agent.bearer,
            auth_config=json_format.ParseDict({"token": secret}, struct_pb2.Struct()),
        )
    )
    replies: list[Any] = [created]
    replies.append(await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=created.id)))
    replies.append(await agents.ListAgents(agents_pb2.ListAgentsRequest()))
    replies.append(
        await agents.CheckAgentHealth(agents_pb2.CheckAgentHealthRequest(agent_id=created.id))
    )
    workflow = await create_workflow(workflows, chain(("only", "guarded", {})))
    run = await runs.ExecuteWorkflow(runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id))
    replies.append(await runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run.id)))
    assert replies[-1].status == runs_pb2.Run.COMPLETED  # the worker opened the secret
    replies.append(await runs.ListRunSteps(runs_pb2.ListRunStepsRequest(run_id=run.id)))
    for reply in replies:
        assert secret not in str(reply)
    for record in caplog.records:
        assert secret not in record.getMessage()
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(agents_table.c.auth_config).where(agents_table.c.name == "guarded")
            )
        ).scalar_one()
    assert secret not in stored
    assert TEST_SECRETS.open(stored) == {"token": secret}


async def test_plain_and_old_key_secrets_are_resealed_with_the_current_key(
    engine: AsyncEngine,
) -> None:
    from cryptography.fernet import Fernet

    from baton_server.sealing import SecretBox, seal_stored

    old = Fernet.generate_key().decode()
    new = Fernet.generate_key().decode()
    async with engine.begin() as conn:
        for name, stored in (
            ("plain", '{"token": "t1"}'),
            ("old", SecretBox([old]).seal({"token": "t2"})),
        ):
            await conn.execute(
                agents_table.insert().values(
                    id=uuid.uuid4(),
                    name=name,
                    url="http://x:1",
                    auth_type="bearer",
                    auth_config=stored,
                    timeout_ms=1000,
                    max_retries=0,
                    initial_delay_ms=100,
                    max_delay_ms=1000,
                    backoff_multiplier=1.0,
                    status="active",
                )
            )
    rotated = SecretBox([new, old])
    assert await seal_stored(engine, rotated) == 2
    assert await seal_stored(engine, rotated) == 0  # idempotent
    current = SecretBox([new])
    async with engine.connect() as conn:
        rows = dict(
            (await conn.execute(sa.select(agents_table.c.name, agents_table.c.auth_config))).all()
        )
    assert current.open(rows["plain"]) == {"token": "t1"}
    assert current.open(rows["old"]) == {"token": "t2"}


async def test_the_all_runs_feed_shows_only_the_callers_project(
    secured: Secured, engine: AsyncEngine, worker: Worker, echo_agent_url: str
) -> None:
    a = key_metadata(
        await make_key(engine, Role.editor, project_id=await make_project(engine, "feed-a"))
    )
    b = key_metadata(
        await make_key(engine, Role.viewer, project_id=await make_project(engine, "feed-b"))
    )
    async with grpc.aio.insecure_channel(secured.target) as channel:
        agents, workflows, runs = _stubs(channel)
        await register_agent(agents, "echo", echo_agent_url, metadata=a)
        workflow = await create_workflow(workflows, chain(("only", "echo", {})), metadata=a)
        feeds = {
            name: runs.WatchRuns(runs_pb2.WatchRunsRequest(), metadata=metadata)
            for name, metadata in (("a", a), ("b", b))
        }
        seen: dict[str, list[str]] = {"a": [], "b": []}

        async def read(name: str) -> None:
            async for event in feeds[name]:
                seen[name].append(event.run_id)

        readers = [asyncio.create_task(read(name)) for name in feeds]
        await asyncio.sleep(0.5)  # both subscribed
        run = await runs.ExecuteWorkflow(
            runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id), metadata=a
        )
        await runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run.id), metadata=a)
        await asyncio.sleep(0.5)
        for feed in feeds.values():
            feed.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert run.id in seen["a"]
    assert seen["b"] == []
