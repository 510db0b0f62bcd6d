"""Typed results: frozen dataclasses and string enums built from the contract's messages.

Enum values are the strings of the REST API (``AgentStatus.ACTIVE == "active"``,
``RunStatus.PENDING == "PENDING"``). Times are aware UTC datetimes; fields the server
left unset are ``None``; JSON payloads (inputs, outputs, input mappings) are plain
dicts and lists with whole numbers as ``int``. Every result keeps the message it was
built from in ``.proto``, for anything the typed view does not cover.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeVar

from google.protobuf.descriptor import EnumDescriptor

from baton.v1 import agents_pb2, runs_pb2, workflows_pb2
from baton_sdk._convert import (
    empty_as_none,
    optional_datetime,
    optional_string,
    optional_struct,
    optional_value,
    struct_dict,
    to_datetime,
    to_struct,
    to_value,
)
from baton_sdk.usage import AiCall, TokenUsage, UsageTotals, usage_fields

if TYPE_CHECKING:
    from baton_sdk.runs import Runs

_E = TypeVar("_E", bound=enum.Enum)
_ItemFailure = workflows_pb2.Step.ItemFailure


class _ProtoEnum(Protocol):
    """A generated protobuf enum (``runs_pb2.Run.Status``, ...)."""

    DESCRIPTOR: EnumDescriptor

    def Name(self, number: Any) -> str: ...


def _from_proto_enum(cls: type[_E], wrapper: _ProtoEnum, number: int) -> _E:
    try:
        return cls(wrapper.Name(number))
    except ValueError:
        raise ValueError(
            f"the server sent {wrapper.DESCRIPTOR.full_name} value {number}, unknown to this"
            " SDK; upgrade baton-sdk"
        ) from None


def _optional_proto_enum(cls: type[_E], wrapper: _ProtoEnum, number: int) -> _E | None:
    return None if number == 0 else _from_proto_enum(cls, wrapper, number)


class AgentStatus(enum.StrEnum):
    """Lifecycle status of an agent."""

    ACTIVE = "active"
    """Usable by workflows."""
    INACTIVE = "inactive"
    """Registered but not usable by new or updated workflows."""
    DELETED = "deleted"
    """Soft-deleted."""


class AuthType(enum.StrEnum):
    """How Baton authenticates to an agent."""

    NONE = "none"
    """No credentials are sent."""
    BEARER = "bearer"
    """``Authorization: Bearer <auth_config["token"]>``."""
    APIKEY = "apikey"
    """``<auth_config["header"] or X-API-Key>: <auth_config["key"]>``."""


class AgentProtocol(enum.StrEnum):
    """How Baton talks to an agent."""

    A2A = "a2a"
    """The A2A protocol (agent card, JSON-RPC)."""
    HTTP = "http"
    """Plain HTTP: the step input is POSTed as JSON, the JSON response is the output."""


class WorkflowStatus(enum.StrEnum):
    """Lifecycle status of a workflow."""

    ACTIVE = "active"
    """Runnable."""
    INACTIVE = "inactive"
    """Defined but not runnable."""
    DELETED = "deleted"
    """Soft-deleted."""


class RunStatus(enum.StrEnum):
    """Status of a run."""

    PENDING = "PENDING"
    """Created, waiting for a worker."""
    RUNNING = "RUNNING"
    """A worker is executing its steps."""
    COMPLETED = "COMPLETED"
    """Every step completed."""
    FAILED = "FAILED"
    """A step failed after its retries."""
    CANCELLED = "CANCELLED"
    """Cancelled by a user."""
    PAUSED = "PAUSED"
    """Paused by a user: no step starts until it is resumed."""

    @property
    def is_terminal(self) -> bool:
        """Whether the run has finished (completed, failed or cancelled)."""
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(enum.StrEnum):
    """Status of one step of a run."""

    PENDING = "PENDING"
    """Not started yet."""
    RUNNING = "RUNNING"
    """Its agent is being called."""
    COMPLETED = "COMPLETED"
    """Finished; ``output_data`` holds the agent's output."""
    FAILED = "FAILED"
    """Failed after its retries, or abandoned by a cancellation."""
    SKIPPED = "SKIPPED"
    """Will not run: a conditional route chose another branch."""
    WAITING = "WAITING"
    """A wait step waiting for its signal (or its timeout)."""


class LogLevel(enum.StrEnum):
    """Severity of a run's log line."""

    INFO = "info"
    """Progress: a step started or finished, an attempt was made."""
    WARNING = "warning"
    """Something went wrong but the run goes on."""
    ERROR = "error"
    """A step or the run failed."""


class RunEventType(enum.StrEnum):
    """What a :class:`RunEvent` reports."""

    STATE_SYNC = "state_sync"
    """A snapshot: ``run`` and ``steps`` hold the whole state as of ``sequence``."""
    RUN_STATUS = "run_status"
    """The run's status changed."""
    STEP_STARTED = "step_started"
    """A step attempt started."""
    STEP_COMPLETED = "step_completed"
    """A step completed; ``output`` holds its output."""
    STEP_FAILED = "step_failed"
    """A step failed; ``error_message`` says why."""
    STEP_RETRYING = "step_retrying"
    """A step attempt failed and will be retried after ``delay_ms``."""
    STEP_SKIPPED = "step_skipped"
    """A step will not run: no branch leading to it was taken."""
    STEP_WAITING = "step_waiting"
    """A wait step started waiting for its signal."""
    LOG = "log"
    """A log line (``level``, ``message``)."""
    LAGGED = "lagged"
    """``watch_all`` only: the subscriber fell too far behind; the stream ends."""
    ERROR = "error"
    """The server's stream failed; ``watch`` resumes by itself and never yields it."""


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Retry policy of an agent: delay before retry n (from 0) is
    ``initial_delay_ms * backoff_multiplier**n``, capped at ``max_delay_ms``.

    As an argument of ``agents.create`` every field is sent; to change only some
    fields with ``agents.update``, pass a dict such as ``{"max_retries": 5}``.

    Attributes:
        max_retries: Retries after the first attempt, 0-10.
        initial_delay_ms: Delay before the first retry, at least 100.
        max_delay_ms: Upper bound of any delay, at least 1000.
        backoff_multiplier: Growth factor of the delay, at least 1.0.
    """

    max_retries: int = 3
    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0

    @classmethod
    def from_proto(cls, message: agents_pb2.RetryConfig) -> RetryConfig:
        """Build from the contract's message (every field is set in responses).

        Args:
            message: The ``baton.v1.RetryConfig`` message.

        Returns:
            The typed view.
        """
        return cls(
            max_retries=message.max_retries,
            initial_delay_ms=message.initial_delay_ms,
            max_delay_ms=message.max_delay_ms,
            backoff_multiplier=message.backoff_multiplier,
        )

    def to_proto(self) -> agents_pb2.RetryConfig:
        """Return the contract's message with every field set."""
        return agents_pb2.RetryConfig(
            max_retries=self.max_retries,
            initial_delay_ms=self.initial_delay_ms,
            max_delay_ms=self.max_delay_ms,
            backoff_multiplier=self.backoff_multiplier,
        )


@dataclass(frozen=True, kw_only=True)
class Agent:
    """An external service that executes workflow steps.

    Attributes:
        id: Server-assigned UUID.
        name: Unique name; workflow steps refer to the agent by it.
        url: Base URL of the agent.
        description: Human-readable description (may be empty).
        auth_type: How Baton authenticates to the agent (credentials are never returned).
        protocol: How Baton talks to the agent.
        timeout_ms: Timeout of one call to the agent.
        retry_config: Retry policy for failed calls.
        status: Lifecycle status.
        created_at: When the agent was registered.
        updated_at: When it last changed.
        project_id: UUID of the project the agent belongs to.
        proto: The ``baton.v1.Agent`` message.
    """

    id: str
    name: str
    url: str
    description: str
    auth_type: AuthType
    protocol: AgentProtocol
    timeout_ms: int
    retry_config: RetryConfig
    status: AgentStatus
    created_at: datetime
    updated_at: datetime
    project_id: str
    proto: agents_pb2.Agent = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: agents_pb2.Agent) -> Agent:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            id=message.id,
            name=message.name,
            url=message.url,
            description=message.description,
            # Unset means the default, as the contract says.
            auth_type=_optional_proto_enum(AuthType, agents_pb2.Agent.AuthType, message.auth_type)
            or AuthType.NONE,
            protocol=_optional_proto_enum(
                AgentProtocol, agents_pb2.Agent.Protocol, message.protocol
            )
            or AgentProtocol.A2A,
            timeout_ms=message.timeout_ms,
            retry_config=RetryConfig.from_proto(message.retry_config),
            status=_from_proto_enum(AgentStatus, agents_pb2.Agent.Status, message.status),
            created_at=to_datetime(message.created_at),
            updated_at=to_datetime(message.updated_at),
            project_id=message.project_id,
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class AgentHealth:
    """Outcome of probing an agent.

    Attributes:
        healthy: Whether the agent answered its health endpoint or card with 2xx.
        status_code: HTTP status of the final answer; ``None`` when none came.
        response_time_ms: Wall time of the probe; ``None`` when no answer came.
        error: Why the agent is unhealthy; ``None`` when healthy.
        proto: The ``baton.v1.CheckAgentHealthResponse`` message.
    """

    healthy: bool
    status_code: int | None
    response_time_ms: float | None
    error: str | None
    proto: agents_pb2.CheckAgentHealthResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: agents_pb2.CheckAgentHealthResponse) -> AgentHealth:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            healthy=message.healthy,
            status_code=message.status_code if message.HasField("status_code") else None,
            response_time_ms=(
                message.response_time_ms if message.HasField("response_time_ms") else None
            ),
            error=optional_string(message, "error"),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class Wait:
    """What a wait step waits for: a signal (``client.runs.signal``) or its timeout.

    Attributes:
        signal: Name of the signal that completes the step (its payload is the output).
        timeout_seconds: How long to wait at most; ``None``: until the signal comes.
        on_timeout: ``"fail"`` (the step and the run fail) or ``"continue"`` (the step
            completes with ``timeout_output``).
        timeout_output: The step's output when it times out with ``"continue"``.
    """

    signal: str
    timeout_seconds: int | None = None
    on_timeout: Literal["fail", "continue"] = "fail"
    timeout_output: Any = None

    @classmethod
    def from_proto(cls, message: workflows_pb2.Wait) -> Wait:
        """Build from the contract's message."""
        keep_going = message.on_timeout == workflows_pb2.Wait.TimeoutOutcome.Value("continue")
        return cls(
            signal=message.signal,
            timeout_seconds=(
                message.timeout_seconds if message.HasField("timeout_seconds") else None
            ),
            on_timeout="continue" if keep_going else "fail",
            timeout_output=optional_value(message, "timeout_output"),
        )

    def to_proto(self) -> workflows_pb2.Wait:
        """The contract's message."""
        message = workflows_pb2.Wait(
            signal=self.signal,
            timeout_seconds=self.timeout_seconds,
            on_timeout=workflows_pb2.Wait.TimeoutOutcome.Value(self.on_timeout),
        )
        if self.timeout_output is not None:
            message.timeout_output.CopyFrom(to_value(self.timeout_output))
        return message


@dataclass(frozen=True, kw_only=True)
class Route:
    """A conditional route of a step: when ``when`` holds, ``next_step`` follows.

    Attributes:
        when: A CEL expression over ``output`` (the step's output), ``input`` (the run's
            input) and ``steps`` (outputs of the steps it follows), giving a bool.
        next_step: Id of the step that follows when it holds.
    """

    when: str
    next_step: str


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a workflow: a call to an agent with mapped input.

    Used both to define workflows and in the workflows the server returns.

    Attributes:
        agent_name: Name of the agent that executes the step.
        next_step: Id of the step that follows; ``None`` for a final step.
        input_mapping: Input of the agent call: static JSON values or ``${...}``
            references (``${workflow.input.a}``, ``${extract.output.data}``).
        depends_on: Further steps that must complete before this one (fan-in).
        routes: Conditional routes, tried in order when the step completes: the first
            that holds names the step that follows (else ``next_step``); the other
            branches are skipped.
        timeout_ms: Longest wait for one agent call of this step; ``None``: the
            agent's ``timeout_ms``.
        wait: Makes this a wait step (``agent_name`` then stays empty): it completes
            with the payload of a signal sent to the run.
        for_each: Makes this a fan-out step: a ``${...}`` reference to a list (at most
            10,000 items); the agent is called once per item (``${item}``,
            ``${item_index}`` in ``input_mapping``), and the step's output is the list
            of outputs in item order. Each item is a run step ``<id>[<index>]``.
        max_parallel: With ``for_each``: items called at once; ``None``: 10.
        on_item_failure: With ``for_each``: ``"fail_step"`` (a failed item fails the
            step) or ``"collect"`` (its place in the output is ``{"error": ...}``);
            ``None``: ``"fail_step"``.
        id: The step's id; when defining a workflow it defaults to its key.
    """

    agent_name: str = ""
    next_step: str | None = None
    input_mapping: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    timeout_ms: int | None = None
    wait: Wait | None = None
    for_each: str | None = None
    max_parallel: int | None = None
    on_item_failure: Literal["fail_step", "collect"] | None = None
    id: str | None = None

    @classmethod
    def from_proto(cls, message: workflows_pb2.Step) -> Step:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            id=message.id or None,
            agent_name=message.agent_name,
            next_step=message.next_step.value if message.HasField("next_step") else None,
            input_mapping=struct_dict(message.input_mapping),
            depends_on=tuple(message.depends_on),
            routes=tuple(Route(when=r.when, next_step=r.next_step) for r in message.routes),
            timeout_ms=message.timeout_ms if message.HasField("timeout_ms") else None,
            wait=Wait.from_proto(message.wait) if message.HasField("wait") else None,
            for_each=message.for_each or None,
            max_parallel=message.max_parallel if message.HasField("max_parallel") else None,
            on_item_failure=(
                "collect"
                if message.on_item_failure == _ItemFailure.Value("collect")
                else "fail_step"
                if message.on_item_failure
                else None
            ),
        )

    def to_proto(self, key: str) -> workflows_pb2.Step:
        """The contract's message (``key``: the step's id when ``id`` is not set)."""
        message = workflows_pb2.Step(
            id=self.id or key,
            agent_name=self.agent_name,
            input_mapping=to_struct(self.input_mapping),
            depends_on=list(self.depends_on),
            routes=[workflows_pb2.Route(when=r.when, next_step=r.next_step) for r in self.routes],
            timeout_ms=self.timeout_ms,
            wait=self.wait.to_proto() if self.wait else None,
            for_each=self.for_each or "",
            max_parallel=self.max_parallel,
            on_item_failure=_ItemFailure.Value(self.on_item_failure or "ITEM_FAILURE_UNSPECIFIED"),
        )
        if self.next_step is not None:
            message.next_step.value = self.next_step
        return message


@dataclass(frozen=True, kw_only=True)
class WorkflowData:
    """The step graph of a workflow version.

    Attributes:
        start_step: Id of the first step.
        steps: Step definitions keyed by step id.
    """

    start_step: str
    steps: Mapping[str, Step]

    @classmethod
    def from_proto(cls, message: workflows_pb2.WorkflowData) -> WorkflowData:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            start_step=message.start_step,
            steps={key: Step.from_proto(step) for key, step in message.steps.items()},
        )


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A workflow at its current version.

    Attributes:
        id: Server-assigned UUID, stable across versions.
        name: Unique name.
        description: Human-readable description (may be empty).
        version: Current version number, from 1.
        workflow_data: The step graph of the current version.
        status: Lifecycle status.
        definition_id: UUID of the current version (what a new run pins).
        created_at: When the workflow was created.
        updated_at: When it last changed.
        project_id: UUID of the project the workflow belongs to.
        max_concurrent_runs: At most this many runs execute at once; ``None``: no limit.
        proto: The ``baton.v1.Workflow`` message.
    """

    id: str
    name: str
    description: str
    version: int
    workflow_data: WorkflowData
    status: WorkflowStatus
    definition_id: str
    created_at: datetime
    updated_at: datetime
    project_id: str
    max_concurrent_runs: int | None
    proto: workflows_pb2.Workflow = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: workflows_pb2.Workflow) -> Workflow:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            id=message.id,
            name=message.name,
            description=message.description,
            version=message.version,
            workflow_data=WorkflowData.from_proto(message.workflow_data),
            status=_from_proto_enum(WorkflowStatus, workflows_pb2.Workflow.Status, message.status),
            definition_id=message.definition_id,
            created_at=to_datetime(message.created_at),
            updated_at=to_datetime(message.updated_at),
            project_id=message.project_id,
            max_concurrent_runs=(
                message.max_concurrent_runs if message.HasField("max_concurrent_runs") else None
            ),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class StepTest:
    """A saved test of one step (``client.workflows.test_step``); never a run.

    Attributes:
        id: Test id (UUID).
        workflow_id: UUID of the workflow.
        workflow_version: Version whose step was tested.
        step_id: Id of the step.
        agent_name: The agent called.
        input: The resolved input sent to the agent.
        output: The agent's output; ``None`` when the call failed.
        error_message: Why the call failed, else ``None``.
        duration_ms: How long the agent call took.
        completed: Whether the agent answered (else ``error_message`` says why).
        created_by: Who ran the test.
        created_at: When it ran.
        proto: The ``baton.v1.StepTest`` message.
    """

    id: str
    workflow_id: str
    workflow_version: int
    step_id: str
    agent_name: str
    input: dict[str, Any]
    output: Any
    error_message: str | None
    duration_ms: int
    completed: bool
    created_by: str
    created_at: datetime
    proto: workflows_pb2.StepTest = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: workflows_pb2.StepTest) -> StepTest:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            id=message.id,
            workflow_id=message.workflow_id,
            workflow_version=message.workflow_version,
            step_id=message.step_id,
            agent_name=message.agent_name,
            input=struct_dict(message.input),
            output=optional_value(message, "output"),
            error_message=optional_string(message, "error_message"),
            duration_ms=message.duration_ms,
            completed=message.status == workflows_pb2.StepTest.Status.completed,
            created_by=message.created_by,
            created_at=to_datetime(message.created_at),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class WorkflowVersion:
    """An immutable version of a workflow's step graph.

    Attributes:
        id: UUID of this version (a run's ``workflow_definition_id``).
        workflow_id: UUID of the workflow.
        name: Name of the workflow.
        version: Version number.
        workflow_data: The step graph of this version.
        status: The workflow's status for its current version; ``inactive`` for
            superseded ones.
        created_at: When this version was created.
        proto: The ``baton.v1.WorkflowVersion`` message.
    """

    id: str
    workflow_id: str
    name: str
    version: int
    workflow_data: WorkflowData
    status: WorkflowStatus
    created_at: datetime
    proto: workflows_pb2.WorkflowVersion = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: workflows_pb2.WorkflowVersion) -> WorkflowVersion:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            id=message.id,
            workflow_id=message.workflow_id,
            name=message.name,
            version=message.version,
            workflow_data=WorkflowData.from_proto(message.workflow_data),
            status=_from_proto_enum(WorkflowStatus, workflows_pb2.Workflow.Status, message.status),
            created_at=to_datetime(message.created_at),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class RunData:
    """The state of a run at one moment; the fields shared by :class:`Run` and
    ``SyncRun``.

    Attributes:
        id: Run id (``run-<uuid>``).
        workflow_id: UUID of the workflow.
        workflow_name: Name of the workflow when the run started.
        workflow_definition_id: UUID of the pinned workflow version.
        workflow_version: Number of the pinned workflow version.
        status: Status of the run.
        progress: Completed steps as a percentage of all steps, 0-100.
        input_data: The input the run was started with.
        output: Output of the final step (for several final steps, an object keyed by
            step id); ``None`` until the run completes.
        error_message: Why the run failed or was cancelled, else ``None``.
        triggered_by: Who started the run.
        request_id: The idempotency key the run was started with, else ``None``.
        created_at: When the run was created.
        updated_at: When the run last changed.
        completed_at: When the run completed or failed, else ``None``.
        cancelled_at: When the run was cancelled, else ``None``.
        cancelled_by: Who cancelled the run, else ``None``.
        project_id: UUID of the project the run belongs to.
        callback_url: Where the run's end is POSTed, else ``None``.
        callback_secret: The callback's signing secret, set only on the run
            ``execute`` returned when the server generated it (verify deliveries with
            :func:`baton_sdk.webhooks.verify`).
        timeout_seconds: The run's time limit, else ``None``.
        deadline: When the run fails if it has not finished, else ``None``.
        token_usage: Tokens its AI calls used (every attempt counts).
        total_cost: What its AI calls cost, in USD.
        ai_calls: Every AI call, oldest first (empty in lists; see the contract).
        proto: The ``baton.v1.Run`` message.
    """

    id: str
    workflow_id: str
    workflow_name: str
    workflow_definition_id: str
    workflow_version: int
    status: RunStatus
    progress: int
    input_data: dict[str, Any]
    output: Any
    error_message: str | None
    triggered_by: str
    request_id: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    project_id: str
    callback_url: str | None
    callback_secret: str | None = field(repr=False)
    timeout_seconds: int | None
    deadline: datetime | None
    token_usage: TokenUsage = field(default_factory=TokenUsage)
    total_cost: float = 0.0
    ai_calls: tuple[AiCall, ...] = field(default=(), repr=False)
    proto: runs_pb2.Run = field(repr=False, compare=False)

    @staticmethod
    def fields_from_proto(message: runs_pb2.Run) -> dict[str, Any]:
        """Return the constructor arguments of any :class:`RunData` subclass.

        Args:
            message: The ``baton.v1.Run`` message.

        Returns:
            Keyword arguments for ``RunData``, ``Run`` or ``SyncRun``.
        """
        return {
            "id": message.id,
            "workflow_id": message.workflow_id,
            "workflow_name": message.workflow_name,
            "workflow_definition_id": message.workflow_definition_id,
            "workflow_version": message.workflow_version,
            "status": _from_proto_enum(RunStatus, runs_pb2.Run.Status, message.status),
            "progress": message.progress,
            "input_data": struct_dict(message.input_data),
            "output": optional_value(message, "output"),
            "error_message": optional_string(message, "error_message"),
            "triggered_by": message.triggered_by,
            "request_id": empty_as_none(message.request_id),
            "created_at": to_datetime(message.created_at),
            "updated_at": to_datetime(message.updated_at),
            "completed_at": optional_datetime(message, "completed_at"),
            "cancelled_at": optional_datetime(message, "cancelled_at"),
            "cancelled_by": optional_string(message, "cancelled_by"),
            "project_id": message.project_id,
            "callback_url": empty_as_none(message.callback_url),
            "callback_secret": empty_as_none(message.callback_secret),
            "timeout_seconds": (
                message.timeout_seconds if message.HasField("timeout_seconds") else None
            ),
            "deadline": optional_datetime(message, "deadline"),
            **usage_fields(message),
            "proto": message,
        }

    @classmethod
    def from_proto(cls, message: runs_pb2.Run) -> Self:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(**RunData.fields_from_proto(message))

    def data_fields(self) -> dict[str, Any]:
        """Return this run's fields as constructor arguments (to rewrap the state)."""
        return {f.name: getattr(self, f.name) for f in fields(RunData)}

    @property
    def finished_at(self) -> datetime | None:
        """When the run ended (completed, failed or cancelled), else ``None``."""
        return self.completed_at or self.cancelled_at

    @property
    def duration(self) -> timedelta | None:
        """How long the run took from creation to its end; ``None`` while it runs."""
        end = self.finished_at
        return end - self.created_at if end is not None else None


@dataclass(frozen=True, kw_only=True)
class Run(RunData):
    """A run, as returned by the async client: :class:`RunData` plus shortcuts.

    Example:
        >>> run = await client.runs.execute(workflow, input_data={"n": 1})
        >>> finished = await run.wait(timeout=60)
        >>> finished.status, finished.output
    """

    _runs: Runs | None = field(default=None, repr=False, compare=False)

    async def wait(self, *, timeout: float | None = None) -> Run:
        """Wait for this run to finish; same as ``client.runs.wait(run)``.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            The finished run (COMPLETED, FAILED or CANCELLED).

        Raises:
            WaitTimeoutError: The run did not finish in time (it goes on).
        """
        return await self._owner().wait(self.id, timeout=timeout)

    def watch(
        self, *, after_sequence: int = 0, timeout: float | None = None
    ) -> AsyncGenerator[RunEvent, None]:
        """Stream this run's events; same as ``client.runs.watch(run)``.

        Args:
            after_sequence: Resume after this event (0 starts with a snapshot).
            timeout: Give up (``WaitTimeoutError``) if the run has not finished this
                many seconds after the watch began.

        Returns:
            An async iterator of events that ends after the terminal event.
        """
        return self._owner().watch(self.id, after_sequence=after_sequence, timeout=timeout)

    async def refresh(self) -> Run:
        """Fetch the run's current state; same as ``client.runs.get(run)``."""
        return await self._owner().get(self.id)

    def _owner(self) -> Runs:
        if self._runs is None:
            raise RuntimeError("this Run was not returned by a client; use client.runs")
        return self._runs


@dataclass(frozen=True, kw_only=True)
class RunStep:
    """One step of a run.

    Attributes:
        id: Step execution id (``step-exec-<uuid>``).
        run_id: Id of the run.
        step_id: Id of the step in the workflow.
        step_name: Display name of the step.
        agent_name: Agent that executes the step.
        status: Status of the step.
        attempt: Agent calls made for this step so far (retries included).
        input_data: The mapped input sent to the agent; ``None`` until it starts.
        output_data: The agent's output; ``None`` until the step completes.
        started_at: When the current attempt started, else ``None``.
        completed_at: When the step completed or failed, else ``None``.
        error_message: Why the step failed, else ``None``.
        parent_step_id: For one item of a fan-out step: that step's id, else ``None``.
        item_index: For one item of a fan-out step: its place in the list, else ``None``.
        token_usage: Tokens its AI calls used, over all its attempts.
        total_cost: What its AI calls cost, in USD, over all its attempts.
        ai_calls: Its AI calls, every attempt's, oldest first.
        proto: The ``baton.v1.RunStep`` message.
    """

    id: str
    run_id: str
    step_id: str
    step_name: str
    agent_name: str
    status: StepStatus
    attempt: int
    input_data: dict[str, Any] | None
    output_data: Any
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    parent_step_id: str | None
    item_index: int | None
    token_usage: TokenUsage = field(default_factory=TokenUsage)
    total_cost: float = 0.0
    ai_calls: tuple[AiCall, ...] = field(default=(), repr=False)
    proto: runs_pb2.RunStep = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: runs_pb2.RunStep) -> RunStep:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            id=message.id,
            run_id=message.run_id,
            step_id=message.step_id,
            step_name=message.step_name,
            agent_name=message.agent_name,
            status=_from_proto_enum(StepStatus, runs_pb2.RunStep.Status, message.status),
            attempt=message.attempt,
            input_data=optional_struct(message, "input_data"),
            output_data=optional_value(message, "output_data"),
            started_at=optional_datetime(message, "started_at"),
            completed_at=optional_datetime(message, "completed_at"),
            error_message=optional_string(message, "error_message"),
            parent_step_id=message.parent_step_id or None,
            item_index=message.item_index if message.HasField("item_index") else None,
            **usage_fields(message),
            proto=message,
        )

    @property
    def duration(self) -> timedelta | None:
        """Time from the start of the last attempt to the end; ``None`` if unfinished."""
        if self.started_at is None or self.completed_at is None:
            return None
        return self.completed_at - self.started_at


@dataclass(frozen=True, kw_only=True)
class RunLog:
    """One line of a run's log.

    Attributes:
        sequence: Position in the run's event log (log lines are events too).
        step_id: The step the line is about; ``None`` for run-level lines.
        level: Severity.
        message: What happened.
        timestamp: When it happened.
        proto: The ``baton.v1.RunLog`` message.
    """

    sequence: int
    step_id: str | None
    level: LogLevel
    message: str
    timestamp: datetime
    proto: runs_pb2.RunLog = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: runs_pb2.RunLog) -> RunLog:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            sequence=message.sequence,
            step_id=message.step_id or None,
            level=_from_proto_enum(LogLevel, runs_pb2.RunLog.Level, message.level),
            message=message.message,
            timestamp=to_datetime(message.timestamp),
            proto=message,
        )

    @classmethod
    def from_event(cls, event: RunEvent) -> RunLog:
        """Build from an event of a run's event stream that carries a log line.

        Args:
            event: An event with a ``message``.

        Returns:
            The log line the event carries.

        Raises:
            ValueError: The event carries no log line.
        """
        if not event.message:
            raise ValueError(f"{event.type.value} event {event.sequence} carries no log line")
        message = runs_pb2.RunLog(
            sequence=event.sequence,
            step_id=event.step_id or "",
            level=event.proto.level,
            message=event.message or "",
            timestamp=event.proto.timestamp,
        )
        return cls.from_proto(message)


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    """Something that happened to a run: one entry of its gap-free event log.

    Which fields are set depends on :attr:`type`; the others are ``None`` (or 0,
    empty). ``status`` and ``progress`` always give the run's state after the event.

    Attributes:
        type: What happened.
        run_id: Id of the run.
        sequence: Position in the run's event log, from 1, without gaps; for
            ``state_sync`` the last event the snapshot includes.
        timestamp: When it happened; ``None`` for stream-level events.
        status: The run's status after this event; ``None`` for stream-level events.
        progress: The run's progress after this event, 0-100.
        step_id: The step concerned; ``None`` for run-level events.
        attempt: The step attempt concerned, from 1; else ``None``.
        error_message: The error of a failed step or run, else ``None``.
        output: The step's output (``step_completed``) or the run's output
            (``run_status`` to COMPLETED), else ``None``.
        delay_ms: Delay before the retry (``step_retrying``), else ``None``.
        level: Severity of the log line the event carries, else ``None``.
        message: The log line the event carries, else ``None``: most state
            changes carry one (the run's log is the events that do); events of
            type ``log`` carry nothing else.
        run: The whole run: in ``state_sync``, and in ``watch_all`` events.
        steps: Every step of the run (``state_sync`` only; empty otherwise).
        terminal: True on the last event of a run's stream (the run finished).
        usage: What the step attempt's AI calls used and cost, when its agent
            reported usage (``step_completed``, ``step_failed``, ``step_retrying``).
        run_usage: The run's running totals, on the same events as ``usage``.
        proto: The ``baton.v1.RunEvent`` message.
    """

    type: RunEventType
    run_id: str
    sequence: int
    timestamp: datetime | None
    status: RunStatus | None
    progress: int
    step_id: str | None
    attempt: int | None
    error_message: str | None
    output: Any
    delay_ms: int | None
    level: LogLevel | None
    message: str | None
    run: RunData | None
    steps: tuple[RunStep, ...]
    terminal: bool
    usage: UsageTotals | None = None
    run_usage: UsageTotals | None = None
    proto: runs_pb2.RunEvent = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: runs_pb2.RunEvent) -> RunEvent:
        """Build from the contract's message.

        Args:
            message: The message, as the generated stubs return it.

        Returns:
            The typed view; the message stays reachable as ``.proto``.
        """
        return cls(
            type=_from_proto_enum(RunEventType, runs_pb2.RunEvent.Type, message.type),
            run_id=message.run_id,
            sequence=message.sequence,
            timestamp=optional_datetime(message, "timestamp"),
            status=_optional_proto_enum(RunStatus, runs_pb2.Run.Status, message.status),
            progress=message.progress,
            step_id=message.step_id or None,
            attempt=message.attempt or None,
            error_message=message.error_message or None,
            output=optional_value(message, "output"),
            delay_ms=message.delay_ms or None,
            level=_optional_proto_enum(LogLevel, runs_pb2.RunLog.Level, message.level),
            message=message.message or None,
            run=RunData.from_proto(message.run) if message.HasField("run") else None,
            steps=tuple(RunStep.from_proto(step) for step in message.steps),
            terminal=message.terminal,
            usage=UsageTotals.from_proto(message.usage) if message.HasField("usage") else None,
            run_usage=(
                UsageTotals.from_proto(message.run_usage) if message.HasField("run_usage") else None
            ),
            proto=message,
        )
