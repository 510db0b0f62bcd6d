"""WorkflowService over a real channel against real PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from baton.v1 import agents_pb2, agents_pb2_grpc, workflows_pb2, workflows_pb2_grpc
from tests.rpc_errors import RpcFailure, failure

AGENT_NAMES = (
    "DataExtractorAgent",
    "DataTransformerAgent",
    "DataLoaderAgent",
    "DataValidatorAgent",
)

# The seed's ETL example ("Create Workflow" request body).
SEED_WORKFLOW: dict[str, Any] = {
    "name": "data-processing-pipeline",
    "description": "ETL pipeline for data processing",
    "start_step": "extract",
    "steps": {
        "extract": {
            "id": "extract",
            "agent_name": "DataExtractorAgent",
            "next_step": "transform",
            "input_mapping": {
                "source_url": "${workflow.input.data_source}",
                "format": "${workflow.input.format}",
            },
        },
        "transform": {
            "id": "transform",
            "agent_name": "DataTransformerAgent",
            "next_step": "load",
            "input_mapping": {
                "raw_data": "${extract.output.data}",
                "schema": "${workflow.input.schema}",
            },
        },
        "load": {
            "id": "load",
            "agent_name": "DataLoaderAgent",
            "next_step": None,
            "input_mapping": {
                "transformed_data": "${transform.output.data}",
                "destination": "${workflow.input.destination}",
            },
        },
    },
}


@pytest.fixture
async def etl_agents(agents: agents_pb2_grpc.AgentServiceAsyncStub) -> dict[str, str]:
    created = {}
    for name in AGENT_NAMES:
        agent = await agents.CreateAgent(
            agents_pb2.CreateAgentRequest(name=name, url="http://agent:8080")
        )
        created[name] = agent.id
    return created


def create_request(body: dict[str, Any]) -> workflows_pb2.CreateWorkflowRequest:
    return json_format.ParseDict(body, workflows_pb2.CreateWorkflowRequest())


def as_json(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


async def rejected(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, body: dict[str, Any]
) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.CreateWorkflow(create_request(body))
    found = failure(caught.value)
    listed = await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest())
    assert listed.total == 0, "a rejected workflow must not be stored"
    return found


def seed_with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_WORKFLOW)
    body["steps"].update(changes.pop("steps", {}))
    body.update(changes)
    return body


async def test_create_seed_etl_workflow(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, etl_agents: dict[str, str]
) -> None:
    workflow = await workflows.CreateWorkflow(create_request(SEED_WORKFLOW))
    body = as_json(workflow)
    assert body["name"] == "data-processing-pipeline"
    assert body["version"] == 1
    assert body["status"] == "active"
    assert body["workflow_data"]["start_step"] == "extract"
    steps = body["workflow_data"]["steps"]
    assert steps["load"] == {
        "id": "load",
        "agent_name": "DataLoaderAgent",
        "input_mapping": SEED_WORKFLOW["steps"]["load"]["input_mapping"],
    }
    assert steps["extract"]["next_step"] == "transform"
    fetched = await workflows.GetWorkflow(workflows_pb2.GetWorkflowRequest(workflow_id=workflow.id))
    assert fetched == workflow


async def test_step_id_is_filled_from_its_key_and_static_values_keep_their_type(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, etl_agents: dict[str, str]
) -> None:
    body = {
        "name": "static",
        "start_step": "only",
        "steps": {
            "only": {
                "agent_name": "DataExtractorAgent",
                "input_mapping": {
                    "n": 3,
                    "ratio": 0.5,
                    "flags": [True, None],
                    "nested": {"a": "b"},
                },
            }
        },
    }
    workflow = await workflows.CreateWorkflow(create_request(body))
    step = as_json(workflow)["workflow_data"]["steps"]["only"]
    assert step["id"] == "only"
    assert step["input_mapping"] == {
        "n": 3,
        "ratio": 0.5,
        "flags": [True, None],
        "nested": {"a": "b"},
    }


async def test_duplicate_workflow_name(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, etl_agents: dict[str, str]
) -> None:
    await workflows.CreateWorkflow(create_request(SEED_WORKFLOW))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.CreateWorkflow(create_request(SEED_WORKFLOW))
    found = failure(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.ALREADY_EXISTS, "WORKFLOW_NAME_TAKEN")
    assert "data-processing-pipeline" in found.message


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        (seed_with(start_step="nope"), "WORKFLOW_UNKNOWN_STEP", "start_step"),
        (
            seed_with(steps={"load": {"agent_name": "DataLoaderAgent", "next_step": "missing"}}),
            "WORKFLOW_UNKNOWN_STEP",
            "steps.load.next_step",
        ),
        (
            seed_with(steps={"load": {"id": "other", "agent_name": "DataLoaderAgent"}}),
            "WORKFLOW_UNKNOWN_STEP",
            "steps.load.id",
        ),
        (
            seed_with(steps={"load": {"agent_name": "DataLoaderAgent", "depends_on": ["ghost"]}}),
            "WORKFLOW_UNKNOWN_STEP",
            "steps.load.depends_on[0]",
        ),
        (
            seed_with(steps={"load": {"agent_name": "DataLoaderAgent", "next_step": "extract"}}),
            "WORKFLOW_CYCLE",
            "steps.extract",
        ),
        (
            seed_with(steps={"orphan": {"agent_name": "DataLoaderAgent"}}),
            "WORKFLOW_UNREACHABLE_STEP",
            "steps.orphan",
        ),
        (
            seed_with(
                steps={
                    "extract": {
                        "agent_name": "DataExtractorAgent",
                        "next_step": "transform",
                        "input_mapping": {"x": "${load.output.data}"},
                    }
                }
            ),
            "WORKFLOW_REFERENCE_ORDER",
            "steps.extract.input_mapping.x",
        ),
        (
            seed_with(
                steps={
                    "load": {
                        "agent_name": "DataLoaderAgent",
                        "input_mapping": {"x": "${ghost.output.data}"},
                    }
                }
            ),
            "WORKFLOW_REFERENCE_ORDER",
            "steps.load.input_mapping.x",
        ),
        (
            seed_with(
                steps={
                    "load": {
                        "agent_name": "DataLoaderAgent",
                        "input_mapping": {"x": {"y": ["${transform.output.}"]}},
                    }
                }
            ),
            "WORKFLOW_INVALID_REFERENCE",
            "steps.load.input_mapping.x.y[0]",
        ),
        (
            seed_with(
                steps={
                    "load": {
                        "agent_name": "DataLoaderAgent",
                        "input_mapping": {"x": "Hello ${workflow.input.name"},
                    }
                }
            ),
            "WORKFLOW_INVALID_REFERENCE",
            "steps.load.input_mapping.x",
        ),
        (
            seed_with(
                steps={
                    "load": {
                        "agent_name": "DataLoaderAgent",
                        "input_mapping": {"x": "${workflow.output.a}"},
                    }
                }
            ),
            "WORKFLOW_INVALID_REFERENCE",
            "steps.load.input_mapping.x",
        ),
        (
            seed_with(steps={"load": {"agent_name": "NoSuchAgent"}}),
            "AGENT_UNAVAILABLE",
            "steps.load.agent_name",
        ),
    ],
    ids=[
        "start-step",
        "next-step",
        "id-mismatch",
        "depends-on",
        "cycle",
        "unreachable",
        "reference-later-step",
        "reference-unknown-step",
        "reference-syntax",
        "unterminated-reference",
        "workflow-output",
        "unknown-agent",
    ],
)
async def test_invalid_workflows_are_rejected_naming_step_and_field(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub,
    etl_agents: dict[str, str],
    body: dict[str, Any],
    reason: str,
    field: str,
) -> None:
    found = await rejected(workflows, body)
    assert found.reason == reason, found
    assert field in found.fields, found
    expected = (
        grpc.StatusCode.FAILED_PRECONDITION
        if reason == "AGENT_UNAVAILABLE"
        else grpc.StatusCode.INVALID_ARGUMENT
    )
    assert found.code == expected


async def test_inactive_and_deleted_agents_cannot_be_used(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub,
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
    etl_agents: dict[str, str],
) -> None:
    await agents.UpdateAgent(
        agents_pb2.UpdateAgentRequest(
            agent_id=etl_agents["DataLoaderAgent"], status=agents_pb2.Agent.Status.inactive
        )
    )
    await agents.DeleteAgent(
        agents_pb2.DeleteAgentRequest(agent_id=etl_agents["DataTransformerAgent"])
    )
    found = await rejected(workflows, SEED_WORKFLOW)
    assert found.reason == "AGENT_UNAVAILABLE"
    assert set(found.fields) == {"steps.load.agent_name", "steps.transform.agent_name"}
    assert "Agent 'DataLoaderAgent' not found or inactive" in found.message


async def test_parallel_branches_with_depends_on(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, etl_agents: dict[str, str]
) -> None:
    body: dict[str, Any] = {
        "name": "fan-out-fan-in",
        "start_step": "extract",
        "steps": {
            "extract": {"agent_name": "DataExtractorAgent", "next_step": "left"},
            "right": {
                "agent_name": "DataTransformerAgent",
                "depends_on": ["extract"],
                "input_mapping": {"d": "${extract.output.data}"},
            },
            "left": {"agent_name": "DataTransformerAgent"},
            "join": {
                "agent_name": "DataLoaderAgent",
                "depends_on": ["left", "right"],
                "input_mapping": {
                    "l": "${left.output.x}",
                    "r": "${right.output.x}",
                    "e": "${extract.output.x}",
                },
            },
        },
    }
    workflow = await workflows.CreateWorkflow(create_request(body))
    assert list(workflow.workflow_data.steps["join"].depends_on) == ["left", "right"]
    # A sibling branch is not guaranteed to run first: reading it is rejected.
    body["name"] = "bad-branch"
    body["steps"]["right"]["input_mapping"] = {"l": "${left.output.x}"}
    found = await rejected_after(workflows, body, existing=1)
    assert found.reason == "WORKFLOW_REFERENCE_ORDER"
    assert "steps.right.input_mapping.l" in found.fields


async def rejected_after(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, body: dict[str, Any], *, existing: int
) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.CreateWorkflow(create_request(body))
    listed = await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest())
    assert listed.total == existing
    return failure(caught.value)


async def test_versioning(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, etl_agents: dict[str, str]
) -> None:
    created = await workflows.CreateWorkflow(create_request(SEED_WORKFLOW))
    v1_definition = created.definition_id

    described = await workflows.UpdateWorkflow(
        workflows_pb2.UpdateWorkflowRequest(
            workflow_id=created.id,
            description="Updated ETL pipeline with validation",
            status=workflows_pb2.Workflow.Status.active,
        )
    )
    assert described.version == 1
    assert described.description == "Updated ETL pipeline with validation"
    assert described.definition_id == v1_definition

    # Re-sending the same steps is not a change.
    same = await workflows.UpdateWorkflow(
        json_format.ParseDict(
            {"workflow_id": created.id, "steps": SEED_WORKFLOW["steps"]},
            workflows_pb2.UpdateWorkflowRequest(),
        )
    )
    assert same.version == 1

    # The seed's "Update Workflow Version" example: a validation step is inserted.
    new_steps = {
        "extract": {
            "id": "extract",
            "agent_name": "DataExtractorAgent",
            "next_step": "validate",
            "input_mapping": {"source": "${workflow.input.source}"},
        },
        "validate": {
            "id": "validate",
            "agent_name": "DataValidatorAgent",
            "next_step": "transform",
            "input_mapping": {"data": "${extract.output.data}"},
        },
        "transform": {
            "id": "transform",
            "agent_name": "DataTransformerAgent",
            "next_step": None,
            "input_mapping": {"data": "${validate.output.validated_data}"},
        },
    }
    v2 = await workflows.UpdateWorkflow(
        json_format.ParseDict(
            {
                "workflow_id": created.id,
                "description": "Updated ETL pipeline with validation step",
                "steps": new_steps,
            },
            workflows_pb2.UpdateWorkflowRequest(),
        )
    )
    assert v2.version == 2
    assert v2.definition_id != v1_definition
    assert set(v2.workflow_data.steps) == {"extract", "validate", "transform"}

    v3 = await workflows.UpdateWorkflow(
        workflows_pb2.UpdateWorkflowRequest(
            workflow_id=created.id,
            start_step="extract",
            steps={"extract": workflows_pb2.Step(agent_name="DataExtractorAgent")},
        )
    )
    assert v3.version == 3

    # A rejected structural update changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.UpdateWorkflow(
            workflows_pb2.UpdateWorkflowRequest(workflow_id=created.id, start_step="missing")
        )
    assert failure(caught.value).reason == "WORKFLOW_UNKNOWN_STEP"
    assert (
        await workflows.GetWorkflow(workflows_pb2.GetWorkflowRequest(workflow_id=created.id))
    ).version == 3

    versions = await workflows.ListWorkflowVersions(
        workflows_pb2.ListWorkflowVersionsRequest(workflow_id=created.id, page_size=2)
    )
    assert (versions.total, versions.total_pages) == (3, 2)
    assert [v.version for v in versions.items] == [3, 2]
    assert [as_json(v)["status"] for v in versions.items] == ["active", "inactive"]
    older = await workflows.ListWorkflowVersions(
        workflows_pb2.ListWorkflowVersionsRequest(workflow_id=created.id, page=2, page_size=2)
    )
    assert [v.version for v in older.items] == [1]
    # Version 1 is immutable: it still holds the original graph.
    assert set(older.items[0].workflow_data.steps) == {"extract", "transform", "load"}
    assert older.items[0].id == v1_definition
    # Any version's id finds the same history.
    by_version = await workflows.ListWorkflowVersions(
        workflows_pb2.ListWorkflowVersionsRequest(workflow_id=v1_definition)
    )
    assert [v.version for v in by_version.items] == [3, 2, 1]


async def test_activate_deactivate_and_delete(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub,
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
    etl_agents: dict[str, str],
) -> None:
    created = await workflows.CreateWorkflow(create_request(SEED_WORKFLOW))
    ref = workflows_pb2.DeactivateWorkflowRequest(workflow_id=created.id)
    inactive = await workflows.DeactivateWorkflow(ref)
    assert inactive.status == workflows_pb2.Workflow.Status.inactive
    assert (await workflows.DeactivateWorkflow(ref)).status == inactive.status

    # Activation re-checks the agents.
    await agents.UpdateAgent(
        agents_pb2.UpdateAgentRequest(
            agent_id=etl_agents["DataLoaderAgent"], status=agents_pb2.Agent.Status.inactive
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.ActivateWorkflow(
            workflows_pb2.ActivateWorkflowRequest(workflow_id=created.id)
        )
    assert failure(caught.value).reason == "AGENT_UNAVAILABLE"
    await agents.UpdateAgent(
        agents_pb2.UpdateAgentRequest(
            agent_id=etl_agents["DataLoaderAgent"], status=agents_pb2.Agent.Status.active
        )
    )
    active = await workflows.ActivateWorkflow(
        workflows_pb2.ActivateWorkflowRequest(workflow_id=created.id)
    )
    assert active.status == workflows_pb2.Workflow.Status.active

    deleted = await workflows.DeleteWorkflow(
        workflows_pb2.DeleteWorkflowRequest(workflow_id=created.id)
    )
    assert deleted.message == f"Workflow '{created.id}' deleted successfully"
    assert (await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest())).total == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.ActivateWorkflow(
            workflows_pb2.ActivateWorkflowRequest(workflow_id=created.id)
        )
    found = failure(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WORKFLOW_DELETED")
    await workflows.DeleteWorkflow(workflows_pb2.DeleteWorkflowRequest(workflow_id=created.id))
    # The name is free again.
    await workflows.CreateWorkflow(create_request(SEED_WORKFLOW))


async def test_unknown_workflow(workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub) -> None:
    unknown = "456e7890-e89b-12d3-a456-426614174000"
    calls: list[Awaitable[Any]] = [
        workflows.GetWorkflow(workflows_pb2.GetWorkflowRequest(workflow_id=unknown)),
        workflows.UpdateWorkflow(
            workflows_pb2.UpdateWorkflowRequest(workflow_id=unknown, description="x")
        ),
        workflows.DeleteWorkflow(workflows_pb2.DeleteWorkflowRequest(workflow_id=unknown)),
        workflows.ListWorkflowVersions(
            workflows_pb2.ListWorkflowVersionsRequest(workflow_id=unknown)
        ),
        workflows.ActivateWorkflow(workflows_pb2.ActivateWorkflowRequest(workflow_id=unknown)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        found = failure(caught.value)
        assert (found.code, found.reason) == (grpc.StatusCode.NOT_FOUND, "WORKFLOW_NOT_FOUND")


async def test_list_filters_sorting_and_pagination(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub, etl_agents: dict[str, str]
) -> None:
    for name in ("charlie", "alpha", "bravo"):
        await workflows.CreateWorkflow(create_request(seed_with(name=name)))
    bravo = await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest(name="bravo"))
    assert [w.name for w in bravo.items] == ["bravo"]
    await workflows.UpdateWorkflow(
        workflows_pb2.UpdateWorkflowRequest(
            workflow_id=bravo.items[0].id,
            steps={"extract": workflows_pb2.Step(agent_name="DataExtractorAgent")},
        )
    )
    await workflows.DeactivateWorkflow(
        workflows_pb2.DeactivateWorkflowRequest(workflow_id=bravo.items[0].id)
    )

    by_name = await workflows.ListWorkflows(
        workflows_pb2.ListWorkflowsRequest(sort_by="name", sort_order="asc")
    )
    assert [w.name for w in by_name.items] == ["alpha", "bravo", "charlie"]
    newest = await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest())
    assert [w.name for w in newest.items] == ["bravo", "alpha", "charlie"]
    by_version = await workflows.ListWorkflows(
        workflows_pb2.ListWorkflowsRequest(sort_by="version", sort_order="desc", page_size=1)
    )
    assert [w.name for w in by_version.items] == ["bravo"]
    assert (by_version.total, by_version.total_pages) == (3, 3)
    active = await workflows.ListWorkflows(
        workflows_pb2.ListWorkflowsRequest(
            status=workflows_pb2.Workflow.Status.active, sort_by="name", sort_order="asc"
        )
    )
    assert [w.name for w in active.items] == ["alpha", "charlie"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest(sort_by="status"))
    assert "sort_by" in failure(caught.value).fields
