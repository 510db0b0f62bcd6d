"""The access guard: authenticates, rate-limits and authorizes every RPC, and records
every successful write in the audit trail. The error-mapping interceptor calls it
before validating the request, so a caller without access learns nothing else."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from baton_server.access import context
from baton_server.access.audit import AuditLog
from baton_server.access.authenticator import Authenticator
from baton_server.access.context import Call
from baton_server.access.credentials import presented_credential
from baton_server.access.model import Identity, IdentityType, Role
from baton_server.access.ratelimit import RateLimiter
from baton_server.access.rules import MethodRule
from baton_server.config import AccessSettings
from baton_server.db.tables import DEFAULT_PROJECT_ID
from baton_server.errors import PermissionDenied, Unauthenticated

#: Who an open server takes a caller without credentials to be.
ANONYMOUS = Identity(
    name="anonymous", type=IdentityType.anonymous, role=Role.admin, project_id=DEFAULT_PROJECT_ID
)
_ID_FIELDS = ("run_id", "workflow_id", "agent_id", "key_id", "project_id")


def client_address(metadata: dict[str, str], context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The HTTP client's address when Envoy forwarded the call (it appends it to
    ``x-forwarded-for``), else the gRPC peer's."""
    forwarded = metadata.get("x-forwarded-for")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition("]")[0].lstrip("[")
    return rest.rpartition(":")[0] or peer


def _rate_subject(identity: Identity, address: str) -> str:
    if identity.key_id is not None:
        return f"key:{identity.key_id}"
    if identity.type is IdentityType.jwt:
        return f"jwt:{identity.name}"
    return f"addr:{address}"


def _resource_id(request: Message, response: Any) -> str:
    """The id of what a write changed: the response's (a created resource), else the
    request's."""
    for holder in (response, getattr(response, "api_key", None)):
        value = getattr(holder, "id", None)
        if isinstance(value, str) and value:
            return value
    for name in _ID_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


class AccessGuard:
    """Admits or refuses calls, per the contract's method rules and the settings."""

    def __init__(
        self,
        settings: AccessSettings,
        authenticator: Authenticator,
        limiter: RateLimiter | None,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self._authenticator = authenticator
        self._limiter = limiter
        self._audit = audit

    async def admit(
        self,
        rule: MethodRule,
        metadata: dict[str, str],
        grpc_context: grpc.aio.ServicerContext[Any, Any],
    ) -> Call:
        """The admitted call (also made the current one); raises Unauthenticated,
        ResourceExhausted or PermissionDenied. A public method admits anyone, unlimited."""
        if rule.public:
            return self._begin(rule, ANONYMOUS, metadata, grpc_context)
        credential = presented_credential(metadata)
        if credential is not None:
            try:
                identity = await self._authenticator.identify(credential)
            except Unauthenticated:
                # Guessing keys costs the guesser its address's budget (and each guess
                # a database lookup): refused credentials count like anonymous calls.
                await self._count(f"addr:{client_address(metadata, grpc_context)}", "anonymous")
                raise
        elif self.settings.mode == "open":
            identity = ANONYMOUS
        else:
            raise Unauthenticated(
                "this call needs a credential: an API key (X-API-Key or Authorization:"
                " Bearer) or a JWT (Authorization: Bearer)",
                reason="CREDENTIAL_MISSING",
            )
        call = self._begin(rule, identity, metadata, grpc_context)
        call.headers.extend(
            await self._count(
                _rate_subject(identity, call.client_address),
                "anonymous" if identity.anonymous else identity.role.name,
            )
        )
        if identity.role < rule.role:
            raise PermissionDenied(
                f"{rule.method} needs the {rule.role.name} role; the caller"
                f" '{identity.name}' has {identity.role.name}",
                reason="ROLE_INSUFFICIENT",
                metadata={"required_role": rule.role.name, "role": identity.role.name},
            )
        return call

    async def _count(self, subject: str, budget: str) -> tuple[tuple[str, str], ...]:
        """Count one call of ``subject`` against the limit of ``budget`` (a role or
        ``anonymous``); the rate-limit headers, or none when limits are off."""
        if self._limiter is None or self.settings.rate_limits is None:
            return ()
        quota = await self._limiter.take(subject, self.settings.rate_limits[budget])
        return quota.headers() if quota is not None else ()

    @staticmethod
    def _begin(
        rule: MethodRule,
        identity: Identity,
        metadata: dict[str, str],
        grpc_context: grpc.aio.ServicerContext[Any, Any],
    ) -> Call:
        call = Call(identity=identity, client_address=client_address(metadata, grpc_context))
        call.headers.extend(rule.response_headers)
        context.begin(call)
        return call

    def record(self, rule: MethodRule, call: Call, request: Message, response: Any) -> None:
        """Put a successful write in the audit trail."""
        if rule.writes is None:
            return
        identity = call.identity
        self._audit.add(
            {
                "actor": identity.name,
                "actor_type": identity.type.value,
                "role": identity.role.name,
                "project_id": identity.project_id,
                "method": rule.method,
                "resource_type": rule.writes,
                "resource_id": _resource_id(request, response),
                "client_address": call.client_address,
            }
        )
