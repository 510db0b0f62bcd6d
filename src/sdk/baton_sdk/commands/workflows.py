"""``baton workflows ...``"""

from __future__ import annotations

import json
from typing import Any

import click

from baton_sdk.commands._common import (
    EXIT_RUN_FAILED,
    Session,
    checked_fields,
    client_command,
    load_object,
    message_json,
    resolve_workflow,
)

_FIELDS = {"name", "description", "start_step", "steps", "status", "max_concurrent_runs"}
_READ_ONLY = {"id", "version", "definition_id", "project_id", "created_at", "updated_at"}
_STATUSES = click.Choice(["active", "inactive", "deleted"])


def _flattened(body: dict[str, Any]) -> dict[str, Any]:
    """Accept the shape ``workflows get --json`` prints: ``workflow_data`` holds the graph."""
    data = body.pop("workflow_data", None)
    if isinstance(data, dict):
        for key in ("start_step", "steps"):
            if key in data:
                body.setdefault(key, data[key])
    return body


@click.group()
def workflows() -> None:
    """Define, version, activate and deactivate workflows."""


@workflows.command("list")
@click.option("--status", type=_STATUSES, help="Only workflows with this status.")
@click.option("--name", help="Only the workflow with exactly this name.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@client_command
def list_workflows(
    session: Session, status: str | None, name: str | None, limit: int | None
) -> None:
    """List workflows at their current versions, newest first."""
    from baton_sdk.commands._render import workflows_table
    from baton_sdk.models import WorkflowStatus

    found = session.client.workflows.list(
        status=WorkflowStatus(status) if status else None, name=name, limit=limit, page_size=100
    ).to_list()
    if session.json_output:
        session.print_json([message_json(workflow) for workflow in found])
    else:
        session.show(workflows_table(found))


@workflows.command("get")
@click.argument("workflow")
@client_command
def get_workflow(session: Session, workflow: str) -> None:
    """Show a workflow (by id or name) and its steps."""
    from baton_sdk.commands._render import workflow_details, workflow_steps_table

    found = resolve_workflow(session, workflow)
    if session.json_output:
        session.print_json(message_json(found))
    else:
        session.show(workflow_details(found))
        click.echo()
        session.show(workflow_steps_table(found))


@workflows.command("create")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    help="JSON or YAML file with the workflow (the REST request body); - for stdin.",
)
@client_command
def create_workflow(session: Session, path: str) -> None:
    """Create a workflow described in a file."""
    fields = checked_fields(
        _flattened(load_object(path)),
        _FIELDS - {"status"},
        read_only=_READ_ONLY | {"status"},
        what="workflow",
    )
    created = session.client.workflows.create(**fields)
    if session.json_output:
        session.print_json(message_json(created))
    else:
        session.say(f"created workflow {created.name} version {created.version} ({created.id})")


@workflows.command("update")
@click.argument("workflow")
@click.option(
    "-f", "--file", "path", required=True, help="JSON or YAML file with the fields to change."
)
@client_command
def update_workflow(session: Session, workflow: str, path: str) -> None:
    """Change a workflow; new steps or start step make a new version."""
    fields = checked_fields(
        _flattened(load_object(path)), _FIELDS, read_only=_READ_ONLY, what="workflow"
    )
    updated = session.client.workflows.update(resolve_workflow(session, workflow), **fields)
    if session.json_output:
        session.print_json(message_json(updated))
    else:
        session.say(
            f"updated workflow {updated.name}, now version {updated.version} ({updated.id})"
        )


@workflows.command("delete")
@click.argument("workflow")
@client_command
def delete_workflow(session: Session, workflow: str) -> None:
    """Delete a workflow (soft delete: no new runs)."""
    found = resolve_workflow(session, workflow)
    session.client.workflows.delete(found)
    if session.json_output:
        session.print_json({"id": found.id, "deleted": True})
    else:
        session.say(f"deleted workflow {found.name} ({found.id})")


@workflows.command("versions")
@click.argument("workflow")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@client_command
def workflow_versions(session: Session, workflow: str, limit: int | None) -> None:
    """List the versions of a workflow, newest first."""
    from baton_sdk.commands._render import versions_table

    found = session.client.workflows.versions(
        resolve_workflow(session, workflow), limit=limit, page_size=100
    ).to_list()
    if session.json_output:
        session.print_json([message_json(version) for version in found])
    else:
        session.show(versions_table(found))


@workflows.command("activate")
@click.argument("workflow")
@client_command
def activate_workflow(session: Session, workflow: str) -> None:
    """Make a workflow runnable (its agents must be active)."""
    activated = session.client.workflows.activate(resolve_workflow(session, workflow))
    if session.json_output:
        session.print_json(message_json(activated))
    else:
        session.say(f"workflow {activated.name} is {activated.status.value}")


@workflows.command("deactivate")
@click.argument("workflow")
@client_command
def deactivate_workflow(session: Session, workflow: str) -> None:
    """Stop new runs of a workflow; started runs continue."""
    deactivated = session.client.workflows.deactivate(resolve_workflow(session, workflow))
    if session.json_output:
        session.print_json(message_json(deactivated))
    else:
        session.say(f"workflow {deactivated.name} is {deactivated.status.value}")


@workflows.command("test-step")
@click.argument("workflow")
@click.argument("step_id")
@click.option("--input-file", help="JSON or YAML file with the workflow input; - for stdin.")
@click.option(
    "--outputs-file", help="JSON or YAML file with earlier steps' outputs, keyed by step id."
)
@click.option("--from-run", help="Take earlier steps' outputs (and the input) from this run.")
@client_command
def test_step(
    session: Session,
    workflow: str,
    step_id: str,
    input_file: str | None,
    outputs_file: str | None,
    from_run: str | None,
) -> None:
    """Call one step's agent once with its resolved input; creates no run.

    Exits with 1 when the agent call failed.
    """
    tested = session.client.workflows.test_step(
        resolve_workflow(session, workflow),
        step_id,
        input_data=load_object(input_file) if input_file else None,
        step_outputs=load_object(outputs_file) if outputs_file else None,
        from_run=from_run,
    )
    if session.json_output:
        session.print_json(message_json(tested))
    else:
        outcome = "completed" if tested.completed else "failed"
        session.say(f"step {step_id} ({tested.agent_name}): {outcome} in {tested.duration_ms} ms")
        session.say(f"input: {json.dumps(tested.input)}")
        if tested.completed:
            session.say(f"output: {json.dumps(tested.output)}")
        else:
            session.say(f"error: {tested.error_message}")
    if not tested.completed:
        raise SystemExit(EXIT_RUN_FAILED)
