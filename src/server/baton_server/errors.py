"""Domain errors: what went wrong, in terms a client can act on.

Services raise these; one place (``baton_server.rpc.errors``) turns them into gRPC
statuses with ``google.rpc`` details. ``reason`` is the stable, machine-readable
contract (``google.rpc.ErrorInfo.reason``); messages are for humans and may change.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    """The class of failure; decides the gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: a dotted path such as ``steps.extract.agent_name``."""

    field: str
    description: str
    reason: str = ""


class BatonError(Exception):
    """Base of every error a client is meant to see."""

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})
        #: Response metadata sent with the error (REST headers), e.g. ``retry-after``.
        self.headers = tuple(headers)


class InvalidArgument(BatonError):
    """The request itself is malformed; retrying it unchanged cannot succeed."""

    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(BatonError):
    """The addressed resource does not exist."""

    kind = ErrorKind.NOT_FOUND


class AlreadyExists(BatonError):
    """A resource with the same unique key exists."""

    kind = ErrorKind.ALREADY_EXISTS


class FailedPrecondition(BatonError):
    """The request is well formed but the system's state does not allow it."""

    kind = ErrorKind.FAILED_PRECONDITION


class Unavailable(BatonError):
    """A dependency (database, cache) is unreachable; the call may be retried."""

    kind = ErrorKind.UNAVAILABLE


class Unauthenticated(BatonError):
    """No valid credential: missing, unknown, revoked, expired or badly signed."""

    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(BatonError):
    """The caller is known but its role does not allow the call."""

    kind = ErrorKind.PERMISSION_DENIED


class ResourceExhausted(BatonError):
    """A limit was reached (a rate limit); its headers say when to try again."""

    kind = ErrorKind.RESOURCE_EXHAUSTED
