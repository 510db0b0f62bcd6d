"""Secrets at rest (agent ``auth_config``): sealed with Fernet, keys rotatable.

The key comes from ``BATON_SECRET_KEY`` (one or more Fernet keys, comma-separated; the
first seals, every one opens, so a new key goes first and the old one stays until
``seal_stored`` has resealed everything), or from ``secret.key`` in the data
directory, generated on first start.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.db.tables import agents

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"


class SecretKeyError(RuntimeError):
    """No usable secret key; the message says how to provide one."""


class SecretBox:
    """Seals and opens JSON secrets."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        try:
            fernets = [Fernet(key) for key in keys]
        except ValueError:
            raise SecretKeyError(
                "a secret key is not a Fernet key (32 url-safe base64-encoded bytes; make"
                " one with `baton secret-key`)"
            ) from None
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)

    @classmethod
    def load(cls, keys: str | None, data_dir: Path | None, *, create: bool) -> SecretBox:
        """The box for ``BATON_SECRET_KEY`` (``keys``) or the data directory's key file,
        made there first when ``create`` is set."""
        if keys:
            return cls([k.strip() for k in keys.split(",") if k.strip()])
        if data_dir is None:
            raise SecretKeyError("set BATON_SECRET_KEY (the API servers' secret key)")
        path = data_dir / KEY_FILE
        if not path.exists():
            if not create:
                raise SecretKeyError(
                    f"no secret key: set BATON_SECRET_KEY, or point --data-dir at the "
                    f"server's data directory ({path} is missing)"
                )
            data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(Fernet.generate_key())
            log.info("generated the secret key %s (keep it: sealed secrets need it)", path)
        return cls([path.read_bytes().strip()])

    def seal(self, value: dict[str, Any]) -> str:
        return self._primary.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()

    def open(self, sealed: str) -> dict[str, Any]:
        """The secret; plain JSON stored before sealing existed is accepted as it is."""
        if sealed.startswith("{"):
            legacy: dict[str, Any] = json.loads(sealed)
            return legacy
        try:
            value: dict[str, Any] = json.loads(self._all.decrypt(sealed.encode()))
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret cannot be opened with the configured secret key(s)"
            ) from None
        return value

    def sealed_by_primary(self, sealed: str) -> bool:
        try:
            self._primary.decrypt(sealed.encode())
        except InvalidToken:
            return False
        return True


async def seal_stored(engine: AsyncEngine, box: SecretBox) -> int:
    """Reseal every stored secret that is plain or sealed by an older key; the count."""
    resealed = 0
    async with engine.begin() as conn:
        rows = await conn.execute(
            sa.select(agents.c.id, agents.c.auth_config)
            .where(agents.c.auth_config.is_not(None))
            .with_for_update()
        )
        for agent_id, sealed in rows.all():
            if not sealed.startswith("{") and box.sealed_by_primary(sealed):
                continue
            await conn.execute(
                agents.update()
                .where(agents.c.id == agent_id)
                .values(auth_config=box.seal(box.open(sealed)))
            )
            resealed += 1
    if resealed:
        log.info("sealed %d stored secret(s) with the current secret key", resealed)
    return resealed
