"""Malformed input a probe would send: NUL characters and invalid UTF-8 answer 400
naming the problem, never 500, and change nothing."""

from __future__ import annotations

import json
import uuid

import grpc
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import agents_pb2, agents_pb2_grpc, schedules_pb2, schedules_pb2_grpc
from tests.rest_support import error_of
from tests.rpc_errors import failure


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        agents = (await conn.execute(sa.text("SELECT count(*) FROM agents"))).scalar_one()
        runs = (await conn.execute(sa.text("SELECT count(*) FROM runs"))).scalar_one()
    return agents, runs


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/%00",
        "/api/v1/runs/%00/steps",
        "/api/v1/runs/%00/logs",
        "/api/v1/agents?name=%00",
    ],
)
async def test_a_nul_in_a_path_or_query_is_a_400_naming_the_field(
    rest: httpx.AsyncClient, path: str
) -> None:
    response = await rest.get(path)
    assert response.status_code == 400, response.text
    found = error_of(response)
    assert found["reason"] == "INVALID_FIELD"
    assert any("NUL" in description for description in found["fields"].values())


async def test_a_nul_in_a_body_is_a_400_naming_the_field_and_changes_nothing(
    rest: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    before = await _counts(engine)
    created = await rest.post(
        "/api/v1/agents",
        json={"name": "a", "url": "http://a:1", "description": "bad\u0000"},
    )
    assert created.status_code == 400, created.text
    assert set(error_of(created)["fields"]) == {"description"}
    executed = await rest.post(
        f"/api/v1/workflows/{uuid.uuid4()}/execute",
        json={"request_id": "\u0000", "input_data": {"rows": [{"name": "x\u0000"}]}},
    )
    assert executed.status_code == 400, executed.text
    assert set(error_of(executed)["fields"]) == {"request_id", "input_data.rows[0].name"}
    assert await _counts(engine) == before


async def test_invalid_utf8_in_a_path_segment_is_a_clean_400(rest: httpx.AsyncClient) -> None:
    for path in ("/api/v1/agents/%ED%A0%80", "/api/v1/runs/%FF%FE", "/api/v1/workflows/%C3"):
        response = await rest.get(path)
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert "DecodeError" not in body["message"]
        assert "protobuf" not in body["message"]


async def test_a_body_that_is_not_utf8_is_a_400_whose_error_is_valid_json(
    rest: httpx.AsyncClient,
) -> None:
    # Envoy's message quotes the body; its bytes that are not UTF-8 become U+FFFD.
    for body in (b"\xffj\xc3\x1c\xaa\xbb", b'{"name": "\xed\xa0\x80"}', b"\xf4\x90\x80\x80"):
        response = await rest.post(
            "/api/v1/agents", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, body
        error = json.loads(response.content.decode("utf-8"))  # strict: raises on bad bytes
        assert error["code"] == 3
        assert "\ufffd" in error["message"]


async def test_bytes_that_are_not_the_request_message_are_invalid_argument(
    channel: grpc.aio.Channel, engine: AsyncEngine
) -> None:
    # Field 1 (agent_id, a string) holding bytes that are not UTF-8.
    raw = b"\x0a\x03\xed\xa0\x80"
    call = channel.unary_unary(
        "/baton.v1.AgentService/GetAgent",
        request_serializer=lambda data: data,
        response_deserializer=agents_pb2.Agent.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(raw, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "INVALID_REQUEST"
    # The server is still fine.
    listed = await agents_pb2_grpc.AgentServiceStub(channel).ListAgents(
        agents_pb2.ListAgentsRequest()
    )
    assert listed.total == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/agents", {"name": "x" * 5_000_000, "url": "http://a:1"}),
        (f"/api/v1/workflows/{uuid.uuid4()}/execute", {"input_data": {"a": "x" * 20_000_000}}),
        # Small as JSON, over 4 MiB as protobuf (every number is a Value of 11 bytes).
        (f"/api/v1/workflows/{uuid.uuid4()}/execute", {"input_data": {"a": [1] * 1_900_000}}),
        # Beyond what the gRPC server reads at all.
        ("/api/v1/agents", {"name": "a", "url": "http://a:1", "description": "x" * 40_000_000}),
    ],
    ids=["5MB-name", "20MB-input", "expanding-input", "40MB-description"],
)
async def test_a_request_over_the_size_limit_is_a_413_naming_it_and_changes_nothing(
    rest: httpx.AsyncClient, engine: AsyncEngine, path: str, body: dict[str, object]
) -> None:
    before = await _counts(engine)
    response = await rest.post(path, json=body)
    assert response.status_code == 413, response.text[:300]
    found = error_of(response)
    assert found["reason"] == "REQUEST_TOO_LARGE"
    assert "the 4 MiB limit of a request" in found["message"]
    assert await _counts(engine) == before


async def test_a_json_value_over_its_limit_is_a_400_naming_the_field(
    rest: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    before = await _counts(engine)
    response = await rest.post(
        f"/api/v1/workflows/{uuid.uuid4()}/execute",
        json={"input_data": {"doc": "x" * 2_000_000}},
    )
    assert response.status_code == 400, response.text[:300]
    found = error_of(response)
    assert found["reason"] == "INVALID_FIELD"
    assert "1 MiB limit of a JSON value" in found["fields"]["input_data"]
    assert await _counts(engine) == before


async def test_a_grpc_message_over_the_limit_is_invalid_argument_naming_it(
    channel: grpc.aio.Channel,
) -> None:
    stub = agents_pb2_grpc.AgentServiceStub(channel)
    request = agents_pb2.CreateAgentRequest(name="a", url="http://a:1", description="x" * 5_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateAgent(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "REQUEST_TOO_LARGE"
    assert "4 MiB limit of a request" in (raised.value.details() or "")


async def test_a_timestamp_out_of_range_is_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel,
) -> None:
    # Found by tests/test_request_fuzz.py: the conversion to a datetime raised (INTERNAL).
    stub = schedules_pb2_grpc.ScheduleServiceStub(channel)
    request = schedules_pb2.UpdateScheduleRequest(schedule_id=str(uuid.uuid4()))
    request.execution_time.seconds = -(2**62)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateSchedule(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = failure(raised.value)
    assert found.reason == "INVALID_FIELD"
    assert "execution_time: must be a valid timestamp" in (raised.value.details() or "")
