"""The synchronous facade, for scripts and notebooks: :func:`connect_sync`.

Every method mirrors the async client's and blocks until done; listings and streams
are plain iterators. Under the hood the async client runs on an event loop in a
private thread, so behaviour (deadlines, retries, resumed streams, errors) is the
same, and it works inside Jupyter where a loop already runs.

Example:
    >>> import baton_sdk
    >>> with baton_sdk.connect_sync("localhost:50051") as client:
    ...     run = client.runs.execute(workflow_id, input_data={"n": 1}, wait=True)
    ...     print(run.status, run.output)
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from baton_sdk._loop_thread import LoopThread
from baton_sdk.access import ApiKey, AuditEvent, Caller, CreatedApiKey, Project, Role
from baton_sdk.agents import AgentSortField
from baton_sdk.client import DEFAULT_TIMEOUT, BatonClient, connect
from baton_sdk.models import (
    Agent,
    AgentHealth,
    AgentProtocol,
    AgentStatus,
    AuthType,
    RetryConfig,
    Run,
    RunData,
    RunEvent,
    RunLog,
    RunStatus,
    RunStep,
    StepTest,
    Workflow,
    WorkflowStatus,
    WorkflowVersion,
)
from baton_sdk.options import RetryPolicy, TLSConfig
from baton_sdk.paging import AsyncPager, Page, SortOrder
from baton_sdk.runs import RunSortField
from baton_sdk.schedules import FireOutcome, Schedule, ScheduleFire
from baton_sdk.usage import ModelPrice
from baton_sdk.webhooks import Delivery, DeliveryStatus, Webhook
from baton_sdk.workflows import StepDefinition, WorkflowSortField

T = TypeVar("T")
U = TypeVar("U")


class SyncPager(Generic[T]):
    """Every item of a listing, fetched page by page as you iterate (blocking).

    The synchronous twin of :class:`~baton_sdk.paging.AsyncPager`.
    """

    def __init__(self, loop: LoopThread, pager: AsyncPager[U], convert: Callable[[U], T]) -> None:
        """Wrap an async pager; the sync client's ``list`` methods do this."""
        self._loop = loop
        self._pager: AsyncPager[Any] = pager
        self._convert: Callable[[Any], T] = convert

    def __iter__(self) -> Iterator[T]:
        """Iterate over the items of every page, up to the limit."""
        return (self._convert(item) for item in self._loop.iterate(aiter(self._pager)))

    def pages(self) -> Iterator[Page[T]]:
        """Iterate over whole pages, as the server returns them (ignores ``limit``)."""
        for page in self._loop.iterate(self._pager.pages()):
            yield Page(
                items=tuple(self._convert(item) for item in page.items),
                page=page.page,
                page_size=page.page_size,
                total=page.total,
                total_pages=page.total_pages,
            )

    def to_list(self) -> list[T]:
        """Fetch every item (up to the limit) into a list."""
        return list(self)


def _same(item: T) -> T:
    return item


@dataclass(frozen=True, kw_only=True)
class SyncRun(RunData):
    """A run, as returned by the sync client: :class:`RunData` plus shortcuts."""

    _runs: SyncRuns | None = field(default=None, repr=False, compare=False)

    def wait(self, *, timeout: float | None = None) -> SyncRun:
        """Wait for this run to finish; same as ``client.runs.wait(run)``.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            The finished run (COMPLETED, FAILED or CANCELLED).

        Raises:
            WaitTimeoutError: The run did not finish in time (it goes on).
        """
        return self._owner().wait(self.id, timeout=timeout)

    def watch(
        self, *, after_sequence: int = 0, timeout: float | None = None
    ) -> Generator[RunEvent, None, None]:
        """Stream this run's events; same as ``client.runs.watch(run)``."""
        return self._owner().watch(self.id, after_sequence=after_sequence, timeout=timeout)

    def refresh(self) -> SyncRun:
        """Fetch the run's current state; same as ``client.runs.get(run)``."""
        return self._owner().get(self.id)

    def _owner(self) -> SyncRuns:
        if self._runs is None:
            raise RuntimeError("this SyncRun was not returned by a client; use client.runs")
        return self._runs


class SyncModelPrices:
    """Blocking twin of :class:`~baton_sdk.usage.ModelPrices` (``client.model_prices``)."""

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._prices = client.model_prices

    def create(
        self,
        model: str,
        *,
        input_usd_per_million: float,
        output_usd_per_million: float,
        timeout: float | None = None,
    ) -> ModelPrice:
        """Set the price of a model. See :meth:`ModelPrices.create`."""
        return self._loop.run(
            self._prices.create(
                model,
                input_usd_per_million=input_usd_per_million,
                output_usd_per_million=output_usd_per_million,
                timeout=timeout,
            )
        )

    def get(self, price_id: str, *, timeout: float | None = None) -> ModelPrice:
        """One price."""
        return self._loop.run(self._prices.get(price_id, timeout=timeout))

    def list(
        self, *, page_size: int = 100, limit: int | None = None, timeout: float | None = None
    ) -> SyncPager[ModelPrice]:
        """Every price of the project, by model."""
        pager = self._prices.list(page_size=page_size, limit=limit, timeout=timeout)
        return SyncPager(self._loop, pager, _same)

    def update(self, price_id: str, **changes: Any) -> ModelPrice:
        """Change the prices given. See :meth:`ModelPrices.update`."""
        return self._loop.run(self._prices.update(price_id, **changes))

    def delete(self, price_id: str, *, timeout: float | None = None) -> None:
        """Delete a price."""
        self._loop.run(self._prices.delete(price_id, timeout=timeout))


class SyncWebhooks:
    """Blocking twin of :class:`~baton_sdk.webhooks.Webhooks` (``client.webhooks``)."""

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._webhooks = client.webhooks

    def create(
        self,
        *,
        url: str,
        events: Sequence[str],
        secret: str | None = None,
        description: str = "",
        enabled: bool = True,
        timeout: float | None = None,
    ) -> Webhook:
        """Subscribe an endpoint. See :meth:`Webhooks.create`."""
        return self._loop.run(
            self._webhooks.create(
                url=url,
                events=events,
                secret=secret,
                description=description,
                enabled=enabled,
                timeout=timeout,
            )
        )

    def get(self, webhook_id: str, *, timeout: float | None = None) -> Webhook:
        """One webhook."""
        return self._loop.run(self._webhooks.get(webhook_id, timeout=timeout))

    def list(
        self, *, page_size: int = 100, limit: int | None = None, timeout: float | None = None
    ) -> SyncPager[Webhook]:
        """Every webhook of the project."""
        pager = self._webhooks.list(page_size=page_size, limit=limit, timeout=timeout)
        return SyncPager(self._loop, pager, _same)

    def update(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change the fields given. See :meth:`Webhooks.update`."""
        return self._loop.run(self._webhooks.update(webhook_id, **changes))

    def delete(self, webhook_id: str, *, timeout: float | None = None) -> None:
        """Unsubscribe."""
        self._loop.run(self._webhooks.delete(webhook_id, timeout=timeout))

    def deliveries(
        self,
        webhook_id: str,
        *,
        status: DeliveryStatus | None = None,
        page_size: int = 100,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[Delivery]:
        """A webhook's deliveries, newest first."""
        pager = self._webhooks.deliveries(
            webhook_id, status=status, page_size=page_size, limit=limit, timeout=timeout
        )
        return SyncPager(self._loop, pager, _same)

    def redeliver(
        self, webhook_id: str, delivery_id: str, *, timeout: float | None = None
    ) -> Delivery:
        """Deliver again now."""
        return self._loop.run(self._webhooks.redeliver(webhook_id, delivery_id, timeout=timeout))

    def test(self, webhook_id: str, *, timeout: float | None = None) -> Delivery:
        """Queue a ``ping`` delivery."""
        return self._loop.run(self._webhooks.test(webhook_id, timeout=timeout))


class SyncAccess:
    """Blocking twin of :class:`~baton_sdk.access.Access` (``client.access``)."""

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._access = client.access

    def caller(self, *, timeout: float | None = None) -> Caller:
        """Who the server takes this client to be."""
        return self._loop.run(self._access.caller(timeout=timeout))

    def create_project(
        self, *, name: str, description: str = "", timeout: float | None = None
    ) -> Project:
        """Create a project. See :meth:`Access.create_project`."""
        return self._loop.run(
            self._access.create_project(name=name, description=description, timeout=timeout)
        )

    def get_project(self, project_id: str, *, timeout: float | None = None) -> Project:
        """Fetch one project by id."""
        return self._loop.run(self._access.get_project(project_id, timeout=timeout))

    def list_projects(
        self, *, page_size: int = 20, limit: int | None = None, timeout: float | None = None
    ) -> SyncPager[Project]:
        """List projects by name."""
        pager = self._access.list_projects(page_size=page_size, limit=limit, timeout=timeout)
        return SyncPager(self._loop, pager, _same)

    def create_key(
        self,
        *,
        name: str,
        role: Role | str,
        project_id: str | None = None,
        expires_at: datetime | None = None,
        timeout: float | None = None,
    ) -> CreatedApiKey:
        """Create an API key. See :meth:`Access.create_key`."""
        return self._loop.run(
            self._access.create_key(
                name=name, role=role, project_id=project_id, expires_at=expires_at, timeout=timeout
            )
        )

    def get_key(self, key_id: str, *, timeout: float | None = None) -> ApiKey:
        """Fetch one API key (never its secret)."""
        return self._loop.run(self._access.get_key(key_id, timeout=timeout))

    def list_keys(
        self,
        *,
        project_id: str | None = None,
        include_revoked: bool = False,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[ApiKey]:
        """List API keys, newest first."""
        pager = self._access.list_keys(
            project_id=project_id,
            include_revoked=include_revoked,
            page_size=page_size,
            limit=limit,
            timeout=timeout,
        )
        return SyncPager(self._loop, pager, _same)

    def revoke_key(self, key_id: str, *, timeout: float | None = None) -> ApiKey:
        """Revoke an API key."""
        return self._loop.run(self._access.revoke_key(key_id, timeout=timeout))

    def audit_events(
        self,
        *,
        actor: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        project_id: str | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[AuditEvent]:
        """List audit events, newest first."""
        pager = self._access.audit_events(
            actor=actor,
            resource_type=resource_type,
            resource_id=resource_id,
            project_id=project_id,
            page_size=page_size,
            limit=limit,
            timeout=timeout,
        )
        return SyncPager(self._loop, pager, _same)


class SyncAgents:
    """Blocking twin of :class:`~baton_sdk.agents.Agents` (``client.agents``)."""

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._agents = client.agents

    def create(
        self,
        *,
        name: str,
        url: str,
        description: str = "",
        auth_type: AuthType | None = None,
        auth_config: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retry_config: RetryConfig | Mapping[str, Any] | None = None,
        protocol: AgentProtocol | None = None,
        timeout: float | None = None,
    ) -> Agent:
        """Register an agent. See :meth:`Agents.create <baton_sdk.agents.Agents.create>`."""
        return self._loop.run(
            self._agents.create(
                name=name,
                url=url,
                description=description,
                auth_type=auth_type,
                auth_config=auth_config,
                timeout_ms=timeout_ms,
                retry_config=retry_config,
                protocol=protocol,
                timeout=timeout,
            )
        )

    def list(
        self,
        *,
        status: AgentStatus | None = None,
        name: str | None = None,
        sort_by: AgentSortField | None = None,
        sort_order: SortOrder | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[Agent]:
        """List agents. See :meth:`Agents.list <baton_sdk.agents.Agents.list>`."""
        pager = self._agents.list(
            status=status,
            name=name,
            sort_by=sort_by,
            sort_order=sort_order,
            page_size=page_size,
            limit=limit,
            timeout=timeout,
        )
        return SyncPager(self._loop, pager, _same)

    def get(self, agent: str | Agent, *, timeout: float | None = None) -> Agent:
        """Fetch one agent. See :meth:`Agents.get <baton_sdk.agents.Agents.get>`."""
        return self._loop.run(self._agents.get(agent, timeout=timeout))

    def find(self, name: str, *, timeout: float | None = None) -> Agent | None:
        """Fetch the agent with this name, or ``None``. See :meth:`Agents.find
        <baton_sdk.agents.Agents.find>`."""
        return self._loop.run(self._agents.find(name, timeout=timeout))

    def update(
        self,
        agent: str | Agent,
        *,
        url: str | None = None,
        description: str | None = None,
        auth_type: AuthType | None = None,
        auth_config: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retry_config: RetryConfig | Mapping[str, Any] | None = None,
        status: AgentStatus | None = None,
        protocol: AgentProtocol | None = None,
        timeout: float | None = None,
    ) -> Agent:
        """Change some fields of an agent. See :meth:`Agents.update
        <baton_sdk.agents.Agents.update>`."""
        return self._loop.run(
            self._agents.update(
                agent,
                url=url,
                description=description,
                auth_type=auth_type,
                auth_config=auth_config,
                timeout_ms=timeout_ms,
                retry_config=retry_config,
                status=status,
                protocol=protocol,
                timeout=timeout,
            )
        )

    def delete(self, agent: str | Agent, *, timeout: float | None = None) -> None:
        """Soft-delete an agent. See :meth:`Agents.delete <baton_sdk.agents.Agents.delete>`."""
        self._loop.run(self._agents.delete(agent, timeout=timeout))

    def check_health(self, agent: str | Agent, *, timeout: float | None = None) -> AgentHealth:
        """Probe an agent. See :meth:`Agents.check_health
        <baton_sdk.agents.Agents.check_health>`."""
        return self._loop.run(self._agents.check_health(agent, timeout=timeout))


class SyncWorkflows:
    """Blocking twin of :class:`~baton_sdk.workflows.Workflows` (``client.workflows``)."""

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._workflows = client.workflows

    def create(
        self,
        *,
        name: str,
        start_step: str,
        steps: Mapping[str, StepDefinition],
        description: str = "",
        max_concurrent_runs: int | None = None,
        timeout: float | None = None,
    ) -> Workflow:
        """Create a workflow. See :meth:`Workflows.create
        <baton_sdk.workflows.Workflows.create>`."""
        return self._loop.run(
            self._workflows.create(
                name=name,
                start_step=start_step,
                steps=steps,
                description=description,
                max_concurrent_runs=max_concurrent_runs,
                timeout=timeout,
            )
        )

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
    ) -> SyncPager[Workflow]:
        """List workflows. See :meth:`Workflows.list <baton_sdk.workflows.Workflows.list>`."""
        pager = self._workflows.list(
            status=status,
            name=name,
            sort_by=sort_by,
            sort_order=sort_order,
            page_size=page_size,
            limit=limit,
            timeout=timeout,
        )
        return SyncPager(self._loop, pager, _same)

    def get(self, workflow: str | Workflow, *, timeout: float | None = None) -> Workflow:
        """Fetch a workflow. See :meth:`Workflows.get <baton_sdk.workflows.Workflows.get>`."""
        return self._loop.run(self._workflows.get(workflow, timeout=timeout))

    def find(self, name: str, *, timeout: float | None = None) -> Workflow | None:
        """Fetch the workflow with this name, or ``None``. See :meth:`Workflows.find
        <baton_sdk.workflows.Workflows.find>`."""
        return self._loop.run(self._workflows.find(name, timeout=timeout))

    def update(
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
        """Change some fields of a workflow. See :meth:`Workflows.update
        <baton_sdk.workflows.Workflows.update>`."""
        return self._loop.run(
            self._workflows.update(
                workflow,
                name=name,
                description=description,
                start_step=start_step,
                steps=steps,
                status=status,
                max_concurrent_runs=max_concurrent_runs,
                timeout=timeout,
            )
        )

    def delete(self, workflow: str | Workflow, *, timeout: float | None = None) -> None:
        """Soft-delete a workflow. See :meth:`Workflows.delete
        <baton_sdk.workflows.Workflows.delete>`."""
        self._loop.run(self._workflows.delete(workflow, timeout=timeout))

    def versions(
        self,
        workflow: str | Workflow,
        *,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[WorkflowVersion]:
        """List a workflow's versions. See :meth:`Workflows.versions
        <baton_sdk.workflows.Workflows.versions>`."""
        pager = self._workflows.versions(
            workflow, page_size=page_size, limit=limit, timeout=timeout
        )
        return SyncPager(self._loop, pager, _same)

    def test_step(
        self,
        workflow: str | Workflow,
        step_id: str,
        *,
        input_data: Mapping[str, Any] | None = None,
        step_outputs: Mapping[str, Any] | None = None,
        from_run: str | None = None,
        timeout: float | None = None,
    ) -> StepTest:
        """Test one step on its own. See :meth:`Workflows.test_step
        <baton_sdk.workflows.Workflows.test_step>`."""
        return self._loop.run(
            self._workflows.test_step(
                workflow,
                step_id,
                input_data=input_data,
                step_outputs=step_outputs,
                from_run=from_run,
                timeout=timeout,
            )
        )

    def step_tests(
        self,
        workflow: str | Workflow,
        step_id: str,
        *,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[StepTest]:
        """List a step's saved tests. See :meth:`Workflows.step_tests
        <baton_sdk.workflows.Workflows.step_tests>`."""
        pager = self._workflows.step_tests(
            workflow, step_id, page_size=page_size, limit=limit, timeout=timeout
        )
        return SyncPager(self._loop, pager, _same)

    def activate(self, workflow: str | Workflow, *, timeout: float | None = None) -> Workflow:
        """Make a workflow runnable again. See :meth:`Workflows.activate
        <baton_sdk.workflows.Workflows.activate>`."""
        return self._loop.run(self._workflows.activate(workflow, timeout=timeout))

    def deactivate(self, workflow: str | Workflow, *, timeout: float | None = None) -> Workflow:
        """Stop new runs of a workflow. See :meth:`Workflows.deactivate
        <baton_sdk.workflows.Workflows.deactivate>`."""
        return self._loop.run(self._workflows.deactivate(workflow, timeout=timeout))


class SyncRuns:
    """Blocking twin of :class:`~baton_sdk.runs.Runs` (``client.runs``)."""

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._runs = client.runs

    def _sync(self, run: Run) -> SyncRun:
        return SyncRun(**run.data_fields(), _runs=self)

    def execute(
        self,
        workflow: str | Workflow,
        *,
        input_data: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        triggered_by: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        callback_url: str | None = None,
        callback_secret: str | None = None,
        run_timeout_s: int | None = None,
    ) -> SyncRun:
        """Start a run (and with ``wait=True`` return it finished). See
        :meth:`Runs.execute <baton_sdk.runs.Runs.execute>`."""
        run = self._loop.run(
            self._runs.execute(
                workflow,
                input_data=input_data,
                request_id=request_id,
                triggered_by=triggered_by,
                wait=wait,
                timeout=timeout,
                callback_url=callback_url,
                callback_secret=callback_secret,
                run_timeout_s=run_timeout_s,
            )
        )
        return self._sync(run)

    def list(
        self,
        *,
        workflow: str | Workflow | None = None,
        status: RunStatus | None = None,
        workflow_definition_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        sort_by: RunSortField | None = None,
        sort_order: SortOrder | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[SyncRun]:
        """List runs. See :meth:`Runs.list <baton_sdk.runs.Runs.list>`."""
        pager = self._runs.list(
            workflow=workflow,
            status=status,
            workflow_definition_id=workflow_definition_id,
            created_after=created_after,
            created_before=created_before,
            sort_by=sort_by,
            sort_order=sort_order,
            page_size=page_size,
            limit=limit,
            timeout=timeout,
        )
        return SyncPager(self._loop, pager, self._sync)

    def get(self, run: str | RunData, *, timeout: float | None = None) -> SyncRun:
        """Fetch a run. See :meth:`Runs.get <baton_sdk.runs.Runs.get>`."""
        return self._sync(self._loop.run(self._runs.get(run, timeout=timeout)))

    def steps(self, run: str | RunData, *, timeout: float | None = None) -> builtins.list[RunStep]:
        """Fetch the steps of a run. See :meth:`Runs.steps <baton_sdk.runs.Runs.steps>`."""
        return self._loop.run(self._runs.steps(run, timeout=timeout))

    def logs(
        self,
        run: str | RunData,
        *,
        step_id: str | None = None,
        after_sequence: int = 0,
        page_size: int = 1000,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[RunLog]:
        """List the log of a run. See :meth:`Runs.logs <baton_sdk.runs.Runs.logs>`."""
        pager = self._runs.logs(
            run,
            step_id=step_id,
            after_sequence=after_sequence,
            page_size=page_size,
            limit=limit,
            timeout=timeout,
        )
        return SyncPager(self._loop, pager, _same)

    def follow_logs(
        self, run: str | RunData, *, step_id: str | None = None
    ) -> Generator[RunLog, None, None]:
        """Yield the log, then new lines live until the run ends. See
        :meth:`Runs.follow_logs <baton_sdk.runs.Runs.follow_logs>`."""
        return self._loop.iterate(self._runs.follow_logs(run, step_id=step_id))

    def retry(
        self, run: str | RunData, *, wait: bool = False, timeout: float | None = None
    ) -> SyncRun:
        """Retry a failed or cancelled run. See :meth:`Runs.retry <baton_sdk.runs.Runs.retry>`."""
        return self._sync(self._loop.run(self._runs.retry(run, wait=wait, timeout=timeout)))

    def cancel(
        self,
        run: str | RunData,
        *,
        reason: str = "",
        cancelled_by: str | None = None,
        timeout: float | None = None,
    ) -> SyncRun:
        """Cancel a run. See :meth:`Runs.cancel <baton_sdk.runs.Runs.cancel>`."""
        cancelled = self._runs.cancel(
            run, reason=reason, cancelled_by=cancelled_by, timeout=timeout
        )
        return self._sync(self._loop.run(cancelled))

    def pause(
        self, run: str | RunData, *, reason: str = "", timeout: float | None = None
    ) -> SyncRun:
        """Pause a run. See :meth:`Runs.pause <baton_sdk.runs.Runs.pause>`."""
        return self._sync(self._loop.run(self._runs.pause(run, reason=reason, timeout=timeout)))

    def resume(self, run: str | RunData, *, timeout: float | None = None) -> SyncRun:
        """Resume a paused run. See :meth:`Runs.resume <baton_sdk.runs.Runs.resume>`."""
        return self._sync(self._loop.run(self._runs.resume(run, timeout=timeout)))

    def delete(self, run: str | RunData, *, timeout: float | None = None) -> None:
        """Delete a finished run. See :meth:`Runs.delete <baton_sdk.runs.Runs.delete>`."""
        self._loop.run(self._runs.delete(run, timeout=timeout))

    def signal(
        self, run: str | RunData, name: str, payload: Any = None, *, timeout: float | None = None
    ) -> bool:
        """Send a signal to a run. See :meth:`Runs.signal <baton_sdk.runs.Runs.signal>`."""
        return self._loop.run(self._runs.signal(run, name, payload, timeout=timeout))

    def step(self, run: str | RunData, step_id: str, *, timeout: float | None = None) -> RunStep:
        """Fetch one step of a run. See :meth:`Runs.step <baton_sdk.runs.Runs.step>`."""
        return self._loop.run(self._runs.step(run, step_id, timeout=timeout))

    def wait(self, run: str | RunData, *, timeout: float | None = None) -> SyncRun:
        """Wait until a run finishes. See :meth:`Runs.wait <baton_sdk.runs.Runs.wait>`."""
        return self._sync(self._loop.run(self._runs.wait(run, timeout=timeout)))

    def watch(
        self, run: str | RunData, *, after_sequence: int = 0, timeout: float | None = None
    ) -> Generator[RunEvent, None, None]:
        """Stream a run's events until its terminal event. See :meth:`Runs.watch
        <baton_sdk.runs.Runs.watch>`."""
        return self._loop.iterate(
            self._runs.watch(run, after_sequence=after_sequence, timeout=timeout)
        )

    def watch_all(
        self,
        *,
        workflow: str | Workflow | None = None,
        statuses: Iterable[RunStatus] = (),
    ) -> Generator[RunEvent, None, None]:
        """Stream the status changes of all runs. See :meth:`Runs.watch_all
        <baton_sdk.runs.Runs.watch_all>`."""
        return self._loop.iterate(self._runs.watch_all(workflow=workflow, statuses=statuses))


class SyncSchedules:
    """Blocking twin of :class:`~baton_sdk.schedules.Schedules` (``client.schedules``)."""

    def __init__(self, loop: LoopThread, client: BatonClient, runs: SyncRuns) -> None:
        """Bind to the sync client's loop and async client."""
        self._loop = loop
        self._schedules = client.schedules
        self._runs = runs

    def create(self, workflow: str | Workflow, *, name: str, **options: Any) -> Schedule:
        """Schedule runs of a workflow. See :meth:`Schedules.create`."""
        return self._loop.run(self._schedules.create(workflow, name=name, **options))

    def get(self, schedule: str | Schedule, *, timeout: float | None = None) -> Schedule:
        """One schedule."""
        return self._loop.run(self._schedules.get(schedule, timeout=timeout))

    def list(
        self,
        *,
        workflow: str | Workflow | None = None,
        enabled: bool | None = None,
        page_size: int = 100,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[Schedule]:
        """The project's schedules, newest first."""
        pager = self._schedules.list(
            workflow=workflow, enabled=enabled, page_size=page_size, limit=limit, timeout=timeout
        )
        return SyncPager(self._loop, pager, _same)

    def update(self, schedule: str | Schedule, **changes: Any) -> Schedule:
        """Change the fields given. See :meth:`Schedules.update`."""
        return self._loop.run(self._schedules.update(schedule, **changes))

    def delete(self, schedule: str | Schedule, *, timeout: float | None = None) -> None:
        """Delete a schedule."""
        self._loop.run(self._schedules.delete(schedule, timeout=timeout))

    def trigger(
        self,
        schedule: str | Schedule,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> SyncRun:
        """Start a run now. See :meth:`Schedules.trigger`."""
        run = self._loop.run(
            self._schedules.trigger(schedule, request_id=request_id, timeout=timeout)
        )
        return self._runs._sync(run)

    def fires(
        self,
        schedule: str | Schedule,
        *,
        outcome: FireOutcome | str | None = None,
        page_size: int = 100,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SyncPager[ScheduleFire]:
        """What the schedule did with its slots, newest first."""
        pager = self._schedules.fires(
            schedule, outcome=outcome, page_size=page_size, limit=limit, timeout=timeout
        )
        return SyncPager(self._loop, pager, _same)


class SyncBatonClient:
    """A blocking connection to a Baton server; create it with :func:`connect_sync`.

    Use one client per thread of work, or share it: calls from several threads are
    safe (they all run on the client's private event loop).

    Attributes:
        access: Projects, API keys, the audit trail and who the caller is.
        agents: Register and manage agents.
        workflows: Define, version, activate and deactivate workflows.
        runs: Start, list, watch, wait for, retry and cancel runs.
        webhooks: Subscribe endpoints to events; their deliveries.
        schedules: Run workflows on cron expressions, intervals or at a fixed time.
        model_prices: Prices of models, for AI calls reported without a cost.
        target: The server address the client talks to.
    """

    def __init__(self, loop: LoopThread, client: BatonClient) -> None:
        """Wrap an async client running on ``loop``; use :func:`connect_sync` instead."""
        self._loop = loop
        self._client = client
        self.target = client.target
        self.access = SyncAccess(loop, client)
        self.agents = SyncAgents(loop, client)
        self.workflows = SyncWorkflows(loop, client)
        self.runs = SyncRuns(loop, client)
        self.webhooks = SyncWebhooks(loop, client)
        self.schedules = SyncSchedules(loop, client, self.runs)
        self.model_prices = SyncModelPrices(loop, client)

    @property
    def async_client(self) -> BatonClient:
        """The async client underneath (its coroutines run on a private loop)."""
        return self._client

    def close(self) -> None:
        """Close the connection and stop the private event loop (again: no-op)."""
        if not self._loop.alive:
            return
        try:
            self._loop.run(self._client.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Self:
        """Return the client itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        self.close()

    def __repr__(self) -> str:
        """Return ``SyncBatonClient(target=...)``."""
        return f"SyncBatonClient(target={self.target!r})"


def connect_sync(
    target: str | None = None,
    *,
    api_key: str | None = None,
    token: str | None = None,
    tls: bool | TLSConfig = False,
    timeout: float = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    metadata: Mapping[str, str] | None = None,
    lazy: bool = False,
    connect_timeout: float = 10.0,
    channel_options: Sequence[tuple[str, Any]] = (),
) -> SyncBatonClient:
    """Connect to a Baton server with a blocking client.

    Takes the same options as :func:`baton_sdk.connect`::

        with baton_sdk.connect_sync("localhost:50051") as client:
            for agent in client.agents.list():
                print(agent.name)

    Args:
        target: ``host:port`` of the server's gRPC port; default ``$BATON_SERVER``,
            else ``localhost:50051``.
        api_key: A Baton API key (default ``$BATON_API_KEY``).
        token: A JWT, sent as ``authorization: Bearer <token>``.
        tls: ``True``, a :class:`TLSConfig`, or ``False`` for plaintext.
        timeout: Default deadline of every unary call, in seconds.
        retry: How UNAVAILABLE is retried and streams resumed.
        metadata: Extra gRPC metadata sent with every call.
        lazy: Do not wait for the connection; the first call establishes it.
        connect_timeout: Seconds to wait for the connection unless ``lazy``.
        channel_options: Extra ``grpc.aio`` channel options.

    Returns:
        The client; close it with ``close()`` or a ``with`` block.

    Raises:
        UnavailableError: The server could not be reached within ``connect_timeout``.
    """
    loop = LoopThread()

    async def open_client() -> BatonClient:
        return await connect(
            target,
            api_key=api_key,
            token=token,
            tls=tls,
            timeout=timeout,
            retry=retry,
            metadata=metadata,
            lazy=lazy,
            connect_timeout=connect_timeout,
            channel_options=channel_options,
        )

    try:
        client = loop.run(open_client())
    except BaseException:
        loop.stop()
        raise
    return SyncBatonClient(loop, client)
