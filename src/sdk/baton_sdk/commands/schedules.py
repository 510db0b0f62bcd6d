"""``baton schedules ...``: run workflows on cron expressions, intervals or at a time."""

from __future__ import annotations

from datetime import datetime

import click

from baton_sdk.commands._common import (
    EXIT_USAGE,
    CommandFailed,
    Session,
    client_command,
    message_json,
    parse_inputs,
    resolve_workflow,
)
from baton_sdk.schedules import FireOutcome, IntervalUnit, OverlapPolicy, Schedule

_UNITS = {
    "s": IntervalUnit.SECONDS,
    "m": IntervalUnit.MINUTES,
    "h": IntervalUnit.HOURS,
    "d": IntervalUnit.DAYS,
}


def _every(text: str) -> tuple[int, IntervalUnit]:
    """``30m`` as (30, minutes); the units are s, m, h and d."""
    number, unit = text[:-1], _UNITS.get(text[-1:])
    if unit is None or not number.isdigit():
        raise CommandFailed(f"--every {text!r}: expected a number and s, m, h or d", EXIT_USAGE)
    return int(number), unit


def _at(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandFailed(f"--at {text!r}: expected an ISO 8601 time", EXIT_USAGE) from None
    if moment.tzinfo is None:
        raise CommandFailed(f"--at {text!r}: give a time zone, e.g. Z or +01:00", EXIT_USAGE)
    return moment


@click.group()
def schedules() -> None:
    """Run workflows on cron expressions, intervals or once at a fixed time."""


@schedules.command("create")
@click.argument("workflow")
@click.option("--name", required=True, help="Name of the schedule.")
@click.option("--cron", "cron_expression", help="5-field cron expression, e.g. '0 9 * * 1-5'.")
@click.option("--every", help="Interval, e.g. 30s, 15m, 2h, 1d.")
@click.option("--at", help="Run once at this ISO 8601 time (with its zone).")
@click.option("--timezone", help="IANA time zone of --cron (default UTC).")
@click.option("--input", "inputs", multiple=True, help="Run input as key=value (repeatable).")
@click.option("--overlap", type=click.Choice([p.value for p in OverlapPolicy]))
@click.option("--description", default="", help="Human-readable description.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@client_command
def create_schedule(
    session: Session,
    workflow: str,
    name: str,
    cron_expression: str | None,
    every: str | None,
    at: str | None,
    timezone: str | None,
    inputs: tuple[str, ...],
    overlap: str | None,
    description: str,
    disabled: bool,
) -> None:
    """Schedule runs of WORKFLOW (id or name): give one of --cron, --every or --at."""
    if sum(option is not None for option in (cron_expression, every, at)) != 1:
        raise CommandFailed("give exactly one of --cron, --every or --at", EXIT_USAGE)
    schedule = session.client.schedules.create(
        resolve_workflow(session, workflow),
        name=name,
        cron_expression=cron_expression,
        every=_every(every) if every else None,
        at=_at(at) if at else None,
        timezone=timezone,
        parameters=parse_inputs(inputs),
        description=description,
        enabled=not disabled,
        overlap_policy=overlap,
    )
    _report(session, schedule)


@schedules.command("list")
@click.option("--workflow", help="Only this workflow's schedules (id or name).")
@client_command
def list_schedules(session: Session, workflow: str | None) -> None:
    """List the project's schedules."""
    from baton_sdk.commands._render import schedules_table

    found = session.client.schedules.list(
        workflow=resolve_workflow(session, workflow) if workflow else None
    ).to_list()
    if session.json_output:
        session.print_json([message_json(schedule) for schedule in found])
    else:
        session.show(schedules_table(found))


@schedules.command("get")
@click.argument("schedule_id")
@client_command
def get_schedule(session: Session, schedule_id: str) -> None:
    """Show a schedule: when it fires next, and its last run."""
    _report(session, session.client.schedules.get(schedule_id))


def _set_enabled(session: Session, schedule_id: str, enabled: bool) -> None:
    _report(session, session.client.schedules.update(schedule_id, enabled=enabled))


@schedules.command("enable")
@click.argument("schedule_id")
@client_command
def enable_schedule(session: Session, schedule_id: str) -> None:
    """Enable a schedule (its next fire time is counted from now)."""
    _set_enabled(session, schedule_id, True)


@schedules.command("disable")
@click.argument("schedule_id")
@client_command
def disable_schedule(session: Session, schedule_id: str) -> None:
    """Disable a schedule: it fires no more until enabled."""
    _set_enabled(session, schedule_id, False)


@schedules.command("delete")
@click.argument("schedule_id")
@client_command
def delete_schedule(session: Session, schedule_id: str) -> None:
    """Delete a schedule (the runs it started are kept)."""
    session.client.schedules.delete(schedule_id)
    session.say(f"Schedule {schedule_id} deleted")


@schedules.command("trigger")
@click.argument("schedule_id")
@client_command
def trigger_schedule(session: Session, schedule_id: str) -> None:
    """Start a run of the schedule now and print its id."""
    run = session.client.schedules.trigger(schedule_id)
    if session.json_output:
        session.print_json(message_json(run))
    else:
        click.echo(run.id)


@schedules.command("fires")
@click.argument("schedule_id")
@click.option("--outcome", type=click.Choice([o.value for o in FireOutcome]))
@click.option("--limit", type=int, default=50, show_default=True)
@client_command
def list_fires(session: Session, schedule_id: str, outcome: str | None, limit: int) -> None:
    """List what the schedule did with its slots, newest first."""
    from baton_sdk.commands._render import fires_table

    found = session.client.schedules.fires(schedule_id, outcome=outcome, limit=limit).to_list()
    if session.json_output:
        session.print_json([message_json(fire) for fire in found])
    else:
        session.show(fires_table(found))


def _report(session: Session, schedule: Schedule) -> None:
    from baton_sdk.commands._render import schedule_details

    if session.json_output:
        session.print_json(message_json(schedule))
    else:
        session.show(schedule_details(schedule))
