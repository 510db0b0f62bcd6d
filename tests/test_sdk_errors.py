"""The SDK's exception tree: chosen by status code and ErrorInfo.reason, never by text."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton_sdk import (
    AgentStatus,
    AgentUnavailableError,
    AlreadyExistsError,
    BatonClient,
    BatonError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    Step,
    UnimplementedError,
    WorkflowNotActiveError,
    WorkflowValidationError,
)
from baton_sdk import errors as sdk_errors
from baton_sdk.errors import error_from_rpc
from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def client(grpc_app: GrpcApp, engine: AsyncEngine) -> AsyncIterator[BatonClient]:
    async with baton_sdk.connect(f"127.0.0.1:{grpc_app.port}") as client:
        yield client


async def test_not_found_names_the_kind_of_resource(client: BatonClient) -> None:
    with pytest.raises(NotFoundError) as agent:
        await client.agents.get(UNKNOWN_UUID)
    with pytest.raises(NotFoundError) as workflow:
        await client.workflows.get(UNKNOWN_UUID)
    with pytest.raises(NotFoundError) as run:
        await client.runs.get("run-nope")
    assert (agent.value.reason, workflow.value.reason, run.value.reason) == (
        "AGENT_NOT_FOUND",
        "WORKFLOW_NOT_FOUND",
        "RUN_NOT_FOUND",
    )
    assert agent.value.code is grpc.StatusCode.NOT_FOUND
    assert agent.value.domain == "baton"
    with pytest.raises(NotFoundError):
        [event async for event in client.runs.watch("run-nope")]


async def test_name_taken_carries_the_name(client: BatonClient) -> None:
    await client.agents.create(name="twin", url="http://twin.example")
    with pytest.raises(AlreadyExistsError) as caught:
        await client.agents.create(name="twin", url="http://twin.example")
    assert caught.value.reason == "AGENT_NAME_TAKEN"
    assert caught.value.metadata == {"name": "twin"}


async def test_invalid_fields_are_listed(client: BatonClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.agents.create(
            name="bad", url="ftp://bad.example", timeout_ms=5, retry_config={"max_retries": 99}
        )
    error = caught.value
    assert error.reason == "INVALID_FIELD"
    assert {v.field for v in error.field_violations} == {
        "url",
        "timeout_ms",
        "retry_config.max_retries",
    }
    assert all(isinstance(v, FieldViolation) and v.description for v in error.field_violations)
    text = str(error)
    assert text.startswith("INVALID_ARGUMENT (INVALID_FIELD): ")
    assert "\n  timeout_ms: " in text


async def test_workflow_validation_and_agent_errors_have_their_own_classes(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    with pytest.raises(WorkflowValidationError) as cycle:
        await client.workflows.create(
            name="loop",
            start_step="a",
            steps={
                "a": Step(agent_name="echo", next_step="b"),
                "b": Step(agent_name="echo", next_step="a"),
            },
        )
    assert cycle.value.reason == "WORKFLOW_CYCLE"
    assert isinstance(cycle.value, InvalidArgumentError)

    with pytest.raises(AgentUnavailableError) as missing:
        await client.workflows.create(
            name="ghost", start_step="a", steps={"a": Step(agent_name="nobody")}
        )
    assert isinstance(missing.value, FailedPreconditionError)
    assert [v.field for v in missing.value.field_violations] == ["steps.a.agent_name"]


async def test_state_errors_are_failed_preconditions(
    client: BatonClient, worker: Worker, echo_agent_url: str
) -> None:
    agent = await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await client.workflows.create(
        name="one", start_step="a", steps={"a": Step(agent_name="echo")}
    )
    run = await client.runs.execute(workflow, wait=True, timeout=30)
    with pytest.raises(FailedPreconditionError) as not_cancellable:
        await client.runs.cancel(run)
    assert not_cancellable.value.reason == "RUN_NOT_CANCELLABLE"
    with pytest.raises(FailedPreconditionError) as not_retryable:
        await client.runs.retry(run)
    assert not_retryable.value.reason == "RUN_NOT_RETRYABLE"

    await client.workflows.deactivate(workflow)
    with pytest.raises(WorkflowNotActiveError) as inactive:
        await client.runs.execute(workflow)
    assert inactive.value.reason == "WORKFLOW_NOT_ACTIVE"

    await client.agents.delete(agent)
    with pytest.raises(FailedPreconditionError) as deleted:
        await client.agents.update(agent, status=AgentStatus.ACTIVE)
    assert deleted.value.reason == "AGENT_DELETED"


async def test_every_call_has_a_deadline(client: BatonClient) -> None:
    # A call the server takes long to answer: probing an agent that accepts connections
    # but never answers. (Any deadline short enough to test, the real server can meet
    # on an ordinary call.)
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        agent = await client.agents.create(
            name="mute", url=f"http://127.0.0.1:{mute.getsockname()[1]}", timeout_ms=10_000
        )
        begun = time.monotonic()
        with pytest.raises(DeadlineExceededError) as caught:
            await client.agents.check_health(agent, timeout=0.3)  # the call's own deadline
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        async with baton_sdk.connect(client.target, timeout=0.3) as impatient:
            with pytest.raises(DeadlineExceededError):
                await impatient.agents.check_health(agent)  # the client's default deadline
        assert time.monotonic() - begun < 3


async def test_a_method_the_server_lacks_is_unimplemented(client: BatonClient) -> None:
    missing: grpc.aio.UnaryUnaryMultiCallable[None, bytes] = client.channel.unary_unary(
        "/baton.v1.RunService/NoSuchMethod",
        request_serializer=lambda _: b"",
        response_deserializer=lambda data: data,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await missing(None)
    assert isinstance(error_from_rpc(caught.value), UnimplementedError)


def rpc_error(
    code: grpc.StatusCode,
    *,
    reason: str = "",
    metadata: dict[str, str] | None = None,
    violations: tuple[tuple[str, str], ...] = (),
) -> grpc.aio.AioRpcError:
    """A failed call as grpc.aio reports it, with rich details in the trailer."""
    details = []
    if reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="baton", metadata=metadata))
        details.append(info)
    if violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
        details.append(bad)
    status = status_pb2.Status(code=code.value[0], message="it failed", details=details)
    trailers = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, "it failed")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.CANCELLED, sdk_errors.CallCancelledError),
        (grpc.StatusCode.UNKNOWN, sdk_errors.UnknownError),
        (grpc.StatusCode.INVALID_ARGUMENT, sdk_errors.InvalidArgumentError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, sdk_errors.DeadlineExceededError),
        (grpc.StatusCode.NOT_FOUND, sdk_errors.NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, sdk_errors.AlreadyExistsError),
        (grpc.StatusCode.PERMISSION_DENIED, sdk_errors.PermissionDeniedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, sdk_errors.ResourceExhaustedError),
        (grpc.StatusCode.FAILED_PRECONDITION, sdk_errors.FailedPreconditionError),
        (grpc.StatusCode.ABORTED, sdk_errors.AbortedError),
        (grpc.StatusCode.OUT_OF_RANGE, sdk_errors.OutOfRangeError),
        (grpc.StatusCode.UNIMPLEMENTED, sdk_errors.UnimplementedError),
        (grpc.StatusCode.INTERNAL, sdk_errors.InternalError),
        (grpc.StatusCode.UNAVAILABLE, sdk_errors.UnavailableError),
        (grpc.StatusCode.DATA_LOSS, sdk_errors.DataLossError),
        (grpc.StatusCode.UNAUTHENTICATED, sdk_errors.UnauthenticatedError),
    ],
)
def test_each_status_code_has_its_class(code: grpc.StatusCode, expected: type[BatonError]) -> None:
    error = error_from_rpc(rpc_error(code, reason="SOME_REASON", metadata={"k": "v"}))
    assert type(error) is expected
    assert isinstance(error, BatonError)
    assert (error.code, error.reason, error.metadata) == (code, "SOME_REASON", {"k": "v"})
    assert error.message == "it failed"
    bare = error_from_rpc(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata()))
    assert type(bare) is expected
    assert (bare.reason, bare.metadata, bare.field_violations) == (None, {}, ())


def test_reason_narrows_the_class_only_within_its_code() -> None:
    cycle = error_from_rpc(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, reason="WORKFLOW_CYCLE"))
    assert type(cycle) is WorkflowValidationError
    # The same reason with an unexpected code does not pretend to be a validation error.
    odd = error_from_rpc(rpc_error(grpc.StatusCode.INTERNAL, reason="WORKFLOW_CYCLE"))
    assert type(odd) is sdk_errors.InternalError
    assert odd.reason == "WORKFLOW_CYCLE"


def test_messages_never_choose_the_class() -> None:
    error = error_from_rpc(
        grpc.aio.AioRpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            "workflow is not active",
        )
    )
    assert type(error) is FailedPreconditionError


def test_field_violations_are_read_from_bad_request() -> None:
    error = error_from_rpc(
        rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            reason="INVALID_FIELD",
            violations=(("name", "too long"), ("url", "not a URL")),
        )
    )
    assert error.field_violations == (
        FieldViolation("name", "too long"),
        FieldViolation("url", "not a URL"),
    )
    assert error.code.value[0] == code_pb2.INVALID_ARGUMENT
