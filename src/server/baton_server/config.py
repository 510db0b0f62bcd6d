"""Settings, built once at start (from flags and ``BATON_*`` variables) and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

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

    @property
    def embedded(self) -> bool:
        return self.database_url is None and self.redis_url is None

    @property
    def grpc_address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"
