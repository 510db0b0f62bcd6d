"""Who is calling: an API key or a JWT turned into an :class:`Identity`.

Keys are looked up by their visible prefix and cached for ``cache_ttl_s`` (half a
second): a revocation reaches every API server within that time, and a busy key costs
two small queries a second per server instead of one per call. ``last_used_at`` is
written at most once a minute per key, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.access import store
from baton_server.access.credentials import hash_matches, key_prefix, looks_like_key
from baton_server.access.model import ApiKey, Identity, IdentityType, Project, Role
from baton_server.access.tokens import JwtVerifier
from baton_server.db.tables import DEFAULT_PROJECT_ID
from baton_server.errors import Unauthenticated
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TOUCH_INTERVAL_S = 60.0
K = TypeVar("K")
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    """Values read from PostgreSQL, reused for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, capacity: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self._ttl_s:
            return False, None
        return True, entry[1]

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self._capacity:
            self._entries.clear()  # a flood of made-up keys must not grow memory
        self._entries[key] = (time.monotonic(), value)


class Authenticator:
    """Turns a presented credential into an identity, or refuses it."""

    def __init__(
        self, engine: AsyncEngine, jwt: JwtVerifier | None, *, cache_ttl_s: float = 0.5
    ) -> None:
        self._engine = engine
        self._jwt = jwt
        self._keys: _TtlCache[str, tuple[ApiKey, bytes] | None] = _TtlCache(cache_ttl_s)
        self._projects: _TtlCache[str, Project | None] = _TtlCache(5.0)
        self._touched: dict[uuid.UUID, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        await cancel_and_wait(self._background)

    async def identify(self, credential: str) -> Identity:
        """The identity behind ``credential``; ``Unauthenticated`` when it is not valid."""
        if looks_like_key(credential):
            return await self._key_identity(credential)
        if self._jwt is not None and credential.count(".") == 2:
            return await self._jwt_identity(credential)
        raise Unauthenticated(
            "the credential is neither a Baton API key"
            + (" nor a JWT" if self._jwt is not None else " (JWTs are not configured)"),
            reason="CREDENTIAL_INVALID",
        )

    async def _key_identity(self, key: str) -> Identity:
        prefix = key_prefix(key)
        cached, found = self._keys.get(prefix)
        if not cached:
            async with self._engine.connect() as conn:
                found = await store.key_by_prefix(conn, prefix)
            self._keys.put(prefix, found)
        if found is None or not hash_matches(key, found[1]):
            raise Unauthenticated("unknown API key", reason="API_KEY_INVALID")
        record = found[0]
        if record.revoked_at is not None:
            raise Unauthenticated(
                f"API key '{record.prefix}' was revoked",
                reason="API_KEY_REVOKED",
                metadata={"prefix": record.prefix},
            )
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise Unauthenticated(
                f"API key '{record.prefix}' expired at {record.expires_at.isoformat()}",
                reason="API_KEY_EXPIRED",
                metadata={"prefix": record.prefix},
            )
        self._touch(record)
        return Identity(
            name=record.name,
            type=IdentityType.api_key,
            role=record.role,
            project_id=record.project_id,
            key_id=record.id,
        )

    async def _jwt_identity(self, token: str) -> Identity:
        assert self._jwt is not None
        claims = self._jwt.verify(token)
        try:
            role = Role[claims.role] if claims.role is not None else Role.viewer
        except KeyError:
            raise Unauthenticated(
                f"the token's role {claims.role!r} is not viewer, editor or admin",
                reason="JWT_INVALID_ROLE",
            ) from None
        project_id = DEFAULT_PROJECT_ID
        if claims.project is not None:
            project = await self._project(claims.project)
            if project is None:
                raise Unauthenticated(
                    f"the token's project {claims.project!r} does not exist",
                    reason="JWT_UNKNOWN_PROJECT",
                )
            project_id = project.id
        return Identity(
            name=claims.subject, type=IdentityType.jwt, role=role, project_id=project_id
        )

    async def _project(self, id_or_name: str) -> Project | None:
        cached, project = self._projects.get(id_or_name)
        if not cached:
            async with self._engine.connect() as conn:
                project = await store.find_project(conn, id_or_name)
            self._projects.put(id_or_name, project)
        return project

    def _touch(self, key: ApiKey) -> None:
        now = time.monotonic()
        if now - self._touched.get(key.id, -TOUCH_INTERVAL_S) < TOUCH_INTERVAL_S:
            return
        self._touched[key.id] = now
        task = asyncio.create_task(self._write_last_used(key.id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_last_used(self, key_id: uuid.UUID) -> None:
        try:
            async with self._engine.begin() as conn:
                await store.touch_keys(conn, [key_id])
        except Exception as error:  # bookkeeping only: never fail or log-spam a call
            log.debug("could not record last use of key %s: %s", key_id, error)
