"""``baton run <workflow>`` and ``baton runs ...``"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import click

from baton_sdk.commands._common import (
    EXIT_RUN_FAILED,
    Session,
    client_command,
    interruptible,
    load_object,
    message_json,
    parse_inputs,
    resolve_workflow,
)

if TYPE_CHECKING:
    from baton_sdk.models import RunData, RunLog

_STATUSES = click.Choice(["PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"])
_timeout = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up waiting after this many seconds (the run goes on); exit code 124.",
)


def _exit_for(run: RunData) -> None:
    """Exit non-zero when the run did not complete."""
    from baton_sdk.models import RunStatus

    if run.status is not RunStatus.COMPLETED:
        raise SystemExit(EXIT_RUN_FAILED)


def follow(session: Session, run_id: str, *, timeout: float | None, show_logs: bool) -> None:
    """Show a run's progress live until it ends, then its output; exit by its status."""
    from baton_sdk.commands._render import RunProgress, pretty_json
    from baton_sdk.models import RunStatus

    if session.json_output:
        # Scripts get the finished run, like `runs get --json`.
        with interruptible(run_id):
            finished = session.client.runs.wait(run_id, timeout=timeout)
        session.print_json(message_json(finished))
        _exit_for(finished)
        return

    def logs_until(sequence: int) -> Iterator[RunLog]:
        return itertools.takewhile(
            lambda line: line.sequence <= sequence, session.client.runs.logs(run_id)
        )

    progress = RunProgress(session.console, logs_until=logs_until if show_logs else None)
    events = session.client.runs.watch(run_id, timeout=timeout)
    with interruptible(run_id), contextlib.closing(events):
        for event in events:
            progress.handle(event)
    final = progress.final
    if final is None or progress.status is not RunStatus.COMPLETED:
        raise SystemExit(EXIT_RUN_FAILED)
    # A run that had finished before the watch began ends in its snapshot, which
    # carries the output on the run rather than on the event.
    output = final.output if final.output is not None else final.run and final.run.output
    if output is not None:
        click.echo(pretty_json(output))


@click.command("run")
@click.argument("workflow")
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Run input; VALUE is JSON or a string; dotted keys nest (a.b=1). Repeatable.",
)
@click.option(
    "--input-file",
    help="JSON or YAML file with the run input (--input values override it); - for stdin.",
)
@click.option("--request-id", help="Idempotency key: repeating it returns the same run.")
@click.option("--detach", is_flag=True, help="Print the run id and return at once.")
@click.option("--logs", "show_logs", is_flag=True, help="Also show the run's log lines.")
@_timeout
@client_command
def run(
    session: Session,
    workflow: str,
    inputs: tuple[str, ...],
    input_file: str | None,
    request_id: str | None,
    detach: bool,
    show_logs: bool,
    timeout: float | None,
) -> None:
    """Start a run of WORKFLOW (id or name) and show its progress until it ends.

    Exits with 0 when the run completes, 1 when it fails or is cancelled, 124 when
    --timeout expires first.
    """
    base = load_object(input_file) if input_file else None
    input_data = parse_inputs(inputs, base)
    target = resolve_workflow(session, workflow)
    started = session.client.runs.execute(target, input_data=input_data, request_id=request_id)
    if detach:
        if session.json_output:
            session.print_json(message_json(started))
        else:
            click.echo(started.id)
        return
    follow(session, started.id, timeout=timeout, show_logs=show_logs)


@click.group()
def runs() -> None:
    """Inspect, follow, pause, resume, retry, cancel and delete runs."""


@runs.command("list")
@click.option("--workflow", help="Only runs of this workflow (id or name).")
@click.option("--status", type=_STATUSES, help="Only runs with this status.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show at most."
)
@client_command
def list_runs(session: Session, workflow: str | None, status: str | None, limit: int) -> None:
    """List runs, newest first."""
    from baton_sdk.commands._render import runs_table
    from baton_sdk.models import RunStatus

    found = session.client.runs.list(
        workflow=resolve_workflow(session, workflow) if workflow else None,
        status=RunStatus(status) if status else None,
        limit=limit,
        page_size=100,
    ).to_list()
    if session.json_output:
        session.print_json([message_json(item) for item in found])
    else:
        session.show(runs_table(found))


@runs.command("get")
@click.argument("run_id")
@client_command
def get_run(session: Session, run_id: str) -> None:
    """Show a run: status, input, output or error."""
    from baton_sdk.commands._render import run_details

    found = session.client.runs.get(run_id)
    if session.json_output:
        session.print_json(message_json(found))
    else:
        session.show(run_details(found))


@runs.command("steps")
@click.argument("run_id")
@client_command
def run_steps(session: Session, run_id: str) -> None:
    """Show the steps of a run."""
    from baton_sdk.commands._render import steps_table

    found = session.client.runs.steps(run_id)
    if session.json_output:
        session.print_json([message_json(step) for step in found])
    else:
        session.show(steps_table(found))


@runs.command("logs")
@click.argument("run_id")
@click.option("--step", "step_id", help="Only lines about this step.")
@click.option("-f", "--follow", "follow_logs", is_flag=True, help="Keep printing until it ends.")
@client_command
def run_logs(session: Session, run_id: str, step_id: str | None, follow_logs: bool) -> None:
    """Print the log of a run (JSON lines with --json)."""
    from baton_sdk.commands._render import log_line

    client = session.client

    def read() -> Generator[RunLog, None, None]:
        if follow_logs:
            yield from client.runs.follow_logs(run_id, step_id=step_id)
        else:
            yield from client.runs.logs(run_id, step_id=step_id)

    lines = read()
    with interruptible(run_id), contextlib.closing(lines):
        for line in lines:
            if session.json_output:
                click.echo(json.dumps(message_json(line), ensure_ascii=False))
            else:
                session.console.print(log_line(line), soft_wrap=True)


@runs.command("watch")
@click.argument("run_id")
@click.option("--logs", "show_logs", is_flag=True, help="Also show the run's log lines.")
@_timeout
@client_command
def watch_run(session: Session, run_id: str, show_logs: bool, timeout: float | None) -> None:
    """Follow a run live until it ends (JSON lines of events with --json).

    Exits with 0 when the run completes, 1 when it fails or is cancelled.
    """
    if not session.json_output:
        follow(session, run_id, timeout=timeout, show_logs=show_logs)
        return
    from baton_sdk.models import RunStatus

    last = None
    events = session.client.runs.watch(run_id, timeout=timeout)
    with interruptible(run_id), contextlib.closing(events):
        for event in events:
            click.echo(json.dumps(message_json(event), ensure_ascii=False))
            last = event
    if last is None or last.status is not RunStatus.COMPLETED:
        raise SystemExit(EXIT_RUN_FAILED)


@runs.command("wait")
@click.argument("run_id")
@_timeout
@client_command
def wait_run(session: Session, run_id: str, timeout: float | None) -> None:
    """Wait until a run ends, then show it; exits with 1 unless it completed."""
    from baton_sdk.commands._render import run_details

    with interruptible(run_id):
        finished = session.client.runs.wait(run_id, timeout=timeout)
    if session.json_output:
        session.print_json(message_json(finished))
    else:
        session.show(run_details(finished))
    _exit_for(finished)


@runs.command("retry")
@click.argument("run_id")
@click.option("--follow", "follow_run", is_flag=True, help="Show its progress until it ends.")
@_timeout
@client_command
def retry_run(session: Session, run_id: str, follow_run: bool, timeout: float | None) -> None:
    """Retry a failed or cancelled run from its first incomplete step."""
    retried = session.client.runs.retry(run_id)
    if follow_run:
        follow(session, retried.id, timeout=timeout, show_logs=False)
    elif session.json_output:
        session.print_json(message_json(retried))
    else:
        session.say(f"run {retried.id} is {retried.status.value} again")


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="", help="Why (shown in the run's error message).")
@client_command
def cancel_run(session: Session, run_id: str, reason: str) -> None:
    """Cancel a pending, running or paused run."""
    cancelled = session.client.runs.cancel(run_id, reason=reason)
    if session.json_output:
        session.print_json(message_json(cancelled))
    else:
        session.say(f"run {cancelled.id} is {cancelled.status.value}")


@runs.command("pause")
@click.argument("run_id")
@click.option("--reason", default="", help="Why (shown in the run's log).")
@client_command
def pause_run(session: Session, run_id: str, reason: str) -> None:
    """Pause a run: steps in flight finish, no new step starts until resumed."""
    paused = session.client.runs.pause(run_id, reason=reason)
    if session.json_output:
        session.print_json(message_json(paused))
    else:
        session.say(f"run {paused.id} is {paused.status.value}")


@runs.command("resume")
@click.argument("run_id")
@client_command
def resume_run(session: Session, run_id: str) -> None:
    """Resume a paused run where it stopped."""
    resumed = session.client.runs.resume(run_id)
    if session.json_output:
        session.print_json(message_json(resumed))
    else:
        session.say(f"run {resumed.id} is {resumed.status.value} again")


@runs.command("delete")
@click.argument("run_id")
@client_command
def delete_run(session: Session, run_id: str) -> None:
    """Permanently delete a finished run with its steps and logs."""
    session.client.runs.delete(run_id)
    if session.json_output:
        session.print_json({"run_id": run_id, "deleted": True})
    else:
        session.say(f"run {run_id} deleted")


@runs.command("step")
@click.argument("run_id")
@click.argument("step_id")
@client_command
def run_step(session: Session, run_id: str, step_id: str) -> None:
    """Show one step of a run with its input and output."""
    step = session.client.runs.step(run_id, step_id)
    if session.json_output:
        session.print_json(message_json(step))
        return
    session.say(
        f"step {step.step_id} ({step.agent_name}): {step.status.value}, attempt {step.attempt}"
    )
    session.say(f"input: {json.dumps(step.input_data)}")
    session.say(f"output: {json.dumps(step.output_data)}")
    if step.error_message:
        session.say(f"error: {step.error_message}")


@runs.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", help="The signal's payload: JSON, else taken as a string.")
@client_command
def signal_run(session: Session, run_id: str, name: str, payload: str | None) -> None:
    """Send a named signal to a run (completes its wait step for NAME)."""
    value: Any = None
    if payload is not None:
        try:
            value = json.loads(payload)
        except json.JSONDecodeError:
            value = payload
    duplicate = session.client.runs.signal(run_id, name, value)
    if session.json_output:
        session.print_json({"run_id": run_id, "name": name, "duplicate": duplicate})
    else:
        session.say(f"signal {name} {'was already sent to' if duplicate else 'sent to'} {run_id}")
