"""Testing one step: resolve its input as a run would, call its agent once, save the
result. Nothing of a run is created, so tests never count as runs."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from baton_server.agents.client import AgentCallError, AgentClient
from baton_server.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from baton_server.executor.catalog import load_agents
from baton_server.executor.mapping import Item, MappingError, resolve_input, resolve_items
from baton_server.paging import Page, PageRequest
from baton_server.runs.service import run_not_found
from baton_server.sealing import SecretBox
from baton_server.step_tests import store
from baton_server.step_tests.model import StepTest
from baton_server.workflows.service import workflow_not_found


class StepTestService:
    """Runs and lists the tests of single steps."""

    def __init__(self, pool: asyncpg.Pool, secrets: SecretBox, client: AgentClient) -> None:
        self._pool = pool
        self._secrets = secrets
        self._client = client

    async def test(
        self,
        project_id: uuid.UUID,
        workflow_id: uuid.UUID,
        step_id: str,
        *,
        input_data: dict[str, Any] | None,
        step_outputs: dict[str, Any],
        from_run_id: str | None,
        created_by: str,
    ) -> StepTest:
        async with self._pool.acquire() as conn:
            current = await store.current_version(conn, project_id, workflow_id)
            if current is None:
                raise workflow_not_found(workflow_id)
            version, workflow_data = current
            step = workflow_data["steps"].get(step_id)
            if step is None:
                raise NotFound(
                    f"Workflow '{workflow_id}' has no step '{step_id}'",
                    reason="STEP_NOT_FOUND",
                    metadata={"workflow_id": str(workflow_id), "step_id": step_id},
                )
            outputs: dict[str, Any] = {}
            if from_run_id:
                earlier = await store.run_outputs(conn, project_id, from_run_id)
                if earlier is None:
                    raise run_not_found(from_run_id)
                run_workflow, run_input, outputs = earlier
                if run_workflow != workflow_id:
                    raise InvalidArgument(
                        f"Run '{from_run_id}' is not a run of workflow '{workflow_id}'",
                        reason="RUN_OF_ANOTHER_WORKFLOW",
                        violations=[FieldViolation("from_run_id", "is a run of another workflow")],
                    )
                if input_data is None:
                    input_data = run_input
        try:
            available = outputs | step_outputs
            # A fan-out step is tested on the first item of its list.
            item = None
            if step.get("for_each"):
                items = resolve_items(step["for_each"], input_data or {}, available)
                if not items:
                    raise MappingError(f"for_each {step['for_each']} is an empty list")
                item = Item(0, items[0])
            payload = resolve_input(
                step.get("input_mapping") or {}, input_data or {}, available, item
            )
        except MappingError as error:
            raise InvalidArgument(
                f"Step '{step_id}' input cannot be resolved: {error}",
                reason="STEP_INPUT_UNRESOLVED",
                violations=[FieldViolation("step_outputs", str(error))],
            ) from None
        agent_name = step["agent_name"]
        _, agents = await load_agents(self._pool, self._secrets, project_id, {agent_name})
        target = agents[agent_name]
        if target is None:
            raise FailedPrecondition(
                f"Agent '{agent_name}' not found or inactive",
                reason="AGENT_UNAVAILABLE",
                metadata={"agent_names": agent_name},
            )
        endpoint = target.endpoint
        if step.get("timeout_ms"):
            endpoint = replace(endpoint, timeout_ms=step["timeout_ms"])
        test_id = uuid.uuid4()
        output: Any = None
        error_message: str | None = None
        started = time.monotonic()
        try:
            output = await self._client.call(
                endpoint, payload, idempotency_key=f"step-test/{test_id}"
            )
        except AgentCallError as failure:
            error_message = str(failure)
        duration_ms = round((time.monotonic() - started) * 1000)
        result = StepTest(
            id=test_id,
            workflow_id=workflow_id,
            workflow_version=version,
            step_id=step_id,
            agent_name=agent_name,
            input=payload,
            output=output,
            error_message=error_message,
            duration_ms=duration_ms,
            created_by=created_by,
            created_at=datetime.now(UTC),
        )
        async with self._pool.acquire() as conn:
            return await store.insert(conn, project_id, result)

    async def list_page(
        self, project_id: uuid.UUID, workflow_id: uuid.UUID, step_id: str, page: PageRequest
    ) -> Page[StepTest]:
        async with self._pool.acquire() as conn:
            if await store.current_version(conn, project_id, workflow_id) is None:
                raise workflow_not_found(workflow_id)
            return await store.list_page(conn, project_id, workflow_id, step_id, page)
