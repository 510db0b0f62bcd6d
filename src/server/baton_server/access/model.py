"""Identities, roles, projects, API keys and audit events as the services see them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class Role(enum.IntEnum):
    """A caller's role; a higher role includes every lower one."""

    viewer = 1
    editor = 2
    admin = 3


class IdentityType(enum.StrEnum):
    """How a caller proved who it is."""

    api_key = "api_key"
    jwt = "jwt"
    anonymous = "anonymous"


@dataclass(frozen=True)
class Identity:
    """The caller of one RPC, as authenticated.

    ``name`` is what runs record as ``triggered_by``/``cancelled_by`` and the audit trail
    as the actor: an API key's name, a JWT subject, or ``anonymous``.
    """

    name: str
    type: IdentityType
    role: Role
    project_id: uuid.UUID
    #: The API key used, if any (an admin may not revoke the key it calls with).
    key_id: uuid.UUID | None = None

    @property
    def anonymous(self) -> bool:
        return self.type is IdentityType.anonymous


@dataclass(frozen=True)
class Project:
    """A tenant."""

    id: uuid.UUID
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    """An API key's record; the key itself is never stored."""

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    role: Role
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditEvent:
    """One successful write."""

    id: int
    created_at: datetime
    actor: str
    actor_type: str
    role: Role
    project_id: uuid.UUID
    method: str
    resource_type: str
    resource_id: str
    client_address: str
