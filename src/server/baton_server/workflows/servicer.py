"""``baton.v1.WorkflowService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import json_format, wrappers_pb2

from baton.v1 import workflows_pb2, workflows_pb2_grpc
from baton_server.access.context import caller
from baton_server.paging import Sort
from baton_server.rpc.convert import (
    dict_to_struct,
    integral,
    json_value,
    page_fields,
    page_request,
    parse_uuid,
    present,
    struct_to_dict,
    timestamp,
)
from baton_server.runs.service import DEFAULT_ACTOR
from baton_server.step_tests.model import StepTest
from baton_server.step_tests.service import StepTestService
from baton_server.workflows.model import Workflow, WorkflowChanges, WorkflowSpec, WorkflowVersion
from baton_server.workflows.service import WorkflowService

_Context = grpc.aio.ServicerContext[Any, Any]
_Status = workflows_pb2.Workflow.Status
_ItemFailure = workflows_pb2.Step.ItemFailure


def _wait_from_proto(wait: workflows_pb2.Wait) -> dict[str, Any]:
    """The stored form of a wait: the outcome by name, optional fields only when set."""
    outcome = wait.on_timeout or workflows_pb2.Wait.TimeoutOutcome.Value("fail")
    found: dict[str, Any] = {
        "signal": wait.signal,
        "on_timeout": workflows_pb2.Wait.TimeoutOutcome.Name(outcome),
    }
    if wait.HasField("timeout_seconds"):
        found["timeout_seconds"] = wait.timeout_seconds
    if wait.HasField("timeout_output"):
        found["timeout_output"] = integral(json_format.MessageToDict(wait.timeout_output))
    return found


def _wait_to_proto(wait: Mapping[str, Any]) -> workflows_pb2.Wait:
    message = workflows_pb2.Wait(
        signal=wait["signal"],
        timeout_seconds=wait.get("timeout_seconds"),
        on_timeout=workflows_pb2.Wait.TimeoutOutcome.Value(wait["on_timeout"]),
    )
    if "timeout_output" in wait:
        message.timeout_output.CopyFrom(json_value(wait["timeout_output"]))
    return message


def steps_from_proto(steps: Mapping[str, workflows_pb2.Step]) -> dict[str, dict[str, Any]]:
    return {
        key: {
            "id": step.id,
            "agent_name": step.agent_name,
            "next_step": step.next_step.value if step.HasField("next_step") else None,
            "input_mapping": struct_to_dict(step.input_mapping),
            "depends_on": list(step.depends_on),
            "routes": [{"when": r.when, "next_step": r.next_step} for r in step.routes],
            "timeout_ms": step.timeout_ms if step.HasField("timeout_ms") else None,
            "wait": _wait_from_proto(step.wait) if step.HasField("wait") else None,
            "for_each": step.for_each or None,
            "max_parallel": step.max_parallel if step.HasField("max_parallel") else None,
            "on_item_failure": (
                _ItemFailure.Name(step.on_item_failure) if step.on_item_failure else None
            ),
        }
        for key, step in steps.items()
    }


def workflow_data_to_proto(data: Mapping[str, Any]) -> workflows_pb2.WorkflowData:
    return workflows_pb2.WorkflowData(
        start_step=data["start_step"],
        steps={
            key: workflows_pb2.Step(
                id=step["id"],
                agent_name=step["agent_name"],
                next_step=(
                    wrappers_pb2.StringValue(value=step["next_step"])
                    if step.get("next_step")
                    else None
                ),
                input_mapping=dict_to_struct(step["input_mapping"]),
                depends_on=step.get("depends_on", []),
                routes=[workflows_pb2.Route(**route) for route in step.get("routes", [])],
                timeout_ms=step.get("timeout_ms"),
                wait=_wait_to_proto(step["wait"]) if step.get("wait") else None,
                for_each=step.get("for_each") or "",
                max_parallel=step.get("max_parallel"),
                on_item_failure=_ItemFailure.Value(
                    step.get("on_item_failure") or "ITEM_FAILURE_UNSPECIFIED"
                ),
            )
            for key, step in data["steps"].items()
        },
    )


def workflow_to_proto(workflow: Workflow) -> workflows_pb2.Workflow:
    return workflows_pb2.Workflow(
        id=str(workflow.id),
        name=workflow.name,
        description=workflow.description,
        version=workflow.version,
        workflow_data=workflow_data_to_proto(workflow.workflow_data),
        status=_Status.Value(workflow.status),
        created_at=timestamp(workflow.created_at),
        updated_at=timestamp(workflow.updated_at),
        definition_id=str(workflow.definition_id),
        project_id=str(workflow.project_id),
        max_concurrent_runs=workflow.max_concurrent_runs,
    )


def _version_to_proto(version: WorkflowVersion) -> workflows_pb2.WorkflowVersion:
    return workflows_pb2.WorkflowVersion(
        id=str(version.id),
        workflow_id=str(version.workflow_id),
        name=version.name,
        version=version.version,
        workflow_data=workflow_data_to_proto(version.workflow_data),
        status=_Status.Value(version.status),
        created_at=timestamp(version.created_at),
        updated_at=timestamp(version.created_at),
    )


def _step_test_to_proto(test: StepTest) -> workflows_pb2.StepTest:
    message = workflows_pb2.StepTest(
        id=str(test.id),
        workflow_id=str(test.workflow_id),
        workflow_version=test.workflow_version,
        step_id=test.step_id,
        agent_name=test.agent_name,
        input=dict_to_struct(test.input),
        error_message=test.error_message,
        duration_ms=test.duration_ms,
        status=workflows_pb2.StepTest.Status.Value(test.status),
        created_by=test.created_by,
        created_at=timestamp(test.created_at),
    )
    if test.error_message is None:
        message.output.CopyFrom(json_value(test.output))
    return message


class WorkflowServicer(workflows_pb2_grpc.WorkflowServiceServicer):
    """Translates WorkflowService RPCs to ``WorkflowService`` use cases."""

    def __init__(self, service: WorkflowService, step_tests: StepTestService) -> None:
        self._service = service
        self._step_tests = step_tests

    async def CreateWorkflow(
        self, request: workflows_pb2.CreateWorkflowRequest, context: _Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._service.create(
            caller().project_id,
            WorkflowSpec(
                name=request.name,
                description=request.description,
                start_step=request.start_step,
                steps=steps_from_proto(request.steps),
                max_concurrent_runs=present(request, "max_concurrent_runs"),
            ),
        )
        return workflow_to_proto(workflow)

    async def ListWorkflows(
        self, request: workflows_pb2.ListWorkflowsRequest, context: _Context
    ) -> workflows_pb2.ListWorkflowsResponse:
        page = await self._service.list_page(
            caller().project_id,
            status=_Status.Name(request.status) if request.status else None,
            name=request.name or None,
            sort=Sort.parse(request.sort_by, request.sort_order),
            page=page_request(request),
        )
        return workflows_pb2.ListWorkflowsResponse(
            items=[workflow_to_proto(w) for w in page.items],
            **page_fields(page),
        )

    async def GetWorkflow(
        self, request: workflows_pb2.GetWorkflowRequest, context: _Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._service.get(
            caller().project_id, parse_uuid(request.workflow_id, "workflow_id")
        )
        return workflow_to_proto(workflow)

    async def UpdateWorkflow(
        self, request: workflows_pb2.UpdateWorkflowRequest, context: _Context
    ) -> workflows_pb2.Workflow:
        changes = WorkflowChanges(
            name=present(request, "name"),
            description=present(request, "description"),
            start_step=present(request, "start_step"),
            steps=steps_from_proto(request.steps) if request.steps else None,
            status=_Status.Name(request.status) if request.HasField("status") else None,
            max_concurrent_runs=present(request, "max_concurrent_runs"),
        )
        workflow = await self._service.update(
            caller().project_id, parse_uuid(request.workflow_id, "workflow_id"), changes
        )
        return workflow_to_proto(workflow)

    async def DeleteWorkflow(
        self, request: workflows_pb2.DeleteWorkflowRequest, context: _Context
    ) -> workflows_pb2.DeleteWorkflowResponse:
        await self._service.delete(
            caller().project_id, parse_uuid(request.workflow_id, "workflow_id")
        )
        return workflows_pb2.DeleteWorkflowResponse(
            message=f"Workflow '{request.workflow_id}' deleted successfully"
        )

    async def ListWorkflowVersions(
        self, request: workflows_pb2.ListWorkflowVersionsRequest, context: _Context
    ) -> workflows_pb2.ListWorkflowVersionsResponse:
        page = await self._service.list_versions(
            caller().project_id,
            parse_uuid(request.workflow_id, "workflow_id"),
            page_request(request),
        )
        return workflows_pb2.ListWorkflowVersionsResponse(
            items=[_version_to_proto(v) for v in page.items],
            **page_fields(page),
        )

    async def TestStep(
        self, request: workflows_pb2.TestStepRequest, context: _Context
    ) -> workflows_pb2.StepTest:
        identity = caller()
        test = await self._step_tests.test(
            identity.project_id,
            parse_uuid(request.workflow_id, "workflow_id"),
            request.step_id,
            input_data=struct_to_dict(request.input_data)
            if request.HasField("input_data")
            else None,
            step_outputs={
                step_id: integral(json_format.MessageToDict(value))
                for step_id, value in request.step_outputs.items()
            },
            from_run_id=request.from_run_id or None,
            created_by=DEFAULT_ACTOR if identity.anonymous else identity.name,
        )
        return _step_test_to_proto(test)

    async def ListStepTests(
        self, request: workflows_pb2.ListStepTestsRequest, context: _Context
    ) -> workflows_pb2.ListStepTestsResponse:
        page = await self._step_tests.list_page(
            caller().project_id,
            parse_uuid(request.workflow_id, "workflow_id"),
            request.step_id,
            page_request(request),
        )
        return workflows_pb2.ListStepTestsResponse(
            items=[_step_test_to_proto(t) for t in page.items], **page_fields(page)
        )

    async def ActivateWorkflow(
        self, request: workflows_pb2.ActivateWorkflowRequest, context: _Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._service.set_active(
            caller().project_id, parse_uuid(request.workflow_id, "workflow_id"), True
        )
        return workflow_to_proto(workflow)

    async def DeactivateWorkflow(
        self, request: workflows_pb2.DeactivateWorkflowRequest, context: _Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._service.set_active(
            caller().project_id, parse_uuid(request.workflow_id, "workflow_id"), False
        )
        return workflow_to_proto(workflow)
