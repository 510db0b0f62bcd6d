"""``baton keys ...`` and ``baton projects ...``: API keys and projects (admin)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import click

from baton_sdk.commands._common import Session, client_command, message_json

_ROLES = click.Choice(["viewer", "editor", "admin"])


#: Entry point of the server distribution that makes a key in the database itself.
DIRECT_KEYS = "baton.direct_keys"


def _direct_key_maker() -> Callable[..., tuple[str, str, str, str]]:
    for plugin in entry_points(group=DIRECT_KEYS):
        maker: Callable[..., tuple[str, str, str, str]] = plugin.load()
        return maker
    raise click.ClickException(
        "--direct writes to the database itself: it needs the Baton server installed"
        " (pip install baton-orchestrator)"
    )


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (needs an admin key, or an open server)."""


@keys.command("create")
@click.option("--name", required=True, help="Name of the key (recorded as the actor).")
@click.option("--role", type=_ROLES, required=True, help="What the key may do.")
@click.option("--project", help="Project id (default: the caller's project).")
@click.option(
    "--direct",
    is_flag=True,
    help="Make the key in the database, without a server (the first admin key of a "
    "server run with --auth required). Uses --database-url or the data directory; "
    "--project may then be a name.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BATON_DATA_DIR",
    help="With --direct: the server's data directory (embedded PostgreSQL).",
)
@click.option(
    "--database-url", envvar="BATON_DATABASE_URL", help="With --direct: the PostgreSQL URL."
)
@client_command
def create_key(
    session: Session,
    name: str,
    role: str,
    project: str | None,
    direct: bool,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Create an API key and print its secret (shown this once)."""
    if direct:
        key_id, prefix, project_id, secret = _direct_key_maker()(
            name=name, role=role, project=project, data_dir=data_dir, database_url=database_url
        )
    else:
        created = session.client.access.create_key(name=name, role=role, project_id=project)
        secret = created.secret
        key_id, prefix, project_id = (
            created.api_key.id,
            created.api_key.prefix,
            created.api_key.project_id,
        )
    if session.json_output:
        session.print_json(
            {"id": key_id, "prefix": prefix, "project_id": project_id, "secret": secret}
        )
        return
    session.say(f"API key '{name}' ({role}, project {project_id}, id {key_id}):")
    click.echo(secret)
    session.say("Store it now: Baton keeps only its hash and cannot show it again.")


@keys.command("list")
@click.option("--project", help="Only keys of this project (id).")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@client_command
def list_keys(session: Session, project: str | None, include_revoked: bool) -> None:
    """List API keys (never their secrets), newest first."""
    from baton_sdk.commands._render import keys_table

    found = session.client.access.list_keys(
        project_id=project, include_revoked=include_revoked, page_size=100
    ).to_list()
    if session.json_output:
        session.print_json([message_json(key) for key in found])
    else:
        session.show(keys_table(found))


@keys.command("revoke")
@click.argument("key_id")
@client_command
def revoke_key(session: Session, key_id: str) -> None:
    """Revoke an API key: every server refuses it within a second."""
    key = session.client.access.revoke_key(key_id)
    if session.json_output:
        session.print_json(message_json(key))
    else:
        session.say(f"API key '{key.name}' ({key.prefix}) revoked")


@click.group()
def projects() -> None:
    """Create and list projects (needs an admin key, or an open server)."""


@projects.command("create")
@click.argument("name")
@click.option("--description", default="", help="Human-readable description.")
@client_command
def create_project(session: Session, name: str, description: str) -> None:
    """Create a project."""
    project = session.client.access.create_project(name=name, description=description)
    if session.json_output:
        session.print_json(message_json(project))
    else:
        session.say(f"project '{project.name}' created: {project.id}")


@projects.command("list")
@client_command
def list_projects(session: Session) -> None:
    """List projects by name."""
    from baton_sdk.commands._render import projects_table

    found = session.client.access.list_projects(page_size=100).to_list()
    if session.json_output:
        session.print_json([message_json(project) for project in found])
    else:
        session.show(projects_table(found))
