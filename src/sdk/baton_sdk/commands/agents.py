"""``baton agents ...``"""

from __future__ import annotations

import click

from baton_sdk.commands._common import (
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    CommandFailed,
    Session,
    checked_fields,
    client_command,
    load_document,
    load_object,
    message_json,
    resolve_agent,
)

_FIELDS = {
    "name",
    "url",
    "description",
    "auth_type",
    "auth_config",
    "timeout_ms",
    "retry_config",
    "protocol",
    "status",
}
_READ_ONLY = {"id", "project_id", "created_at", "updated_at"}
_STATUSES = click.Choice(["active", "inactive", "deleted"])


@click.group()
def agents() -> None:
    """Register and manage agents."""


@agents.command("list")
@click.option("--status", type=_STATUSES, help="Only agents with this status.")
@click.option("--name", help="Only the agent with exactly this name.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@client_command
def list_agents(session: Session, status: str | None, name: str | None, limit: int | None) -> None:
    """List agents, newest first."""
    from baton_sdk.commands._render import agents_table
    from baton_sdk.models import AgentStatus

    found = session.client.agents.list(
        status=AgentStatus(status) if status else None, name=name, limit=limit, page_size=100
    ).to_list()
    if session.json_output:
        session.print_json([message_json(agent) for agent in found])
    else:
        session.show(agents_table(found))


@agents.command("get")
@click.argument("agent")
@client_command
def get_agent(session: Session, agent: str) -> None:
    """Show an agent (by id or name)."""
    from baton_sdk.commands._render import agent_details

    found = resolve_agent(session, agent)
    if session.json_output:
        session.print_json(message_json(found))
    else:
        session.show(agent_details(found))


@agents.command("create")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    help="JSON or YAML file with the agent (or a list of agents); - for stdin.",
)
@client_command
def create_agent(session: Session, path: str) -> None:
    """Register agents described in a file (the REST API's request body)."""
    document = load_document(path)
    bodies = document if isinstance(document, list) else [document]
    created = []
    for body in bodies:
        if not isinstance(body, dict):
            raise CommandFailed(f"{path}: each agent must be an object", EXIT_USAGE)
        fields = checked_fields(body, _FIELDS - {"status"}, read_only=_READ_ONLY, what="agent")
        created.append(session.client.agents.create(**fields))
    if session.json_output:
        rendered = [message_json(agent) for agent in created]
        session.print_json(rendered if isinstance(document, list) else rendered[0])
    else:
        for agent in created:
            session.say(f"created agent {agent.name} ({agent.id})")


@agents.command("update")
@click.argument("agent")
@click.option(
    "-f", "--file", "path", required=True, help="JSON or YAML file with the fields to change."
)
@client_command
def update_agent(session: Session, agent: str, path: str) -> None:
    """Change the fields of an agent given in a file; others keep their values."""
    fields = checked_fields(
        load_object(path), _FIELDS - {"name"}, read_only=_READ_ONLY | {"name"}, what="agent"
    )
    updated = session.client.agents.update(resolve_agent(session, agent), **fields)
    if session.json_output:
        session.print_json(message_json(updated))
    else:
        session.say(f"updated agent {updated.name} ({updated.id})")


@agents.command("delete")
@click.argument("agent")
@client_command
def delete_agent(session: Session, agent: str) -> None:
    """Delete an agent (soft delete: it stays readable with status deleted)."""
    found = resolve_agent(session, agent)
    session.client.agents.delete(found)
    if session.json_output:
        session.print_json({"id": found.id, "deleted": True})
    else:
        session.say(f"deleted agent {found.name} ({found.id})")


@agents.command("health")
@click.argument("agent")
@client_command
def agent_health(session: Session, agent: str) -> None:
    """Probe an agent; exits with 1 when it is unhealthy."""
    found = resolve_agent(session, agent)
    health = session.client.agents.check_health(found)
    if session.json_output:
        session.print_json(message_json(health))
    elif health.healthy:
        session.say(
            f"{found.name} is healthy (HTTP {health.status_code},"
            f" {health.response_time_ms or 0:.0f} ms)"
        )
    else:
        session.say(f"{found.name} is unhealthy: {health.error}", style="red")
    if not health.healthy:
        raise SystemExit(EXIT_RUN_FAILED)
