"""The SDK's typed view stays in step with the contract: every enum value and every
field of the generated messages has its counterpart (or is knowingly left out)."""

from __future__ import annotations

import dataclasses
import enum

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from baton.v1 import agents_pb2, runs_pb2, workflows_pb2
from baton_sdk import (
    Agent,
    AgentHealth,
    AgentProtocol,
    AgentStatus,
    AuthType,
    LogLevel,
    RetryConfig,
    RunData,
    RunEvent,
    RunEventType,
    RunLog,
    RunStatus,
    RunStep,
    Step,
    StepStatus,
    Workflow,
    WorkflowData,
    WorkflowStatus,
    WorkflowVersion,
)


@pytest.mark.parametrize(
    ("sdk_enum", "proto_enum"),
    [
        (AgentStatus, agents_pb2.Agent.Status.DESCRIPTOR),
        (AuthType, agents_pb2.Agent.AuthType.DESCRIPTOR),
        (AgentProtocol, agents_pb2.Agent.Protocol.DESCRIPTOR),
        (WorkflowStatus, workflows_pb2.Workflow.Status.DESCRIPTOR),
        (RunStatus, runs_pb2.Run.Status.DESCRIPTOR),
        (StepStatus, runs_pb2.RunStep.Status.DESCRIPTOR),
        (LogLevel, runs_pb2.RunLog.Level.DESCRIPTOR),
        (RunEventType, runs_pb2.RunEvent.Type.DESCRIPTOR),
    ],
)
def test_enums_have_every_value_of_the_contract(
    sdk_enum: type[enum.StrEnum], proto_enum: EnumDescriptor
) -> None:
    contract = {value.name for value in proto_enum.values if value.number != 0}
    assert {member.value for member in sdk_enum} == contract


# Fields of the contract the typed view leaves out on purpose.
LEFT_OUT = {
    # `run_id` is the same as `id`; `duration_ms` is the `duration` property (a timedelta).
    "baton.v1.Run": {"run_id", "duration_ms"},
    "baton.v1.RunStep": {"duration_ms"},  # the `duration` property
    "baton.v1.WorkflowVersion": {"updated_at"},  # versions never change
}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Agent, agents_pb2.Agent.DESCRIPTOR),
        (AgentHealth, agents_pb2.CheckAgentHealthResponse.DESCRIPTOR),
        (RetryConfig, agents_pb2.RetryConfig.DESCRIPTOR),
        (Workflow, workflows_pb2.Workflow.DESCRIPTOR),
        (WorkflowData, workflows_pb2.WorkflowData.DESCRIPTOR),
        (Step, workflows_pb2.Step.DESCRIPTOR),
        (WorkflowVersion, workflows_pb2.WorkflowVersion.DESCRIPTOR),
        (RunData, runs_pb2.Run.DESCRIPTOR),
        (RunStep, runs_pb2.RunStep.DESCRIPTOR),
        (RunLog, runs_pb2.RunLog.DESCRIPTOR),
        (RunEvent, runs_pb2.RunEvent.DESCRIPTOR),
    ],
)
def test_results_have_every_field_of_the_contract(model: type, message: Descriptor) -> None:
    contract = {field.name for field in message.fields} - LEFT_OUT.get(message.full_name, set())
    typed = {field.name for field in dataclasses.fields(model) if not field.name.startswith("_")}
    assert contract <= typed, f"missing in {model.__name__}: {contract - typed}"
    assert typed - contract <= {"proto"}, f"not in the contract: {typed - contract - {'proto'}}"
