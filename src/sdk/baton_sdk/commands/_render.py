"""Human output: tables, detail views, log lines and live run progress (rich)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from baton_sdk.access import ApiKey, Project
from baton_sdk.models import (
    Agent,
    RunData,
    RunEvent,
    RunEventType,
    RunLog,
    RunStatus,
    RunStep,
    StepStatus,
    Workflow,
    WorkflowVersion,
)
from baton_sdk.schedules import Schedule, ScheduleFire
from baton_sdk.webhooks import Delivery, Webhook

_STYLES = {
    "active": "green",
    "inactive": "yellow",
    "deleted": "red",
    "PENDING": "dim",
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "PAUSED": "magenta",
    "SKIPPED": "dim",
    "RETRYING": "yellow",
    "info": "",
    "warning": "yellow",
    "error": "red",
}


def styled(value: str) -> Text:
    """``value`` in the colour of the status or level it names."""
    return Text(value, style=_STYLES.get(value, ""))


def when(moment: datetime | None) -> str:
    """A time in the local time zone, to the second; ``-`` when absent."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock(moment: datetime) -> str:
    """A time of day in the local time zone, to the millisecond."""
    return moment.astimezone().strftime("%H:%M:%S.%f")[:-3]


def duration(delta: timedelta | None) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` when absent."""
    if delta is None:
        return "-"
    total = max(delta.total_seconds(), 0.0)
    if total < 10:
        return f"{total:.2f}s"
    if total < 60:
        return f"{total:.1f}s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "NAME", "STATUS"))
    return table


def agents_table(agents: Iterable[Agent]) -> Table:
    table = _table("NAME", "STATUS", "PROTOCOL", "URL", "ID", "UPDATED")
    for agent in agents:
        table.add_row(
            agent.name,
            styled(agent.status.value),
            agent.protocol.value,
            agent.url,
            agent.id,
            when(agent.updated_at),
        )
    return table


def workflows_table(workflows: Iterable[Workflow]) -> Table:
    table = _table("NAME", "VERSION", "STATUS", "STEPS", "ID", "UPDATED")
    for workflow in workflows:
        table.add_row(
            workflow.name,
            str(workflow.version),
            styled(workflow.status.value),
            str(len(workflow.workflow_data.steps)),
            workflow.id,
            when(workflow.updated_at),
        )
    return table


def versions_table(versions: Iterable[WorkflowVersion]) -> Table:
    table = _table("VERSION", "STATUS", "STEPS", "ID", "CREATED")
    for version in versions:
        table.add_row(
            str(version.version),
            styled(version.status.value),
            str(len(version.workflow_data.steps)),
            version.id,
            when(version.created_at),
        )
    return table


def runs_table(runs: Iterable[RunData]) -> Table:
    table = _table("ID", "WORKFLOW", "STATUS", "PROGRESS", "CREATED", "DURATION")
    for run in runs:
        table.add_row(
            run.id,
            f"{run.workflow_name} v{run.workflow_version}",
            styled(run.status.value),
            f"{run.progress}%",
            when(run.created_at),
            duration(run.duration),
        )
    return table


def steps_table(steps: Iterable[RunStep]) -> Table:
    table = _table("STEP", "AGENT", "STATUS", "ATTEMPTS", "DURATION", "ERROR")
    for step in steps:
        table.add_row(
            step.step_id,
            step.agent_name,
            styled(step.status.value),
            str(step.attempt),
            duration(step.duration),
            step.error_message or "",
        )
    return table


def _graph_order(workflow: Workflow) -> list[str]:
    """Step ids from the start step along ``next_step`` links, then the others by id."""
    steps = workflow.workflow_data.steps
    ordered: list[str] = []
    pending = [workflow.workflow_data.start_step]
    while pending:
        key = pending.pop(0)
        if key in ordered or key not in steps:
            continue
        ordered.append(key)
        step = steps[key]
        followers = [step.next_step] if step.next_step else []
        followers += sorted(k for k, s in steps.items() if key in s.depends_on)
        pending.extend(followers)
    return ordered + sorted(set(steps) - set(ordered))


def workflow_steps_table(workflow: Workflow) -> Table:
    table = _table("STEP", "AGENT", "NEXT", "DEPENDS ON", "INPUT MAPPING")
    data = workflow.workflow_data
    for key in _graph_order(workflow):
        step = data.steps[key]
        marker = f"{key} (start)" if key == data.start_step else key
        table.add_row(
            marker,
            step.agent_name,
            step.next_step or "-",
            ", ".join(step.depends_on) or "-",
            json.dumps(dict(step.input_mapping), ensure_ascii=False),
        )
    return table


def details(rows: Iterable[tuple[str, str | Text]]) -> Table:
    """A two-column ``field value`` view of one resource."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    return table


def agent_details(agent: Agent) -> Table:
    retry = agent.retry_config
    return details(
        [
            ("id", agent.id),
            ("name", agent.name),
            ("status", styled(agent.status.value)),
            ("url", agent.url),
            ("protocol", agent.protocol.value),
            ("auth", agent.auth_type.value),
            ("timeout", f"{agent.timeout_ms} ms"),
            (
                "retries",
                f"{retry.max_retries} (delay {retry.initial_delay_ms} ms"
                f" x{retry.backoff_multiplier:g}, at most {retry.max_delay_ms} ms)",
            ),
            ("description", agent.description or "-"),
            ("created", when(agent.created_at)),
            ("updated", when(agent.updated_at)),
        ]
    )


def workflow_details(workflow: Workflow) -> Table:
    return details(
        [
            ("id", workflow.id),
            ("name", workflow.name),
            ("status", styled(workflow.status.value)),
            ("version", f"{workflow.version} ({workflow.definition_id})"),
            ("description", workflow.description or "-"),
            ("created", when(workflow.created_at)),
            ("updated", when(workflow.updated_at)),
        ]
    )


def run_details(run: RunData) -> Table:
    rows: list[tuple[str, str | Text]] = [
        ("id", run.id),
        ("workflow", f"{run.workflow_name} v{run.workflow_version} ({run.workflow_id})"),
        ("status", styled(run.status.value)),
        ("progress", f"{run.progress}%"),
        ("triggered by", run.triggered_by),
        ("created", when(run.created_at)),
        ("finished", when(run.finished_at)),
        ("duration", duration(run.duration)),
        ("input", pretty_json(run.input_data)),
    ]
    if run.request_id:
        rows.append(("request id", run.request_id))
    if run.error_message:
        rows.append(("error", Text(run.error_message, style="red")))
    if run.cancelled_by:
        rows.append(("cancelled by", run.cancelled_by))
    if run.output is not None:
        rows.append(("output", pretty_json(run.output)))
    return details(rows)


def log_line(line: RunLog) -> Text:
    text = Text(f"{clock(line.timestamp)} ")
    text.append(f"{line.level.value:<7}", style=_STYLES.get(line.level.value, ""))
    if line.step_id:
        text.append(f" [{line.step_id}]", style="bold")
    text.append(f" {line.message}")
    return text


class RunProgress:
    """Turns a run's event stream into one line per finished step, then a final line."""

    def __init__(
        self,
        console: Console,
        *,
        logs_until: Callable[[int], Iterable[RunLog]] | None = None,
    ) -> None:
        """Print to ``console``; with ``logs_until``, log lines too.

        ``logs_until(sequence)`` returns the stored log up to ``sequence``: the lines
        written before the stream's snapshot, which the stream itself does not repeat.
        """
        self._console = console
        self._logs_until = logs_until
        self._started: dict[str, datetime] = {}
        self._created_at: datetime | None = None
        self._width = 10
        self.final: RunEvent | None = None

    def handle(self, event: RunEvent) -> None:
        """Print what ``event`` changes."""
        if event.type is RunEventType.STATE_SYNC:
            self._snapshot(event)
        elif event.type is RunEventType.STEP_STARTED and event.step_id and event.timestamp:
            self._started[event.step_id] = event.timestamp
        elif event.type is RunEventType.STEP_COMPLETED and event.step_id:
            attempt = f"  attempt {event.attempt}" if (event.attempt or 1) > 1 else ""
            self._step(event.step_id, "COMPLETED", self._elapsed(event), attempt)
        elif event.type is RunEventType.STEP_FAILED and event.step_id:
            self._step(
                event.step_id, "FAILED", self._elapsed(event), f"  {event.error_message or ''}"
            )
        elif event.type is RunEventType.STEP_RETRYING and event.step_id:
            delay = f" (retry in {duration(timedelta(milliseconds=event.delay_ms or 0))})"
            note = f"  attempt {event.attempt or '?'} failed: {event.error_message or ''}{delay}"
            self._step(event.step_id, "RETRYING", "", note)
        if event.message and self._logs_until is not None:
            self._log(RunLog.from_event(event))
        if event.terminal:
            self._finish(event)

    def _snapshot(self, event: RunEvent) -> None:
        run = event.run
        if run is None:
            return
        self._created_at = run.created_at
        if event.steps:
            self._width = max(self._width, *(len(step.step_id) for step in event.steps))
        header = Text(f"run {run.id}  ")
        header.append(styled(run.status.value))
        header.append(f"  workflow '{run.workflow_name}' v{run.workflow_version}")
        header.append(f", {len(event.steps)} steps", style="dim")
        self._console.print(header, soft_wrap=True)
        if self._logs_until is not None:
            for line in self._logs_until(event.sequence):
                self._log(line)
        for step in event.steps:
            if step.status in (StepStatus.COMPLETED, StepStatus.FAILED):
                note = f"  {step.error_message}" if step.error_message else ""
                self._step(step.step_id, step.status.value, duration(step.duration), note)
            elif step.status is StepStatus.RUNNING and step.started_at is not None:
                self._started[step.step_id] = step.started_at

    def _log(self, line: RunLog) -> None:
        self._console.print(Text("    ") + log_line(line), soft_wrap=True)

    def _elapsed(self, event: RunEvent) -> str:
        begun = self._started.get(event.step_id or "")
        if begun is None or event.timestamp is None:
            return "-"
        return duration(event.timestamp - begun)

    def _step(self, step_id: str, status: str, took: str, note: str) -> None:
        line = Text(f"  {step_id:<{self._width}}  ")
        line.append(styled(f"{status:<9}"))
        line.append(f"  {took:>7}" if took else "         ")
        line.append(note, style="red" if status == "FAILED" else "")
        self._console.print(line, soft_wrap=True)

    def _finish(self, event: RunEvent) -> None:
        self.final = event
        status = event.status.value if event.status else "?"
        took = (
            f" in {duration(event.timestamp - self._created_at)}"
            if event.timestamp and self._created_at
            else ""
        )
        line = Text(f"run {event.run_id}  ")
        line.append(styled(status))
        line.append(took)
        if event.error_message:
            line.append(f": {event.error_message}", style="red")
        self._console.print(line, soft_wrap=True)

    @property
    def status(self) -> RunStatus | None:
        """The run's final status, once the terminal event arrived."""
        return self.final.status if self.final else None


def keys_table(keys: Iterable[ApiKey]) -> Table:
    table = _table("NAME", "ROLE", "PREFIX", "PROJECT", "ID", "LAST USED", "STATE")
    for key in keys:
        table.add_row(
            key.name,
            key.role.value,
            key.prefix,
            key.project_id,
            key.id,
            when(key.last_used_at) if key.last_used_at else "never",
            "revoked" if key.revoked_at else "active",
        )
    return table


def projects_table(projects: Iterable[Project]) -> Table:
    table = _table("NAME", "ID", "DESCRIPTION", "CREATED")
    for project in projects:
        table.add_row(project.name, project.id, project.description, when(project.created_at))
    return table


def webhooks_table(hooks: Iterable[Webhook]) -> Table:
    table = _table("ID", "URL", "EVENTS", "ENABLED", "CREATED")
    for hook in hooks:
        table.add_row(
            hook.id,
            hook.url,
            ", ".join(hook.events),
            "yes" if hook.enabled else "no",
            when(hook.created_at),
        )
    return table


def deliveries_table(deliveries: Iterable[Delivery]) -> Table:
    table = _table("ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "CREATED")
    for delivery in deliveries:
        last = str(delivery.last_status_code or delivery.last_error or "-")
        table.add_row(
            delivery.id,
            delivery.event,
            delivery.status.value,
            str(delivery.attempts),
            last,
            when(delivery.created_at),
        )
    return table


def _timing(schedule: Schedule) -> str:
    if schedule.cron_expression:
        return f"cron {schedule.cron_expression} ({schedule.timezone})"
    if schedule.interval_value and schedule.interval_unit:
        return f"every {schedule.interval_value} {schedule.interval_unit.value}"
    return f"at {when(schedule.execution_time)}"


def schedules_table(found: Iterable[Schedule]) -> Table:
    table = _table("ID", "NAME", "WORKFLOW", "WHEN", "STATE", "NEXT")
    for schedule in found:
        table.add_row(
            schedule.id,
            schedule.name,
            schedule.workflow_name,
            _timing(schedule),
            schedule.state.value,
            when(schedule.next_execution),
        )
    return table


def schedule_details(schedule: Schedule) -> Table:
    rows: list[tuple[str, str | Text]] = [
        ("id", schedule.id),
        ("name", schedule.name),
        ("workflow", f"{schedule.workflow_name} ({schedule.workflow_id})"),
        ("when", _timing(schedule)),
        (
            "state",
            schedule.state.value + (f": {schedule.state_reason}" if schedule.state_reason else ""),
        ),
        ("next", ", ".join(when(t) for t in schedule.upcoming_executions) or "-"),
        ("overlap", schedule.overlap_policy.value),
        ("parameters", pretty_json(schedule.parameters)),
        ("missed / skipped", f"{schedule.missed_executions} / {schedule.skipped_executions}"),
    ]
    last = schedule.last_execution
    if last is not None:
        rows.append(("last run", Text.assemble(f"{last.execution_id} ", styled(last.status.value))))
    return details(rows)


def fires_table(fires: Iterable[ScheduleFire]) -> Table:
    table = _table("SLOT", "OUTCOME", "RUN", "NOTE")
    for fire in fires:
        note = fire.reason
        if fire.missed_count:
            note = f"{fire.missed_count} slot(s) until {when(fire.missed_until)}"
        table.add_row(when(fire.scheduled_for), fire.outcome.value, fire.run_id or "-", note)
    return table
