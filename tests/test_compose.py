"""docker-compose.yml and the Dockerfile, kept correct by construction (no Docker engine
here): services, commands, environment, ports and health checks agree with each other,
with the `baton` command line, and with envoy/compose.yaml, which must be the current
rendering of the Envoy template and pass `envoy --mode validate`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from sqlalchemy.engine import make_url

from baton_sdk.cli import main as baton_cli
from baton_server.app import GrpcApp
from baton_server.assets import SOURCE_ROOT
from baton_server.envoy import (
    COMPOSE_CONFIG,
    COMPOSE_LISTEN_PORT,
    COMPOSE_SOURCE_ROOT,
    COMPOSE_UPSTREAM,
    DESCRIPTOR,
    Upstream,
    compose_config,
    envoy_binary,
    render_config,
)
from tests.rest_support import RestProxy

COMPOSE = yaml.safe_load((SOURCE_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (SOURCE_ROOT / "Dockerfile").read_text()
BATON_SERVICES = ("migrate", "api", "worker", "deliver")


def parse_baton_command(args: list[str]) -> click.Context:
    """Parse ``baton <args>`` as the CLI would, without running it."""
    name, *rest = args
    command = baton_cli.get_command(click.Context(baton_cli), name)
    assert command is not None, args
    return command.make_context(name, rest)


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "migrate",
        "api",
        "worker",
        "deliver",
        "envoy",
    }
    for name in (*BATON_SERVICES, "envoy"):
        assert SERVICES[name]["image"] == SERVICES["api"]["image"], name
        assert SERVICES[name]["build"] == "."


def test_baton_commands_parse_and_do_what_the_stack_needs() -> None:
    assert DOCKERFILE.count('ENTRYPOINT ["baton"]') == 1
    migrate = parse_baton_command(SERVICES["migrate"]["command"])
    assert migrate.info_name == "migrate"
    api = parse_baton_command(SERVICES["api"]["command"])
    assert api.info_name == "serve"
    assert api.params["host"] == "0.0.0.0"
    assert (api.params["worker"], api.params["envoy"]) == (False, False)
    assert api.params["grpc_port"] == COMPOSE_UPSTREAM[1]
    worker = parse_baton_command(SERVICES["worker"]["command"])
    assert (worker.info_name, worker.params["deliveries"]) == ("worker", False)
    deliver = parse_baton_command(SERVICES["deliver"]["command"])
    assert (deliver.info_name, deliver.params["niceness"]) == ("deliver", 19)
    # The image's default command is a whole Baton on its embedded servers.
    default = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    assert default
    standalone = parse_baton_command(yaml.safe_load(default.group(1)))
    assert (standalone.info_name, standalone.params["envoy"]) == ("serve", True)
    assert standalone.params["auth"] == "required"  # it listens on every interface
    assert standalone.params["http_port"] == 8000


def test_environment_points_at_the_stack_databases() -> None:
    postgres = SERVICES["postgres"]["environment"]
    for name in BATON_SERVICES:
        environment = SERVICES[name]["environment"]
        database = make_url(environment["BATON_DATABASE_URL"])
        assert (database.drivername, database.host, database.port) == (
            "postgresql+asyncpg",
            "postgres",
            5432,
        )
        assert (database.username, database.password, database.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert environment["BATON_REDIS_URL"].startswith("redis://redis:6379/")
        # Secure by default: credentials required, one secret key for every process.
        assert environment["BATON_AUTH"] == "required"
        assert environment["BATON_SECRET_KEY"].startswith("${BATON_SECRET_KEY:?")


def test_start_order_and_health_checks() -> None:
    def condition(service: str, dependency: str) -> str:
        return str(SERVICES[service]["depends_on"][dependency]["condition"])

    assert condition("migrate", "postgres") == "service_healthy"
    for name in ("api", "worker"):
        assert condition(name, "migrate") == "service_completed_successfully"
        assert condition(name, "redis") == "service_healthy"
    assert condition("deliver", "migrate") == "service_completed_successfully"
    assert condition("envoy", "api") == "service_healthy"
    for name in ("postgres", "redis", "api", "envoy"):
        assert SERVICES[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert SERVICES["migrate"]["restart"] == "no"


def test_envoy_serves_the_rendered_config_on_the_published_port() -> None:
    envoy = SERVICES["envoy"]
    assert envoy["entrypoint"] == ["envoy"]
    command = envoy["command"]
    config_in_image = command[command.index("--config-path") + 1]
    # The Dockerfile copies the tree to /app; the config and descriptor are in it.
    assert "WORKDIR /app" in DOCKERFILE
    assert "COPY envoy ./envoy" in DOCKERFILE
    assert "COPY gen ./gen" in DOCKERFILE
    assert config_in_image == f"/app/{COMPOSE_CONFIG.relative_to(SOURCE_ROOT)}"
    assert str(COMPOSE_SOURCE_ROOT) == "/app"
    assert envoy["ports"] == [f"{COMPOSE_LISTEN_PORT}:{COMPOSE_LISTEN_PORT}"]
    assert COMPOSE_UPSTREAM[0] == "api"
    assert f"{COMPOSE_UPSTREAM[1]}" in SERVICES["api"]["expose"]


def test_compose_envoy_config_is_the_current_rendering_of_the_template() -> None:
    assert COMPOSE_CONFIG.read_text() == compose_config(), (
        "envoy/compose.yaml is stale: run `python scripts/envoy_config.py`"
    )
    assert f'address: "{COMPOSE_UPSTREAM[0]}"' in COMPOSE_CONFIG.read_text()
    assert "type: STRICT_DNS" in COMPOSE_CONFIG.read_text()


def validate(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "envoy.yaml"
    path.write_text(config)
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--config-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_envoy_config_validates(tmp_path: Path) -> None:
    # The files Envoy reads are in the checkout here, at /app in the image.
    config = COMPOSE_CONFIG.read_text().replace(f'"{COMPOSE_SOURCE_ROOT}/', f'"{SOURCE_ROOT}/')
    assert str(DESCRIPTOR.relative_to(SOURCE_ROOT)) in config
    result = validate(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("upstream", [Upstream("127.0.0.1", 50051), Upstream("::1", 50051)])
def test_local_envoy_configs_validate(tmp_path: Path, upstream: Upstream) -> None:
    config = render_config(listen_address="127.0.0.1", listen_port=8000, upstream=upstream)
    assert "type: STATIC" in config
    result = validate(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


async def run_check(test: list[str], port_from: int, port_to: int) -> int:
    assert test[:2] == ["CMD", "python"]
    script = test[3].replace(f"127.0.0.1:{port_from}", f"127.0.0.1:{port_to}")
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    return await asyncio.wait_for(process.wait(), 30)


async def test_health_check_commands_work_against_real_servers(
    grpc_app: GrpcApp, rest_proxy: RestProxy
) -> None:
    """The api and envoy health checks, run here against a real server and Envoy."""
    api_check = SERVICES["api"]["healthcheck"]["test"]
    assert await run_check(api_check, COMPOSE_UPSTREAM[1], grpc_app.port) == 0
    envoy_check = SERVICES["envoy"]["healthcheck"]["test"]
    assert await run_check(envoy_check, COMPOSE_LISTEN_PORT, rest_proxy.port) == 0
    # And they fail when nothing answers.
    assert await run_check(api_check, COMPOSE_UPSTREAM[1], 9) != 0
