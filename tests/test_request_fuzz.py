"""Property-based tests of every RPC: whatever request message arrives (random and
extreme values, huge strings and JSON values, deep nesting, unknown enum numbers, bytes
that are no message at all), the server answers with a status a client can act on —
never ``INTERNAL`` or ``UNKNOWN`` — keeps serving, and a refused request changes nothing.

Over REST through the real Envoy, every route is probed with hostile path segments
(invalid UTF-8, NUL, huge) and bodies; no answer is a 5xx.

By default each RPC gets 20 derandomized examples, so a failure in the suite is
reproducible. A longer, random search of the same properties::

    BATON_FUZZ_EXAMPLES=500 ./dev test tests/test_request_fuzz.py

(hypothesis prints the smallest failing request it finds).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import agents_pb2_grpc, runs_pb2, runs_pb2_grpc, workflows_pb2_grpc
from baton_server.app import CONTRACT_MODULES
from baton_server.db.tables import metadata
from tests.proto_strategies import MessageStrategies
from tests.runs_support import chain, create_workflow, register_agent

_EXAMPLES = os.environ.get("BATON_FUZZ_EXAMPLES")
# A longer search is as long as it takes.
pytestmark = pytest.mark.timeout(600 if _EXAMPLES is None else 0)

METHODS: list[tuple[str, MethodDescriptor]] = [
    (f"/{service.full_name}/{method.name}", method)
    for module in CONTRACT_MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]

#: Codes that mean the server failed, not the request.
SERVER_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

FUZZ_SETTINGS = settings(
    max_examples=int(_EXAMPLES or 20),
    deadline=None,
    derandomize=_EXAMPLES is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


async def _fingerprint(engine: AsyncEngine) -> str:
    """Every row of every table but the audit trail, hashed: any write changes it."""
    parts = [
        f"SELECT '{t.name}' AS t, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
        f" AS h FROM {t.name} x"
        for t in metadata.sorted_tables
        if t.name != "audit_events"
    ]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(" UNION ALL ".join(parts)))).all()
    return ",".join(f"{name}:{digest}" for name, digest in sorted(rows))


async def _seed(channel: grpc.aio.Channel) -> list[str]:
    """An agent, a workflow and a run, so that drawn ids can name existing resources."""
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)
    runs = runs_pb2_grpc.RunServiceStub(channel)
    agent = await register_agent(agents, "fuzz-agent", "http://127.0.0.1:9/")
    workflow = await create_workflow(
        workflows, chain(("a", "fuzz-agent", {}), ("b", "fuzz-agent", {"x": "${a.output}"}))
    )
    run = await runs.ExecuteWorkflow(runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id))
    return [agent.id, workflow.id, run.id, str(uuid.uuid4())]


async def _call(
    channel: grpc.aio.Channel, path: str, method: MethodDescriptor, raw: bytes
) -> grpc.StatusCode:
    """The status of one call with ``raw`` as the request (a stream: its end, or OK once
    it has sent something)."""
    kwargs: dict[str, Any] = {
        "request_serializer": lambda data: data,
        "response_deserializer": lambda data: data,
    }
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(raw, timeout=1.0)
            async for _ in stream:
                stream.cancel()
                break
        else:
            await channel.unary_unary(path, **kwargs)(raw, timeout=1.5)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.CANCELLED:
            return grpc.StatusCode.OK
        return error.code()
    return grpc.StatusCode.OK


async def _still_serving(channel: grpc.aio.Channel) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def _serialized(message: Message) -> bytes:
    return message.SerializeToString()


@pytest.fixture
async def ids(channel: grpc.aio.Channel) -> list[str]:
    return await _seed(channel)


@pytest.mark.parametrize(("path", "method"), METHODS, ids=[path for path, _ in METHODS])
@FUZZ_SETTINGS
@given(data=st.data())
async def test_any_request_message_is_answered_cleanly_and_a_refusal_changes_nothing(
    channel: grpc.aio.Channel,
    engine: AsyncEngine,
    ids: list[str],
    path: str,
    method: MethodDescriptor,
    data: st.DataObject,
) -> None:
    requests = MessageStrategies(ids).message(method.input_type).map(_serialized)
    raw = data.draw(st.one_of(requests, requests, st.binary(max_size=200)), label="request")
    before = await _fingerprint(engine)
    code = await _call(channel, path, method, raw)
    assert code not in SERVER_FAILURES, path
    if code not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert await _fingerprint(engine) == before, (path, code)
    await _still_serving(channel)


def _rest_routes() -> list[tuple[str, str]]:
    routes = []
    for _, method in METHODS:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for verb in ("get", "post", "put", "patch", "delete"):
            if template := getattr(rule, verb):
                routes.append((verb.upper(), template))
    return routes


REST_ROUTES = _rest_routes()

_SEGMENTS = [
    "%ED%A0%80",  # a UTF-16 surrogate: not UTF-8
    "%FF%FE",
    "%C3",
    "%00",
    "a%00b",
    "x" * 5000,
    "%25",
    "..",
    "-1",
    "%F0%9F%98%80",
]


def _filled(template: str, segment: str) -> str:
    """``template`` with every ``{name}`` replaced by ``segment``."""
    path = template
    while "{" in path:
        start = path.index("{")
        path = path[:start] + segment + path[path.index("}", start) + 1 :]
    return path


@pytest.mark.parametrize(
    ("verb", "template"), REST_ROUTES, ids=[f"{v} {t}" for v, t in REST_ROUTES]
)
async def test_hostile_path_segments_and_bodies_over_rest_are_never_a_5xx(
    rest: httpx.AsyncClient, engine: AsyncEngine, verb: str, template: str
) -> None:
    before = await _fingerprint(engine)
    bodies: list[Any] = [None, b"{", b"\xff\xfe", b'{"name": "\\u0000"}', b"[]", b'"x"', b"{}"]
    paths = {_filled(template, segment) for segment in _SEGMENTS}
    for path in sorted(paths):
        for body in bodies if verb in ("POST", "PUT", "PATCH") else [None]:
            try:
                async with rest.stream(
                    verb,
                    path,
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=2,
                ) as response:
                    status = response.status_code
                    await response.aread() if status >= 400 else None
            except httpx.ReadTimeout:
                continue  # an event stream that stays open
            assert status < 500, (verb, path, body, status)
    if verb == "GET":
        assert await _fingerprint(engine) == before
