"""``client.workflows``: define, version, activate and deactivate workflows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from baton.v1 import workflows_pb2, workflows_pb2_grpc
from baton_sdk._convert import parse_mapping, to_struct, to_value
from baton_sdk._transport import Transport
from baton_sdk.models import Step, StepTest, Workflow, WorkflowStatus, WorkflowVersion
from baton_sdk.paging import AsyncPager, Page, SortOrder, numbered_pages

WorkflowSortField = Literal["name", "created_at", "updated_at", "version"]
"""Fields workflows can be sorted by."""
StepDefinition = Step | Mapping[str, Any]
"""A step given as a :class:`Step` or as its REST JSON object
(``{"agent_name": ..., "next_step": ..., "input_mapping": {...}}``)."""


def workflow_id(workflow: str | Workflow) -> str:
    """Return the id of a workflow given as an object or as an id.

    Args:
        workflow: A :class:`Workflow` or a workflow id.

    Returns:
        The workflow id.
    """
    return workflow.id if isinstance(workflow, Workflow) else workflow


def _step_proto(key: str, step: StepDefinition) -> workflows_pb2.Step:
    """Return one step definition as the contract's message.

    Raises:
        ValueError: A mapping has an unknown field or a value of the wrong type.
    """
    if isinstance(step, Step):
        return step.to_proto(key)
    message = parse_mapping(step, workflows_pb2.Step(), f"steps.{key}")
    message.id = message.id or key
    return message


def _steps_proto(steps: Mapping[str, StepDefinition]) -> dict[str, workflows_pb2.Step]:
    """Return step definitions keyed by step id as the contract's messages."""
    return {key: _step_proto(key, step) for key, step in steps.items()}


class Workflows:
    """Workflows: validated, versioned graphs of steps. Reached as ``client.workflows``."""

    def __init__(self, transport: Transport) -> None:
        """Bind to a client's transport; use ``client.workflows`` instead."""
        self._transport = transport
        self._stub = workflows_pb2_grpc.WorkflowServiceStub(transport.channel)

    async def create(
        self,
        *,
        name: str,
        start_step: str,
        steps: Mapping[str, StepDefinition],
        description: str = "",
        max_concurrent_runs: int | None = None,
        timeout: float | None = None,
    ) -> Workflow:
        """Create a workflow at version 1 (status ``active``).

        Args:
            name: Unique name, 1-255 characters.
            start_step: Id of the first step; a key of ``steps``.
            steps: Step definitions keyed by step id, as :class:`Step` objects or
                their REST JSON objects.
            description: Human-readable description.
            max_concurrent_runs: At most this many runs execute at once (1-10000);
                later ones wait PENDING, in order. ``None``: no limit.
            timeout: Deadline of this call in seconds (default: the client's).

        Returns:
            The new workflow.

        Raises:
            AlreadyExistsError: Another workflow has the name (``WORKFLOW_NAME_TAKEN``).
            WorkflowValidationError: The graph is invalid (unknown step, cycle,
                unreachable step, bad ``${...}`` reference); ``field_violations`` names
                the step and field.
            AgentUnavailableError: A step's agent is missing, inactive or deleted.
            InvalidArgumentError: A field breaks a declared rule.
            ValueError: A step mapping has an unknown field.
        """
        request = workflows_pb2.CreateWorkflowRequest(
            name=name,
            description=description,
            start_step=start_step,
            max_concurrent_runs=max_concurrent_runs,
        )
        for key, step in _steps_proto(steps).items():
            request.steps[key].CopyFrom(step)
        reply = await self._transport.unary(
            self._stub.CreateWorkflow, request, timeout=timeout, idempotent=False
        )
        return Workflow.from_proto(reply)

    def list(
        self,
        *,
        status: WorkflowStatus | None = None,
        name: str | None = None,
        sort_by: WorkflowSortField | None = None,
        sort_order: SortOrder | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[Workflow]:
        """List workflows at their current versions, newest first by default.

        Args:
            status: Only workflows with this status; by default all but deleted ones.
            name: Only the workflow with exactly this name.
            sort_by: ``name``, ``created_at`` (default), ``updated_at`` or ``version``.
            sort_order: ``asc`` or ``desc`` (default).
            page_size: Workflows fetched per call, 1-100.
            limit: Stop after this many workflows.
            timeout: Deadline of each page's call in seconds.

        Returns:
            An async iterable over the workflows, fetching pages as needed.
        """
        request = workflows_pb2.ListWorkflowsRequest(
            page_size=min(page_size, limit) if limit else page_size,
            name=name or "",
            sort_by=sort_by or "",
            sort_order=sort_order or "",
        )
        if status is not None:
            request.status = workflows_pb2.Workflow.Status.Value(WorkflowStatus(status).value)

        async def fetch(number: int) -> Page[Workflow]:
            paged = workflows_pb2.ListWorkflowsRequest()
            paged.CopyFrom(request)
            paged.page = number
            reply = await self._transport.unary(
                self._stub.ListWorkflows, paged, timeout=timeout, idempotent=True
            )
            return Page(
                items=tuple(Workflow.from_proto(item) for item in reply.items),
                page=reply.page,
                page_size=reply.page_size,
                total=reply.total,
                total_pages=reply.total_pages,
            )

        return AsyncPager(lambda: numbered_pages(fetch), key=lambda w: w.id, limit=limit)

    async def get(self, workflow: str | Workflow, *, timeout: float | None = None) -> Workflow:
        """Fetch a workflow at its current version.

        Args:
            workflow: The workflow or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The workflow.

        Raises:
            NotFoundError: No workflow has this id (``WORKFLOW_NOT_FOUND``).
        """
        request = workflows_pb2.GetWorkflowRequest(workflow_id=workflow_id(workflow))
        reply = await self._transport.unary(
            self._stub.GetWorkflow, request, timeout=timeout, idempotent=True
        )
        return Workflow.from_proto(reply)

    async def find(self, name: str, *, timeout: float | None = None) -> Workflow | None:
        """Fetch the workflow (not deleted) with this name.

        Args:
            name: The workflow's exact name.
            timeout: Deadline of this call in seconds.

        Returns:
            The workflow, or ``None`` when no workflow that is not deleted has the name.
        """
        async for found in self.list(name=name, limit=1, timeout=timeout):
            return found
        return None

    async def update(
        self,
        workflow: str | Workflow,
        *,
        name: str | None = None,
        description: str | None = None,
        start_step: str | None = None,
        steps: Mapping[str, StepDefinition] | None = None,
        status: WorkflowStatus | None = None,
        max_concurrent_runs: int | None = None,
        timeout: float | None = None,
    ) -> Workflow:
        """Change some fields of a workflow; arguments left ``None`` keep their values.

        Changing ``steps`` or ``start_step`` validates the new graph and creates a new
        version; runs already started keep the version they pinned.

        Args:
            workflow: The workflow or its id.
            name: New unique name.
            description: New description.
            start_step: New first step.
            steps: New step definitions, replacing all steps.
            status: New status.
            max_concurrent_runs: New limit of concurrently executing runs; 0 removes it.
            timeout: Deadline of this call in seconds.

        Returns:
            The workflow at its (possibly new) current version.

        Raises:
            NotFoundError: No workflow has this id.
            FailedPreconditionError: The workflow is deleted (``WORKFLOW_DELETED``).
            WorkflowValidationError: The new graph is invalid.
            AlreadyExistsError: The new name is taken.
        """
        request = workflows_pb2.UpdateWorkflowRequest(workflow_id=workflow_id(workflow))
        if name is not None:
            request.name = name
        if description is not None:
            request.description = description
        if start_step is not None:
            request.start_step = start_step
        if steps is not None:
            for key, step in _steps_proto(steps).items():
                request.steps[key].CopyFrom(step)
        if status is not None:
            request.status = workflows_pb2.Workflow.Status.Value(WorkflowStatus(status).value)
        if max_concurrent_runs is not None:
            request.max_concurrent_runs = max_concurrent_runs
        reply = await self._transport.unary(
            self._stub.UpdateWorkflow, request, timeout=timeout, idempotent=False
        )
        return Workflow.from_proto(reply)

    async def delete(self, workflow: str | Workflow, *, timeout: float | None = None) -> None:
        """Soft-delete a workflow (no new runs); deleting it again succeeds.

        Args:
            workflow: The workflow or its id.
            timeout: Deadline of this call in seconds.

        Raises:
            NotFoundError: No workflow has this id.
        """
        request = workflows_pb2.DeleteWorkflowRequest(workflow_id=workflow_id(workflow))
        await self._transport.unary(
            self._stub.DeleteWorkflow, request, timeout=timeout, idempotent=True
        )

    def versions(
        self,
        workflow: str | Workflow,
        *,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[WorkflowVersion]:
        """List the immutable versions of a workflow, newest first.

        Args:
            workflow: The workflow (or the id of the workflow or of any version).
            page_size: Versions fetched per call, 1-100.
            limit: Stop after this many versions.
            timeout: Deadline of each page's call in seconds.

        Returns:
            An async iterable over the versions, fetching pages as needed.
        """
        wanted = workflow_id(workflow)
        size = min(page_size, limit) if limit else page_size

        async def fetch(number: int) -> Page[WorkflowVersion]:
            request = workflows_pb2.ListWorkflowVersionsRequest(
                workflow_id=wanted, page=number, page_size=size
            )
            reply = await self._transport.unary(
                self._stub.ListWorkflowVersions, request, timeout=timeout, idempotent=True
            )
            return Page(
                items=tuple(WorkflowVersion.from_proto(item) for item in reply.items),
                page=reply.page,
                page_size=reply.page_size,
                total=reply.total,
                total_pages=reply.total_pages,
            )

        return AsyncPager(lambda: numbered_pages(fetch), key=lambda v: v.id, limit=limit)

    async def test_step(
        self,
        workflow: str | Workflow,
        step_id: str,
        *,
        input_data: Mapping[str, Any] | None = None,
        step_outputs: Mapping[str, Any] | None = None,
        from_run: str | None = None,
        timeout: float | None = None,
    ) -> StepTest:
        """Call one step's agent once with its input resolved as a run would; no run.

        Args:
            workflow: The workflow or its id (its current version is tested).
            step_id: The step.
            input_data: The workflow input its mapping reads (default: ``from_run``'s).
            step_outputs: Outputs of earlier steps its mapping reads, by step id.
            from_run: Take earlier steps' outputs (and the input) from this run.
            timeout: Deadline of this call in seconds.

        Returns:
            The saved test: the resolved input, the output or error, the duration. An
            agent error is a test with ``completed=False``, not an exception.

        Raises:
            InvalidArgumentError: The mapping reads an output that was not given
                (``STEP_INPUT_UNRESOLVED``).
            NotFoundError: No such workflow, step (``STEP_NOT_FOUND``) or run.
        """
        request = workflows_pb2.TestStepRequest(
            workflow_id=workflow_id(workflow), step_id=step_id, from_run_id=from_run or ""
        )
        if input_data is not None:
            request.input_data.CopyFrom(to_struct(input_data))
        for key, value in (step_outputs or {}).items():
            request.step_outputs[key].CopyFrom(to_value(value))
        reply = await self._transport.unary(
            self._stub.TestStep, request, timeout=timeout, idempotent=False
        )
        return StepTest.from_proto(reply)

    def step_tests(
        self,
        workflow: str | Workflow,
        step_id: str,
        *,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[StepTest]:
        """List the saved tests of a step, newest first.

        Args:
            workflow: The workflow or its id.
            step_id: The step.
            page_size: Tests fetched per call, 1-100.
            limit: Stop after this many tests.
            timeout: Deadline of each page's call in seconds.

        Returns:
            An async iterable over the tests, fetching pages as needed.
        """
        wanted = workflow_id(workflow)
        size = min(page_size, limit) if limit else page_size

        async def fetch(number: int) -> Page[StepTest]:
            request = workflows_pb2.ListStepTestsRequest(
                workflow_id=wanted, step_id=step_id, page=number, page_size=size
            )
            reply = await self._transport.unary(
                self._stub.ListStepTests, request, timeout=timeout, idempotent=True
            )
            return Page(
                items=tuple(StepTest.from_proto(item) for item in reply.items),
                page=reply.page,
                page_size=reply.page_size,
                total=reply.total,
                total_pages=reply.total_pages,
            )

        return AsyncPager(lambda: numbered_pages(fetch), key=lambda t: t.id, limit=limit)

    async def activate(self, workflow: str | Workflow, *, timeout: float | None = None) -> Workflow:
        """Make a workflow runnable again, after checking its agents are active.

        Activating an active workflow changes nothing.

        Args:
            workflow: The workflow or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The workflow.

        Raises:
            NotFoundError: No workflow has this id.
            AgentUnavailableError: One of its agents is no longer active.
        """
        request = workflows_pb2.ActivateWorkflowRequest(workflow_id=workflow_id(workflow))
        reply = await self._transport.unary(
            self._stub.ActivateWorkflow, request, timeout=timeout, idempotent=True
        )
        return Workflow.from_proto(reply)

    async def deactivate(
        self, workflow: str | Workflow, *, timeout: float | None = None
    ) -> Workflow:
        """Stop new runs of a workflow; runs already started continue.

        Deactivating an inactive workflow changes nothing.

        Args:
            workflow: The workflow or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The workflow.

        Raises:
            NotFoundError: No workflow has this id.
        """
        request = workflows_pb2.DeactivateWorkflowRequest(workflow_id=workflow_id(workflow))
        reply = await self._transport.unary(
            self._stub.DeactivateWorkflow, request, timeout=timeout, idempotent=True
        )
        return Workflow.from_proto(reply)
