"""Baton's Python SDK: a typed async client (with a blocking facade) for the Baton API.

Quick start::

    import baton_sdk

    async with baton_sdk.connect("localhost:50051") as client:
        workflow = await client.workflows.find("data-processing-pipeline")
        run = await client.runs.execute(workflow, input_data={"n": 1}, wait=True, timeout=60)
        print(run.status, run.output)

From blocking code (scripts, notebooks), :func:`connect_sync` gives the same API without
``await``. Errors are subclasses of :class:`BatonError`. See ``docs/sdk.md``.
"""

# Names are imported on first use (PEP 562) so that `import baton_sdk.cli` - the
# `baton` command, including `baton serve` - does not pay for grpc and the generated
# code before it needs them.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton_sdk.access import (
        ApiKey,
        AuditEvent,
        Caller,
        CreatedApiKey,
        Project,
        Role,
    )
    from baton_sdk.client import (
        BatonClient,
        Connecting,
        connect,
    )
    from baton_sdk.errors import (
        AbortedError,
        AgentUnavailableError,
        AlreadyExistsError,
        BatonError,
        CallCancelledError,
        DataLossError,
        DeadlineExceededError,
        FailedPreconditionError,
        FieldViolation,
        InternalError,
        InvalidArgumentError,
        NotFoundError,
        OutOfRangeError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnauthenticatedError,
        UnavailableError,
        UnimplementedError,
        UnknownError,
        WaitTimeoutError,
        WorkflowNotActiveError,
        WorkflowValidationError,
    )
    from baton_sdk.models import (
        Agent,
        AgentHealth,
        AgentProtocol,
        AgentStatus,
        AuthType,
        LogLevel,
        RetryConfig,
        Route,
        Run,
        RunData,
        RunEvent,
        RunEventType,
        RunLog,
        RunStatus,
        RunStep,
        Step,
        StepStatus,
        StepTest,
        Wait,
        Workflow,
        WorkflowData,
        WorkflowStatus,
        WorkflowVersion,
    )
    from baton_sdk.options import (
        NO_RETRY,
        RetryPolicy,
        TLSConfig,
    )
    from baton_sdk.paging import (
        AsyncPager,
        Page,
        SortOrder,
    )
    from baton_sdk.sync import (
        SyncBatonClient,
        SyncPager,
        SyncRun,
        connect_sync,
    )
    from baton_sdk.usage import AiCall, ModelPrice, TokenUsage, UsageTotals

_EXPORTS: dict[str, str] = {
    "ApiKey": "baton_sdk.access",
    "AuditEvent": "baton_sdk.access",
    "Caller": "baton_sdk.access",
    "CreatedApiKey": "baton_sdk.access",
    "Project": "baton_sdk.access",
    "Role": "baton_sdk.access",
    "BatonClient": "baton_sdk.client",
    "Connecting": "baton_sdk.client",
    "connect": "baton_sdk.client",
    "SyncBatonClient": "baton_sdk.sync",
    "SyncPager": "baton_sdk.sync",
    "SyncRun": "baton_sdk.sync",
    "connect_sync": "baton_sdk.sync",
    "NO_RETRY": "baton_sdk.options",
    "RetryPolicy": "baton_sdk.options",
    "TLSConfig": "baton_sdk.options",
    "AsyncPager": "baton_sdk.paging",
    "Page": "baton_sdk.paging",
    "SortOrder": "baton_sdk.paging",
    "Agent": "baton_sdk.models",
    "AgentHealth": "baton_sdk.models",
    "AgentProtocol": "baton_sdk.models",
    "AgentStatus": "baton_sdk.models",
    "AuthType": "baton_sdk.models",
    "LogLevel": "baton_sdk.models",
    "RetryConfig": "baton_sdk.models",
    "Run": "baton_sdk.models",
    "RunData": "baton_sdk.models",
    "RunEvent": "baton_sdk.models",
    "RunEventType": "baton_sdk.models",
    "RunLog": "baton_sdk.models",
    "RunStatus": "baton_sdk.models",
    "RunStep": "baton_sdk.models",
    "Step": "baton_sdk.models",
    "StepTest": "baton_sdk.models",
    "Wait": "baton_sdk.models",
    "Route": "baton_sdk.models",
    "StepStatus": "baton_sdk.models",
    "Workflow": "baton_sdk.models",
    "WorkflowData": "baton_sdk.models",
    "WorkflowStatus": "baton_sdk.models",
    "WorkflowVersion": "baton_sdk.models",
    "AiCall": "baton_sdk.usage",
    "ModelPrice": "baton_sdk.usage",
    "TokenUsage": "baton_sdk.usage",
    "UsageTotals": "baton_sdk.usage",
    "AbortedError": "baton_sdk.errors",
    "AgentUnavailableError": "baton_sdk.errors",
    "AlreadyExistsError": "baton_sdk.errors",
    "BatonError": "baton_sdk.errors",
    "CallCancelledError": "baton_sdk.errors",
    "DataLossError": "baton_sdk.errors",
    "DeadlineExceededError": "baton_sdk.errors",
    "FailedPreconditionError": "baton_sdk.errors",
    "FieldViolation": "baton_sdk.errors",
    "InternalError": "baton_sdk.errors",
    "InvalidArgumentError": "baton_sdk.errors",
    "NotFoundError": "baton_sdk.errors",
    "OutOfRangeError": "baton_sdk.errors",
    "PermissionDeniedError": "baton_sdk.errors",
    "ResourceExhaustedError": "baton_sdk.errors",
    "UnauthenticatedError": "baton_sdk.errors",
    "UnavailableError": "baton_sdk.errors",
    "UnimplementedError": "baton_sdk.errors",
    "UnknownError": "baton_sdk.errors",
    "WaitTimeoutError": "baton_sdk.errors",
    "WorkflowNotActiveError": "baton_sdk.errors",
    "WorkflowValidationError": "baton_sdk.errors",
}

__all__ = [
    "NO_RETRY",
    "AbortedError",
    "Agent",
    "AgentHealth",
    "AgentProtocol",
    "AgentStatus",
    "AgentUnavailableError",
    "AiCall",
    "AlreadyExistsError",
    "ApiKey",
    "AsyncPager",
    "AuditEvent",
    "AuthType",
    "BatonClient",
    "BatonError",
    "CallCancelledError",
    "Caller",
    "Connecting",
    "CreatedApiKey",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "LogLevel",
    "ModelPrice",
    "NotFoundError",
    "OutOfRangeError",
    "Page",
    "PermissionDeniedError",
    "Project",
    "ResourceExhaustedError",
    "RetryConfig",
    "RetryPolicy",
    "Role",
    "Route",
    "Run",
    "RunData",
    "RunEvent",
    "RunEventType",
    "RunLog",
    "RunStatus",
    "RunStep",
    "SortOrder",
    "Step",
    "StepStatus",
    "StepTest",
    "SyncBatonClient",
    "SyncPager",
    "SyncRun",
    "TLSConfig",
    "TokenUsage",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "UsageTotals",
    "Wait",
    "WaitTimeoutError",
    "Workflow",
    "WorkflowData",
    "WorkflowNotActiveError",
    "WorkflowStatus",
    "WorkflowValidationError",
    "WorkflowVersion",
    "connect",
    "connect_sync",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'baton_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names with the module's own."""
    return sorted({*globals(), *__all__})
