"""Drives one run: starts steps as their predecessors complete, calls agents, retries.

The driver is the only writer of its run while it holds the lease; every transition goes
through the journal as a compare-and-set. When a write comes back void (the run was
cancelled, or another worker took it over) the driver stops at once. A step's
completion and the start of the steps it unblocks are one write, so the dispatch
overhead between steps is one group commit.

Resuming is the same code path as starting: completed steps keep their outputs, any
other step (including one that was RUNNING when a worker died) gets a new attempt.

A step with routes chooses its successor from its output when it completes; the
other targets, and whatever only they lead to, are written SKIPPED in the same change.
A step starts once every edge into it is decided and at least one was taken. The
choice is not stored: after a crash it is evaluated again on the stored output, which
gives the same answer (CEL has no side effects or clocks).

A fan-out step (``for_each``) starts by creating its items (see
:mod:`baton_server.executor.fanout`); each item is then called like a step, and the
write that records an item's end starts the next item, or, for the last one, completes
the step with the list of the items' outputs (and starts what follows it).

A pause (the API sets the run PAUSED and leaves the lease) makes the driver's next
write void. The driver then reads the run's status once, writes the same change again
without starting anything, lets the steps in flight finish, and gives the run back
(releases the lease) when none is left. A resume before that sets the run RUNNING
again, which the driver adopts the same way; after it, the run is PENDING and the next
worker to take it starts the steps the pause held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from baton_server import tracing
from baton_server.agents.client import AgentCallError, AgentClient
from baton_server.executor.backoff import retry_delay_ms
from baton_server.executor.catalog import AgentTarget, Catalog
from baton_server.executor.fanout import FanOut
from baton_server.executor.journal import ChangeRefused, Journal, RunChange, StepOp
from baton_server.executor.mapping import (
    SKIPPED_OUTPUT,
    Item,
    MappingError,
    resolve_input,
    resolve_items,
)
from baton_server.executor.state import StepState
from baton_server.runs import events
from baton_server.runs.model import (
    COMPLETED,
    FAILED,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    TERMINAL_RUN_STATUSES,
    WAITING,
    EventDraft,
)
from baton_server.usage.model import AiCallDraft, UsageTotals
from baton_server.usage.pricing import priced_calls
from baton_server.usage.reported import read_usage
from baton_server.workflows.graph import StepGraph
from baton_server.workflows.routes import RouteError, choose

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeasedRun:
    """What a worker read when it took the lease."""

    id: str
    status: str
    definition_id: uuid.UUID
    input_data: Any
    #: Steps call the agents of this project (names are unique per project).
    project_id: uuid.UUID
    #: When the run fails for taking too long (ExecutionOptions.timeout_seconds).
    deadline_at: datetime | None = None
    timeout_seconds: int | None = None
    #: Its workflow (whose concurrency limit, if any, it counts against).
    workflow_id: uuid.UUID | None = None
    workflow_name: str = ""
    created_at: datetime | None = None


#: A step to call: its id, its agent (None if it went away), and its mapped input.
_Call = tuple[str, AgentTarget | None, dict[str, Any]]


@dataclass(frozen=True)
class _Outcome:
    attempt: int
    output: Any = None
    error: str | None = None
    #: The AI calls the attempt's agent reported, priced; written with its end.
    calls: tuple[AiCallDraft, ...] = ()

    @property
    def usage(self) -> UsageTotals | None:
        return UsageTotals.of(self.calls) if self.calls else None


#: Items that end within this long of the first share its write (or this many).
_ITEM_LINGER_S = 0.005
_ITEM_BATCH = 32

_background: set[asyncio.Task[None]] = set()
#: The wake time of a run whose steps wait without a timeout: only a signal wakes it.
_NEVER = datetime(9999, 1, 1, tzinfo=UTC)


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    """Run best-effort work that must outlive the cancelled driver."""
    task = asyncio.create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


class RunInterrupted(Exception):
    """The run is no longer this driver's (cancelled, or taken over)."""


class RunDriver:
    """Executes one leased run to its end (or until interrupted)."""

    def __init__(
        self,
        run: LeasedRun,
        steps: Sequence[StepState],
        workflow_data: dict[str, Any],
        *,
        journal: Journal,
        catalog: Catalog,
        client: AgentClient,
        worker_id: str = "",
        max_parallel_steps: int = 16,
        on_step_latency: Callable[[float], None] | None = None,
    ) -> None:
        self._run = run
        # The steps of the graph; the items of fan-out steps are apart (_items), by id
        # and, until their step starts again, by step and index (_loaded).
        self._steps = {s.step_id: s for s in steps if s.parent_step_id is None}
        self._items = {s.step_id: s for s in steps if s.parent_step_id is not None}
        self._loaded: dict[str, dict[int, StepState]] = {}
        for item in self._items.values():
            self._loaded.setdefault(item.parent_step_id or "", {})[item.item_index or 0] = item
        self._fan_outs: dict[str, FanOut] = {}
        # Items whose call ended, waiting to be written together (_item_done).
        self._ended_items: list[tuple[str, _Outcome, asyncio.Future[list[_Call] | None]]] = []
        self._item_timer: asyncio.TimerHandle | None = None
        self._recording: set[str] = set()  # the items of the batch being written
        self._definitions: dict[str, dict[str, Any]] = workflow_data["steps"]
        self._graph = StepGraph.of(workflow_data)
        self._order = self._graph.topological_order()
        self._journal = journal
        self._catalog = catalog
        self._client = client
        self._worker_id = worker_id
        self._on_step_latency = on_step_latency
        self._status = run.status
        self._parallel = asyncio.Semaphore(max_parallel_steps)
        self._transition = asyncio.Lock()
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._started = time.monotonic()
        # Steps that became ready while the run was paused, started once it is not.
        self._held: set[str] = set()
        # The step each completed routed step chose (None: none), evaluated once.
        self._chosen: dict[str, str | None] = {}
        # Checks of the wait steps (a signal came, a timeout passed), and their timer.
        self._checks: set[asyncio.Task[None]] = set()
        self._wait_timer: asyncio.TimerHandle | None = None

    # -- the main loop -------------------------------------------------------------

    async def drive(self) -> None:
        """Run until the run completes, fails, or stops being ours."""
        deadline = self._run.deadline_at
        timer = (
            asyncio.get_running_loop().call_later(
                max(0.0, deadline.timestamp() - time.time()),
                lambda: _in_background(self._time_out()),
            )
            if deadline is not None
            else None
        )
        try:
            if deadline is not None and deadline.timestamp() <= time.time():
                await self._time_out()  # overdue already: start nothing
                await self._ended
            else:
                await self._drive()
        except RunInterrupted:
            log.info("run %s interrupted (cancelled or taken over)", self._run.id)
        except ChangeRefused as error:
            # Resuming would write the same change again: the run cannot go on.
            await self._abandon(f"Run failed: its progress could not be recorded: {error}")
        finally:
            if timer is not None:
                timer.cancel()
            for handle in (self._wait_timer, self._item_timer):
                if handle is not None:
                    handle.cancel()
            for task in (*self._tasks, *self._checks):
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.gather(*self._tasks, *self._checks, return_exceptions=True)

    async def _time_out(self) -> None:
        """The run's deadline passed: abandon the steps in flight, and fail the run."""
        if self._ended.done():
            return
        try:
            await self._abandon(f"Run timed out after {self._run.timeout_seconds} s")
            self._end()
        except Exception as error:  # RunInterrupted: it ended otherwise meanwhile
            self._end(error)

    async def _abandon(self, message: str) -> None:
        """Abandon the steps in flight and fail the run with ``message``."""
        async with self._transition:
            in_flight = dict(self._tasks)
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            self._tasks.clear()
            abandoned = [
                s
                for s in (*self._steps.values(), *self._items.values())
                if s.status in (RUNNING, WAITING)
            ]

            def failure() -> RunChange:
                change = self._change(
                    [
                        *(events.step_failed(s.step_id, error=message) for s in abandoned),
                        events.run_status(
                            FAILED,
                            progress=self._progress(),
                            error_message=message,
                            message=message,
                            level="error",
                        ),
                    ],
                    steps=[
                        StepOp(
                            s.step_id,
                            (s.status,),
                            s.attempt,
                            FAILED,
                            s.attempt,
                            error_message=message,
                        )
                        for s in abandoned
                    ],
                )
                change.status, change.error_message = FAILED, message
                return change

            await self._commit(failure)

    async def _drive(self) -> None:
        resumed = self._status != PENDING

        def opening() -> RunChange:
            if self._status == PAUSED:
                return self._change([])  # paused before it started: given back at once
            message = (
                f"Run resumed from its first incomplete step on worker {self._worker_id}"
                if resumed
                else f"Run started on worker {self._worker_id}"
            )
            change = self._change(
                [events.run_status(RUNNING, progress=self._progress(), message=message)]
            )
            change.status = RUNNING
            if self._all_done():
                self._finish(change)
            return change

        started = await self._advance(opening, self._steps)
        if started is not None:
            for call in started:
                self._spawn(call)
            if any(s.status == WAITING for s in self._steps.values()):
                self.signalled()  # resumed while waiting: a signal or timeout may be due
            await self._ended  # the step tasks carry the run on, and end it

    def _spawn(self, call: _Call) -> None:
        self._tasks[asyncio.create_task(self._step(call))] = call[0]

    async def _step(self, call: _Call) -> None:
        """Steps, one after the other: each agent call, then at once what its outcome
        means for the run. The first step it unblocks runs on in this task (no hop
        through another task between two steps); any others get tasks of their own."""
        task = asyncio.current_task()
        try:
            while True:
                step_id = call[0]
                outcome = await self._call(*call)
                answered = time.monotonic()
                if step_id in self._items:
                    started = await self._item_done(step_id, outcome)
                else:
                    # Transitions of one run one at a time, so two branches that finish
                    # together cannot both start the step that joins them.
                    async with self._transition:
                        started = await self._settle(step_id, outcome)
                if started is None:
                    self._end()
                    return
                if self._on_step_latency is not None:
                    self._on_step_latency(time.monotonic() - answered)
                if not started:
                    if any(s.status == WAITING for s in self._steps.values()):
                        self.signalled()  # only waits may be left: give the run back
                    return  # what follows waits for other steps
                call, *others = started
                for other in others:
                    self._spawn(other)
                if task is not None:
                    self._tasks[task] = call[0]
        except Exception as error:  # RunInterrupted, or a bug: the driver stops
            self._end(error)
        finally:
            self._tasks.pop(task, None)  # type: ignore[arg-type]

    def _end(self, error: Exception | None = None) -> None:
        if self._ended.done():
            return
        if error is None:
            self._ended.set_result(None)
        else:
            self._ended.set_exception(error)

    async def _settle(
        self,
        step_id: str,
        outcome: _Outcome,
        ops: Sequence[StepOp] = (),
        drafts: Sequence[EventDraft] = (),
    ) -> list[_Call] | None:
        """A step's call (or wait) ended: route it, then record its failure or its
        success, with ``ops`` and ``drafts`` before; return the calls it starts, or
        None if the driver is done."""
        outcome = self._route(step_id, outcome)
        if outcome.error is not None:
            await self._fail(step_id, outcome, ops, drafts)
            return None
        return await self._complete(step_id, outcome, ops, drafts)

    async def _item_done(self, item_id: str, outcome: _Outcome) -> list[_Call] | None:
        """An item's call ended: wait until its end is written (with those of the items
        that end meanwhile, see _write_items); return the calls to make next."""
        written: asyncio.Future[list[_Call] | None] = asyncio.get_running_loop().create_future()
        self._ended_items.append((item_id, outcome, written))
        if len(self._ended_items) >= _ITEM_BATCH:
            self._flush_items()
        elif len(self._ended_items) == 1:
            self._item_timer = asyncio.get_running_loop().call_later(
                _ITEM_LINGER_S, self._flush_items
            )
        return await written

    def _flush_items(self) -> None:
        if self._item_timer is not None:
            self._item_timer.cancel()
            self._item_timer = None
        batch, self._ended_items = self._ended_items, []
        if batch and not self._ended.done():
            flush = asyncio.create_task(self._write_items(batch))
            self._checks.add(flush)
            flush.add_done_callback(self._checks.discard)

    async def _write_items(
        self, batch: list[tuple[str, _Outcome, asyncio.Future[list[_Call] | None]]]
    ) -> None:
        """Record the ends of the items in ``batch`` and start the items they make room
        for, in one write; the write with a fan-out's last item completes its step.

        Items that end within a few milliseconds of each other share the write, so a
        fan-out does not cost one transaction per item; each item's task waits for it
        (its item is in flight until then), so none is called again after a crash.
        """
        started: list[_Call] | None = None
        try:
            async with self._transition:
                self._recording = {item_id for item_id, _, _ in batch}
                started = await self._record_items([(i, o) for i, o, _ in batch])
        except Exception as error:  # RunInterrupted, or a bug: the driver stops
            self._end(error)
        finally:
            self._recording = set()
            # One call for each waiting task to go on with (extras to the first).
            calls = list(started or [])
            tasks = {step_id: task for task, step_id in self._tasks.items()}
            for index, (item_id, _, written) in enumerate(batch):
                if written.done():
                    continue
                given: list[_Call] | None = None
                if started is not None:
                    take = 1 + max(0, len(calls) - len(batch)) if index == 0 else 1
                    given, calls = calls[:take], calls[take:]
                written.set_result(given)
                if not given and item_id in tasks:
                    # Its task ends without another call: no longer in flight from now,
                    # not from when it next runs, so that a paused run whose last item
                    # this was is given back by the next write rather than kept idle.
                    self._tasks.pop(tasks[item_id], None)

    async def _record_items(self, ended: list[tuple[str, _Outcome]]) -> list[_Call] | None:
        ops: list[StepOp] = []
        drafts: list[EventDraft] = []
        done: list[FanOut] = []
        for item_id, outcome in ended:
            item = self._items[item_id]
            fan_out = self._fan_outs[item.parent_step_id or ""]
            if outcome.error is not None and not fan_out.collect:
                fan_out.calling.discard(item_id)
                await self._fail(item_id, outcome, ops, drafts)
                return None
            fan_out.finished(item, outcome.output, outcome.error)
            ops.append(
                StepOp(
                    item_id,
                    (RUNNING,),
                    outcome.attempt,
                    item.status,
                    outcome.attempt,
                    output_data=outcome.output,
                    error_message=outcome.error,
                    ai_calls=outcome.calls,
                )
            )
            drafts.append(
                events.step_completed(
                    item_id, attempt=outcome.attempt, output=outcome.output, usage=outcome.usage
                )
                if outcome.error is None
                else events.step_failed(
                    item_id, attempt=outcome.attempt, error=outcome.error, usage=outcome.usage
                )
            )
            if fan_out.done():
                done.append(fan_out)
        if not done:
            return await self._advance(partial(self._change, drafts, steps=ops), ())
        return await self._complete_fan_outs(done, ops, drafts)

    async def _complete_fan_outs(
        self,
        done: Sequence[FanOut],
        ops: Sequence[StepOp] = (),
        drafts: Sequence[EventDraft] = (),
    ) -> list[_Call] | None:
        """Complete the fan-out steps whose items are all done, each with the list of
        its items' outputs (the first write with ``ops`` and ``drafts``)."""
        calls: list[_Call] = []
        for fan_out in done:
            parent = self._steps[fan_out.parent]
            outcome = _Outcome(attempt=parent.attempt, output=fan_out.output())
            more = await self._settle(fan_out.parent, outcome, ops, drafts)
            if more is None:
                return None
            calls += more
            ops, drafts = (), ()
        return calls

    async def _complete(
        self,
        step_id: str,
        outcome: _Outcome,
        ops: Sequence[StepOp] = (),
        drafts: Sequence[EventDraft] = (),
    ) -> list[_Call] | None:
        """Record a step's success and start what it unblocks (returned, for the caller
        to call); None if the driver is done."""
        step = self._steps[step_id]
        step.status, step.output = COMPLETED, outcome.output
        self._fan_outs.pop(step_id, None)

        def completion() -> RunChange:
            change = self._change(
                [
                    *drafts,
                    events.step_completed(
                        step_id, attempt=outcome.attempt, output=outcome.output, usage=outcome.usage
                    ),
                ],
                steps=[
                    *ops,
                    StepOp(
                        step_id,
                        (RUNNING, WAITING),
                        outcome.attempt,
                        COMPLETED,
                        outcome.attempt,
                        output_data=outcome.output,
                        ai_calls=outcome.calls,
                    ),
                ],
            )
            if self._all_done():
                self._finish(change)
            return change

        return await self._advance(completion, self._graph.successors[step_id])

    def _route(self, step_id: str, outcome: _Outcome) -> _Outcome:
        """Evaluate a routed step's routes on its output; a route that fails fails it."""
        routes = self._graph.routes.get(step_id)
        if routes is None or outcome.error is not None:
            return outcome
        try:
            self._chosen[step_id] = self._choose(step_id, outcome.output)
        except RouteError as error:
            return replace(outcome, output=None, error=str(error))
        return outcome

    def _choose(self, step_id: str, output: Any) -> str | None:
        return choose(
            self._graph.routes[step_id],
            self._definitions[step_id].get("next_step"),
            output=output,
            workflow_input=self._run.input_data,
            # Only the steps it follows: their outputs are the same after a restart.
            outputs={
                a: self._steps[a].output
                for a in self._graph.ancestors(step_id)
                if self._steps[a].status == COMPLETED
            },
        )

    def _finish(self, change: RunChange) -> None:
        # The completed steps that no completed step follows: the final steps, or the
        # step whose routes chose no successor.
        sinks = [
            s
            for s in self._order
            if self._steps[s].status == COMPLETED
            and not any(self._steps[n].status == COMPLETED for n in self._graph.successors[s])
        ]
        output = (
            self._steps[sinks[0]].output
            if len(sinks) == 1
            else {s: self._steps[s].output for s in sinks}
        )
        seconds = time.monotonic() - self._started
        change.status, change.progress, change.output = COMPLETED, 100, output
        change.events.append(
            events.run_status(
                COMPLETED,
                progress=100,
                output=output,
                message=f"Run completed in {seconds * 1000:.0f} ms",
            )
        )

    async def _fail(
        self,
        step_id: str,
        outcome: _Outcome,
        prior_ops: Sequence[StepOp] = (),
        prior_drafts: Sequence[EventDraft] = (),
    ) -> None:
        """The run fails with this step's (or item's) error; steps still in flight are
        abandoned."""
        current = asyncio.current_task()
        in_flight = {task: step for task, step in self._tasks.items() if task is not current}
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        error = outcome.error or "unknown error"
        status = self._state(step_id).status
        expected = (status,) if status in (RUNNING, WAITING) else (PENDING, RUNNING)
        ops = [
            *prior_ops,
            StepOp(
                step_id,
                expected,
                outcome.attempt,
                FAILED,
                outcome.attempt,
                error_message=error,
                ai_calls=outcome.calls,
            ),
        ]
        drafts = [
            *prior_drafts,
            events.step_failed(step_id, attempt=outcome.attempt, error=error, usage=outcome.usage),
        ]
        parent_id = self._state(step_id).parent_step_id
        if parent_id is not None:  # an item: its fan-out step fails with it
            item_error = f"item {self._state(step_id).item_index}: {error}"
            parent = self._steps[parent_id]
            ops.append(
                StepOp(
                    parent_id,
                    (RUNNING,),
                    parent.attempt,
                    FAILED,
                    parent.attempt,
                    error_message=item_error,
                )
            )
            drafts.append(events.step_failed(parent_id, attempt=parent.attempt, error=item_error))
            step_id, error = parent_id, item_error
        message = f"Step '{step_id}' failed: {error}"
        # In-flight siblings go back to PENDING: a retry of the run runs them again.
        recorded = {op.step_id for op in ops}
        ops += [
            StepOp(
                other, (RUNNING,), self._state(other).attempt, PENDING, self._state(other).attempt
            )
            for other in in_flight.values()
            if other not in recorded
        ]
        # So do fan-out steps still running (their items in flight are among those).
        ops += [
            StepOp(f, (RUNNING,), self._steps[f].attempt, PENDING, self._steps[f].attempt)
            for f in self._fan_outs
            if f != step_id
        ]
        self._tasks.clear()

        def failure() -> RunChange:
            change = self._change(
                [
                    *drafts,
                    events.run_status(FAILED, progress=self._progress(), error_message=message),
                ],
                steps=list(ops),
            )
            change.status, change.error_message = FAILED, message
            return change

        await self._commit(failure)

    # -- starting steps ------------------------------------------------------------

    def _taken(self, before: str, step_id: str, skipping: set[str]) -> bool | None:
        """Whether the edge ``before -> step_id`` is taken; None while undecided."""
        status = SKIPPED if before in skipping else self._steps[before].status
        if status == SKIPPED:
            return False
        if status != COMPLETED:
            return None
        if step_id not in self._graph.conditional.get(before, ()):
            return True
        if before not in self._chosen:  # completed before a restart: choose again
            self._chosen[before] = self._choose(before, self._steps[before].output)
        return self._chosen[before] == step_id

    def _decide(self, candidates: Collection[str]) -> tuple[list[str], list[str]]:
        """Among ``candidates`` and what follows them: the steps that can start now, and
        the steps that will never run (every edge into them decided, none taken), both in
        graph order."""
        ready: set[str] = set()
        skipping: set[str] = set()
        pending = list(candidates)
        while pending:
            step_id = pending.pop()
            if step_id in ready or step_id in skipping:
                continue
            if self._steps[step_id].status in (COMPLETED, SKIPPED, WAITING):
                continue
            edges = [self._taken(p, step_id, skipping) for p in self._graph.predecessors[step_id]]
            if None in edges:
                continue
            if edges and not any(edges):
                skipping.add(step_id)
                pending.extend(self._graph.successors[step_id])
            else:
                ready.add(step_id)
        return [s for s in self._order if s in ready], [s for s in self._order if s in skipping]

    async def _advance(
        self, build: Callable[[], RunChange], candidates: Collection[str]
    ) -> list[_Call] | None:
        """Write ``build()``'s change plus the start of the ready steps among
        ``candidates`` (and those a pause held back), and of the items that fan-out
        steps have room for; return their calls to make.

        While the run is paused the change is written without starts, and with the
        release of the run once no other step is in flight. Returns None when the driver
        is done: the run ended (or failed because a step could not even start: its agent
        is unavailable or its input does not resolve), or was given back.
        """
        ready, skipped = self._decide(set(candidates) | self._held)
        for step_id in skipped:
            self._steps[step_id].status = SKIPPED
        waits = [s for s in ready if self._wait_of(s)]
        step_ids = [s for s in ready if not self._wait_of(s)]
        targets = await self._catalog.agents(
            self._run.project_id,
            {self._steps[s].agent_name for s in (*step_ids, *self._fan_outs)},
        )
        outputs = {
            s.step_id: s.output if s.status == COMPLETED else SKIPPED_OUTPUT
            for s in self._steps.values()
            if s.status in (COMPLETED, SKIPPED)
        }

        async def cannot_start(step_id: str, error: str) -> None:
            if (await self._commit(build)).status not in TERMINAL_RUN_STATUSES:
                attempt = self._steps[step_id].attempt
                await self._fail(step_id, _Outcome(attempt=attempt, error=error))

        planned: list[tuple[str, dict[str, Any]]] = []
        fanning: dict[str, FanOut] = {}  # fan-out steps that start now
        for step_id in step_ids:
            step = self._steps[step_id]
            definition = self._definitions[step_id]
            try:
                if targets[step.agent_name] is None:
                    raise MappingError(f"Agent '{step.agent_name}' not found or inactive")
                if definition.get("for_each"):
                    values = resolve_items(definition["for_each"], self._run.input_data, outputs)
                    loaded = self._loaded.get(step_id, {})
                    fan_out = FanOut.of(step_id, definition, step.agent_name, values, loaded)
                    fanning[step_id] = fan_out
                    self._items.update((item.step_id, item) for item in fan_out.items)
                    continue
                mapping = definition.get("input_mapping") or {}
                planned.append((step_id, resolve_input(mapping, self._run.input_data, outputs)))
            except MappingError as error:
                await cannot_start(step_id, str(error))
                return None
        items: list[tuple[FanOut, StepState, dict[str, Any]]] = []
        for fan_out in (*self._fan_outs.values(), *fanning.values()):
            mapping = self._definitions[fan_out.parent].get("input_mapping") or {}
            for item in fan_out.next_items():
                index = item.item_index or 0
                try:
                    scope = Item(index, fan_out.values[index])
                    payload = resolve_input(mapping, self._run.input_data, outputs, scope)
                except MappingError as error:
                    await cannot_start(fan_out.parent, f"item {index}: {error}")
                    return None
                items.append((fan_out, item, payload))

        def with_starts() -> RunChange:
            change = build()
            for step_id in skipped:
                attempt = self._steps[step_id].attempt
                change.steps.append(StepOp(step_id, (PENDING,), attempt, SKIPPED, attempt))
                change.events.append(events.step_skipped(step_id))
            if self._all_done() and change.status not in TERMINAL_RUN_STATUSES:
                self._finish(change)  # the last steps were skipped
            if change.status in TERMINAL_RUN_STATUSES:
                return change
            if self._status == PAUSED:
                if not self._in_flight():
                    change.release = True
                    change.events.append(
                        events.log_line(
                            f"Run paused with no step in flight; worker {self._worker_id}"
                            " gave it back"
                        )
                    )
                return change
            for step_id, payload in planned:
                self._start(change, step_id, payload)
            for step_id, fan_out in fanning.items():
                self._start(change, step_id, {"item_count": len(fan_out.items)})
                starting = {item.step_id: payload for f, item, payload in items if f is fan_out}
                change.items.extend(fan_out.new_rows(starting))
            for fan_out, item, payload in items:
                if fan_out.stored[item.item_index or 0]:
                    self._start(change, item.step_id, payload)
                else:  # a new row, written as started
                    change.events += self._attempt_events(item.step_id, 1)
            for step_id in waits:
                attempt = self._steps[step_id].attempt
                change.steps.append(
                    StepOp(step_id, (PENDING,), attempt, WAITING, attempt + 1, starting=True)
                )
                change.events.append(events.step_waiting(step_id, self._wait_of(step_id)))
            return change

        change = await self._commit(with_starts)
        if change.status in TERMINAL_RUN_STATUSES or change.release:
            return None
        if change.status == PAUSED:
            self._held.update(ready)
            return []
        self._held.clear()
        for step_id in (*(s for s, _ in planned), *fanning):
            step = self._steps[step_id]
            step.status, step.attempt = RUNNING, step.attempt + 1
        for step_id in waits:
            step = self._steps[step_id]
            step.status, step.attempt, step.started_at = WAITING, step.attempt + 1, time.time()
        for _, item, _ in items:
            item.status, item.attempt = RUNNING, item.attempt + 1
        for fan_out in {**self._fan_outs, **fanning}.values():
            fan_out.started([item for f, item, _ in items if f is fan_out])
        for step_id, fan_out in fanning.items():
            self._fan_outs[step_id] = fan_out
            self._loaded.pop(step_id, None)
        if waits:
            self.signalled()  # a signal sent before the step waited counts
        # The write read the project's agents revision: an agent changed since the
        # lookup above is loaded again here, so the call goes to what it is now.
        current = await self._catalog.agents(self._run.project_id, set(targets))
        calls = [(s, self._target(s, current), payload) for s, payload in planned]
        calls += [(i.step_id, self._target(i.step_id, current), p) for _, i, p in items]
        empty = [f for f in fanning.values() if f.done()]
        if not empty:
            return calls
        # A fan-out over no items (or whose items all completed before a restart)
        # completes at once; what is started meanwhile is called already.
        for call in calls:
            self._spawn(call)
        return await self._complete_fan_outs(empty)

    def _start(self, change: RunChange, step_id: str, payload: dict[str, Any]) -> None:
        """Add the start of a step's next attempt (with its input) to ``change``."""
        attempt = self._state(step_id).attempt
        change.steps.append(
            StepOp(
                step_id,
                (PENDING, RUNNING),
                attempt,
                RUNNING,
                attempt + 1,
                input_data=payload,
                starting=True,
            )
        )
        change.events += self._attempt_events(step_id, attempt + 1)

    def _state(self, step_id: str) -> StepState:
        """A step of the graph, or an item of a fan-out step."""
        return self._steps.get(step_id) or self._items[step_id]

    def _target(self, step_id: str, agents: dict[str, AgentTarget | None]) -> AgentTarget | None:
        """The step's agent, with the step's own timeout if it has one (an item: its
        fan-out step's)."""
        state = self._state(step_id)
        target = agents[state.agent_name]
        timeout_ms = self._definitions[state.parent_step_id or step_id].get("timeout_ms")
        if target is None or not timeout_ms:
            return target
        return replace(target, endpoint=replace(target.endpoint, timeout_ms=timeout_ms))

    # -- wait steps ------------------------------------------------------------------

    def _wait_of(self, step_id: str) -> dict[str, Any] | None:
        wait: dict[str, Any] | None = self._definitions[step_id].get("wait")
        return wait

    def _wait_deadline(self, step: StepState) -> float | None:
        timeout = (self._wait_of(step.step_id) or {}).get("timeout_seconds")
        return None if timeout is None else (step.started_at or time.time()) + timeout

    def signalled(self) -> None:
        """A signal may have come, or a wait timed out: check the waiting steps."""
        if not self._ended.done():
            check = asyncio.create_task(self._check_waits())
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    async def _check_waits(self) -> None:
        """Complete the waiting steps whose signal came (or fail or continue those whose
        timeout passed); give the run back when only waits are left."""
        try:
            async with self._transition:
                if self._ended.done():
                    return
                waiting = [s for s in self._steps.values() if s.status == WAITING]
                if not waiting:
                    return
                names = {self._wait_of(s.step_id)["signal"] for s in waiting}  # type: ignore[index]
                signals = await self._journal.signals(self._run.id, names)
                for step in waiting:
                    outcome = self._wait_outcome(step, signals)
                    if outcome is None:
                        continue
                    started = await self._settle(step.step_id, outcome)
                    if started is None:
                        self._end()
                        return
                    for call in started:
                        self._spawn(call)
                await self._wait_or_give_back()
        except Exception as error:  # RunInterrupted, or a bug: the driver stops
            self._end(error)

    def _wait_outcome(self, step: StepState, signals: dict[str, Any]) -> _Outcome | None:
        wait = self._wait_of(step.step_id) or {}
        if wait["signal"] in signals:
            return _Outcome(attempt=step.attempt, output=signals[wait["signal"]])
        deadline = self._wait_deadline(step)
        if deadline is None or time.time() < deadline:
            return None
        if wait.get("on_timeout") == "continue":
            return _Outcome(attempt=step.attempt, output=wait.get("timeout_output"))
        return _Outcome(
            attempt=step.attempt,
            error=f"Waited {wait['timeout_seconds']} s for signal '{wait['signal']}'",
        )

    async def _wait_or_give_back(self) -> None:
        """With steps still waiting: while other steps are in flight, keep the run and a
        timer for the next timeout; else give it back, due again at that timeout."""
        waiting = [s for s in self._steps.values() if s.status == WAITING]
        if not waiting or self._status == PAUSED:
            return
        deadlines = [d for d in map(self._wait_deadline, waiting) if d is not None]
        if self._tasks:
            if self._wait_timer is not None:
                self._wait_timer.cancel()
            if deadlines:
                self._wait_timer = asyncio.get_running_loop().call_later(
                    max(0.0, min(deadlines) - time.time()), self.signalled
                )
            return
        names = ", ".join(f"'{(self._wait_of(s.step_id) or {})['signal']}'" for s in waiting)

        def give_back() -> RunChange:
            change = self._change(
                [
                    events.log_line(
                        f"Run waiting for signal {names}; worker {self._worker_id} gave it back"
                    )
                ]
            )
            change.release = True
            change.wake_at = datetime.fromtimestamp(min(deadlines), UTC) if deadlines else _NEVER
            return change

        await self._commit(give_back)
        self._end()

    def _in_flight(self) -> bool:
        """Whether a step other than the caller's is being called (or waits to retry);
        items whose end is being written are not."""
        current = asyncio.current_task()
        return any(
            task is not current and step_id not in self._recording
            for task, step_id in self._tasks.items()
        )

    def _attempt_events(self, step_id: str, attempt: int) -> list[EventDraft]:
        agent_name = self._state(step_id).agent_name
        return [events.step_started(step_id, attempt=attempt, agent_name=agent_name)]

    async def _call(
        self, step_id: str, target: AgentTarget | None, payload: dict[str, Any]
    ) -> _Outcome:
        """Call the agent, retrying per its policy; every new attempt is written first."""
        step = self._state(step_id)
        # A fan-out step bounds its items' calls itself (max_parallel).
        bound = self._parallel if step.parent_step_id is None else contextlib.nullcontext()
        retries = 0
        while True:
            attempt = step.attempt
            if target is None:
                return _Outcome(
                    attempt=attempt, error=f"Agent '{step.agent_name}' not found or inactive"
                )
            task_ids: list[str] = []
            reported: list[Any] = []
            try:
                async with bound:
                    with (
                        tracing.step_span(
                            self._run.id, step_id, attempt=attempt, agent=step.agent_name
                        ),
                        tracing.agent_span(step.agent_name, target.endpoint),
                    ):
                        output = await self._client.call(
                            target.endpoint,
                            payload,
                            # One key for every attempt, so the agent recognises a resend.
                            idempotency_key=f"{self._run.id}/{step_id}",
                            attempt=attempt,
                            on_task=task_ids.append,
                            on_usage=reported.append,
                        )
                calls = await self._priced(step_id, attempt, reported)
                return _Outcome(attempt=attempt, output=output, calls=calls)
            except asyncio.CancelledError:
                # The run was cancelled or failed elsewhere: abandon the call, and ask
                # the agent to stop working on it.
                if task_ids:
                    _in_background(self._client.cancel(target.endpoint, task_ids[-1]))
                raise
            except AgentCallError as error:
                calls = await self._priced(step_id, attempt, reported)
                if not error.retryable or retries >= target.retry.max_retries:
                    return _Outcome(attempt=attempt, error=str(error), calls=calls)
                delay = retry_delay_ms(target.retry, retries, retry_after_s=error.retry_after_s)
                retries += 1
                retrying = events.step_retrying(
                    step_id,
                    attempt=attempt,
                    delay_ms=delay,
                    error=str(error),
                    usage=UsageTotals.of(calls) if calls else None,
                )
                # The failed attempt's calls are written with its retrying event, under a
                # check that changes nothing else.
                ops = [StepOp(step_id, (RUNNING,), attempt, RUNNING, attempt, ai_calls=calls)]
                await self._commit(partial(self._change, [retrying], steps=ops if calls else None))
                await asyncio.sleep(delay / 1000)
                step.attempt = attempt + 1
                # A step in flight retries even while the run is paused.
                await self._commit(
                    partial(
                        self._change,
                        self._attempt_events(step_id, step.attempt),
                        steps=[
                            StepOp(
                                step_id, (RUNNING,), attempt, RUNNING, step.attempt, starting=True
                            )
                        ],
                    )
                )
                # A retry is a new start too: it calls the agent as it is now.
                agents = await self._catalog.agents(self._run.project_id, {step.agent_name})
                target = self._target(step_id, agents)

    async def _priced(
        self, step_id: str, attempt: int, reported: list[Any]
    ) -> tuple[AiCallDraft, ...]:
        """The AI calls in the usage the attempt's agent ``reported``, priced. Entries
        that make no sense are left out, each with a warning in the run's log."""
        if not reported:
            return ()
        usage, problems = read_usage(reported)
        if problems:
            lines = [
                events.log_line(
                    f"Step '{step_id}' attempt {attempt}: {problem}",
                    level="warning",
                    step_id=step_id,
                )
                for problem in problems
            ]
            await self._commit(partial(self._change, lines))
        unpriced = any(entry.cost_usd is None for entry in usage)
        prices = await self._catalog.prices(self._run.project_id) if unpriced else {}
        return priced_calls(step_id, attempt, usage, prices)

    # -- writing -------------------------------------------------------------------

    def _change(self, drafts: list[EventDraft], *, steps: list[StepOp] | None = None) -> RunChange:
        return RunChange(
            run_id=self._run.id,
            expected_status=self._status,
            status=self._status,
            progress=self._progress(),
            steps=steps or [],
            events=drafts,
        )

    async def _commit(self, build: Callable[[], RunChange]) -> RunChange:
        """Write ``build()``'s change; return it once committed.

        A void write means the run changed under the driver. If it is still ours and
        only paused or resumed, the driver adopts the new status and builds the change
        again for it; otherwise (cancelled, taken over) the driver stops.
        """
        while True:
            change = build()
            change.progress = self._progress() if change.status != COMPLETED else 100
            if await self._journal.write(change):
                self._status = change.status
                if change.status in TERMINAL_RUN_STATUSES:
                    tracing.record_run(
                        self._run.id,
                        workflow=self._run.workflow_name,
                        status=change.status,
                        created_at=self._run.created_at,
                        error=change.error_message,
                    )
                return change
            status = await self._journal.held_status(self._run.id)
            if status not in (RUNNING, PAUSED) or status == change.expected_status:
                raise RunInterrupted
            self._status = status

    def _progress(self) -> int:
        done = sum(1 for s in self._steps.values() if s.status in (COMPLETED, SKIPPED))
        return done * 100 // len(self._steps)

    def _all_done(self) -> bool:
        return all(s.status in (COMPLETED, SKIPPED) for s in self._steps.values())
