"""The SDK's exception tree.

Every failed call raises a subclass of :class:`BatonError`, chosen by the gRPC status
code and, where a narrower class exists, by the ``google.rpc.ErrorInfo`` reason the
server attached (carried in the ``grpc-status-details-bin`` trailer). The message is
for humans and may change; code against the class, :attr:`BatonError.reason` and
:attr:`BatonError.metadata`.

Example:
    >>> try:
    ...     await client.agents.create(name="extractor", url="http://extractor:8080")
    ... except baton_sdk.AlreadyExistsError as error:
    ...     print(error.reason, error.metadata)  # AGENT_NAME_TAKEN {'name': 'extractor'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from baton_sdk.models import RunStatus

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request (``google.rpc.BadRequest.FieldViolation``).

    Attributes:
        field: Path of the field, e.g. ``retry_config.max_retries`` or
            ``steps.extract.agent_name``.
        description: Why the value is rejected.
        reason: Machine-readable rule id when the server sends one, else ``None``.
    """

    field: str
    description: str
    reason: str | None = None


class BatonError(Exception):
    """Base class of every error the SDK raises.

    Attributes:
        code: The gRPC status code of the failed call.
        message: Human-readable description (may change between versions).
        reason: The stable ``google.rpc.ErrorInfo`` reason, e.g. ``RUN_NOT_FOUND``;
            ``None`` when the error carried none (for example a connection failure).
        domain: The ``ErrorInfo`` domain (``baton`` for Baton's own errors), or ``None``.
        metadata: The ``ErrorInfo`` metadata, e.g. ``{"name": "extractor"}``.
        field_violations: The ``BadRequest`` field violations, if any.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        domain: str | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        """Create an error; the SDK does this, applications rarely need to.

        Args:
            message: Human-readable description.
            code: Status code; defaults to the class's own code.
            reason: ``ErrorInfo`` reason.
            domain: ``ErrorInfo`` domain.
            metadata: ``ErrorInfo`` metadata.
            field_violations: ``BadRequest`` field violations.
        """
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)

    def __str__(self) -> str:
        """Return ``CODE (REASON): message`` plus one line per field violation."""
        label = self.code.name + (f" ({self.reason})" if self.reason else "")
        lines = [f"{label}: {self.message}"]
        lines.extend(f"  {v.field}: {v.description}" for v in self.field_violations)
        return "\n".join(lines)

    def __repr__(self) -> str:
        """Return a representation with the class, code, reason and message."""
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )


class CallCancelledError(BatonError):
    """The call was cancelled (``CANCELLED``), usually by the other side."""

    code = grpc.StatusCode.CANCELLED


class UnknownError(BatonError):
    """The server failed in a way it did not classify (``UNKNOWN``)."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(BatonError):
    """The request is malformed (``INVALID_ARGUMENT``); retrying it unchanged fails again.

    :attr:`field_violations` names each rejected field.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT


class WorkflowValidationError(InvalidArgumentError):
    """A workflow definition is structurally invalid.

    Reasons: ``WORKFLOW_UNKNOWN_STEP``, ``WORKFLOW_INVALID_REFERENCE``,
    ``WORKFLOW_INVALID_ROUTE``, ``WORKFLOW_CYCLE``, ``WORKFLOW_UNREACHABLE_STEP``,
    ``WORKFLOW_REFERENCE_ORDER``;
    :attr:`field_violations` names the offending step and field.
    """


class DeadlineExceededError(BatonError, TimeoutError):
    """The call did not finish before its deadline (``DEADLINE_EXCEEDED``).

    Also a :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    """

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class WaitTimeoutError(DeadlineExceededError):
    """Waiting for a run to finish took longer than the ``timeout`` given.

    The run itself goes on; wait again or watch it.

    Attributes:
        run_id: The run waited for.
        last_status: The run's status as of the last event received, if any.
    """

    def __init__(self, run_id: str, timeout: float, last_status: RunStatus | None) -> None:
        """Create the error for ``run_id`` after ``timeout`` seconds.

        Args:
            run_id: The run waited for.
            timeout: The timeout that expired, in seconds.
            last_status: The run's last known status.
        """
        status = f" (still {last_status.value})" if last_status is not None else ""
        super().__init__(f"run {run_id} did not finish within {timeout:g}s{status}")
        self.run_id = run_id
        self.last_status = last_status


class NotFoundError(BatonError):
    """The addressed resource does not exist (``NOT_FOUND``).

    :attr:`reason` says which kind: ``AGENT_NOT_FOUND``, ``WORKFLOW_NOT_FOUND``,
    ``RUN_NOT_FOUND``.
    """

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(BatonError):
    """A resource with the same unique key exists (``ALREADY_EXISTS``).

    Reasons: ``AGENT_NAME_TAKEN``, ``WORKFLOW_NAME_TAKEN``; ``metadata["name"]`` holds
    the name.
    """

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(BatonError):
    """The caller may not do this (``PERMISSION_DENIED``)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(BatonError):
    """A quota or rate limit was hit (``RESOURCE_EXHAUSTED``)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(BatonError):
    """The request is valid but the current state forbids it (``FAILED_PRECONDITION``).

    Examples of :attr:`reason`: ``AGENT_DELETED``, ``WORKFLOW_DELETED``,
    ``RUN_NOT_RETRYABLE``, ``RUN_NOT_CANCELLABLE``.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION


class WorkflowNotActiveError(FailedPreconditionError):
    """The workflow cannot run: it is inactive or deleted (``WORKFLOW_NOT_ACTIVE``)."""


class AgentUnavailableError(FailedPreconditionError):
    """A workflow step names an agent that is missing, inactive or deleted.

    Reason ``AGENT_UNAVAILABLE``; :attr:`field_violations` names the steps.
    """


class AbortedError(BatonError):
    """The operation was aborted by a concurrent change (``ABORTED``)."""

    code = grpc.StatusCode.ABORTED


class OutOfRangeError(BatonError):
    """A value is outside the valid range (``OUT_OF_RANGE``)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(BatonError):
    """The server does not implement this call (``UNIMPLEMENTED``); it may be older."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(BatonError):
    """The server failed unexpectedly (``INTERNAL``); details are in its log only."""

    code = grpc.StatusCode.INTERNAL


class UnavailableError(BatonError, ConnectionError):
    """The server (or a dependency of it) cannot be reached (``UNAVAILABLE``).

    Idempotent calls are retried with backoff before this is raised. Also a
    :class:`ConnectionError`.
    """

    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(BatonError):
    """Unrecoverable data loss or corruption (``DATA_LOSS``)."""

    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(BatonError):
    """The call lacks valid credentials (``UNAUTHENTICATED``)."""

    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[BatonError]] = {
    cls.code: cls
    for cls in (
        CallCancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}

# Narrower classes for reasons worth catching on their own. A reason only selects its
# class when that class belongs to the status code's class, so a server that pairs a
# known reason with an unexpected code still yields the code's class.
_BY_REASON: dict[str, type[BatonError]] = {
    "WORKFLOW_UNKNOWN_STEP": WorkflowValidationError,
    "WORKFLOW_INVALID_REFERENCE": WorkflowValidationError,
    "WORKFLOW_INVALID_ROUTE": WorkflowValidationError,
    "WORKFLOW_CYCLE": WorkflowValidationError,
    "WORKFLOW_UNREACHABLE_STEP": WorkflowValidationError,
    "WORKFLOW_REFERENCE_ORDER": WorkflowValidationError,
    "WORKFLOW_NOT_ACTIVE": WorkflowNotActiveError,
    "AGENT_UNAVAILABLE": AgentUnavailableError,
}


def _status_details(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the original error
                return None
    return None


def error_from_rpc(error: grpc.aio.AioRpcError) -> BatonError:
    """Translate a failed gRPC call into the matching :class:`BatonError` subclass.

    Args:
        error: The error grpc.aio raised.

    Returns:
        The error to raise, with ``reason``, ``metadata`` and ``field_violations``
        read from the ``google.rpc`` status details when the server sent them.
    """
    code = error.code()
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    status = _status_details(error)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad_request = error_details_pb2.BadRequest()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                reason, domain, metadata = (
                    info.reason or None,
                    info.domain or None,
                    dict(info.metadata),
                )
            elif detail.Is(bad_request.DESCRIPTOR) and detail.Unpack(bad_request):
                violations.extend(
                    FieldViolation(v.field, v.description, v.reason or None)
                    for v in bad_request.field_violations
                )
    cls = _BY_CODE.get(code, UnknownError)
    narrower = _BY_REASON.get(reason or "")
    if narrower is not None and issubclass(narrower, cls):
        cls = narrower
    return cls(
        error.details() or code.name,
        code=code,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
    )
