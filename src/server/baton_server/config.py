"""Settings, built once at start (from flags and ``BATON_*`` variables) and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from baton_server.access.tokens import JwtSettings

DEFAULT_GRPC_PORT = 50051
DEFAULT_HTTP_PORT = 8000


def default_data_dir() -> Path:
    """Per-user data directory of the embedded PostgreSQL and Redis."""
    return Path(platformdirs.user_data_dir("baton", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything a Baton server process needs to know about its surroundings.

    When ``database_url`` and ``redis_url`` are both unset, ``baton serve`` starts an
    embedded PostgreSQL and Redis in ``data_dir``. ``run_worker`` runs an executor worker
    inside the server process (``baton worker`` runs more, elsewhere). ``run_envoy`` starts
    Envoy on ``http_port`` for the REST API (off when a separate Envoy fronts several
    servers, as in docker-compose.yml).
    """

    host: str = "127.0.0.1"
    grpc_port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    data_dir: Path | None = None
    database_url: str | None = None
    redis_url: str | None = None
    run_worker: bool = True
    run_envoy: bool = True
    access: AccessSettings = field(default_factory=lambda: AccessSettings())
    #: ``BATON_SECRET_KEY``: Fernet key(s) sealing agent secrets; None: the data dir's.
    secret_key: str | None = None

    @property
    def embedded(self) -> bool:
        return self.database_url is None and self.redis_url is None

    @property
    def grpc_address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"


AUTH_MODES = ("auto", "open", "required")
#: Calls per window per caller, by role; ``anonymous`` is per client address (open mode).
DEFAULT_RATE_LIMITS = {"viewer": 6000, "editor": 6000, "admin": 6000, "anonymous": 60000}
DEFAULT_RATE_WINDOW_S = 60


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def parse_rate_limits(text: str) -> dict[str, int] | None:
    """``viewer=600,editor=1200`` over the defaults; ``off`` disables rate limiting."""
    if text.strip().lower() == "off":
        return None
    limits = dict(DEFAULT_RATE_LIMITS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in limits or not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"BATON_RATE_LIMITS: {item!r} is not <role>=<calls> with a role of "
                f"{', '.join(limits)} and a positive number"
            )
        limits[name] = int(value)
    return limits


@dataclass(frozen=True)
class AccessSettings:
    """Who may call, and how often (see docs/access.md).

    ``mode`` ``open`` lets calls without a credential through as the admin of the
    default project (credentials that are sent are still checked); ``required`` makes
    every call but the health checks present one. ``rate_limits`` None turns rate
    limiting off.
    """

    mode: str = "open"
    jwt: JwtSettings | None = None
    rate_limits: dict[str, int] | None = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_window_s: int = DEFAULT_RATE_WINDOW_S

    @classmethod
    def from_environment(
        cls, mode: str, environ: Mapping[str, str] | None = None
    ) -> AccessSettings:
        """Settings from ``BATON_JWT_*`` and ``BATON_RATE_*`` variables and ``mode``."""
        env = os.environ if environ is None else environ
        jwt_settings = JwtSettings(
            secret=env.get("BATON_JWT_SECRET") or None,
            public_key_file=Path(env["BATON_JWT_PUBLIC_KEY_FILE"])
            if env.get("BATON_JWT_PUBLIC_KEY_FILE")
            else None,
            jwks_file=Path(env["BATON_JWT_JWKS_FILE"]) if env.get("BATON_JWT_JWKS_FILE") else None,
            issuer=env.get("BATON_JWT_ISSUER") or None,
            audience=env.get("BATON_JWT_AUDIENCE") or None,
        )
        configured = jwt_settings.secret or jwt_settings.public_key_file or jwt_settings.jwks_file
        return cls(
            mode=mode,
            jwt=jwt_settings if configured else None,
            rate_limits=parse_rate_limits(env.get("BATON_RATE_LIMITS", "")),
            rate_window_s=int(env.get("BATON_RATE_LIMIT_WINDOW_S", DEFAULT_RATE_WINDOW_S)),
        )
