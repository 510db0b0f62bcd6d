"""The items of one fan-out step (``Step.for_each``), as its driver sees them.

Each item is a run step of its own, ``<step_id>[<index>]``, created when the fan-out
step starts (one statement for all of them, in the same commit as the start) and
driven like any step afterwards: started, retried, completed or failed by the
driver's compare-and-set writes. At most ``max_parallel`` are called at once, in
index order; a finished item's slot goes to the next item in the write that records
it, and items that end within a few milliseconds share that write (see
``RunDriver._write_items``), so a fan-out does not cost one transaction per item.

After a restart the items are read back with the run: completed ones keep their
output, and the others (an item in flight at the crash among them) start again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from baton_server.executor.journal import NewItem
from baton_server.executor.state import StepState
from baton_server.runs.model import COMPLETED, FAILED, PENDING, RUNNING, new_step_execution_id

#: Items called at once when the step does not say (``Step.max_parallel``).
DEFAULT_MAX_PARALLEL = 10


def item_step_id(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


@dataclass
class FanOut:
    """The items of one fan-out step: which are done, which to call next."""

    parent: str
    values: Sequence[Any]
    #: One state per value, in index order.
    items: list[StepState]
    #: Whether a row exists for the item (rows are created as the step starts).
    stored: list[bool]
    max_parallel: int
    #: ``on_item_failure: collect``: a failed item is done, and the step goes on.
    collect: bool
    #: Ids of the items being called now.
    calling: set[str] = field(default_factory=set)
    _cursor: int = 0
    _remaining: int = 0

    @classmethod
    def of(
        cls,
        parent: str,
        definition: Mapping[str, Any],
        agent_name: str,
        values: Sequence[Any],
        loaded: Mapping[int, StepState],
    ) -> FanOut:
        """The fan-out of step ``parent`` over ``values``, with the item rows that
        exist already (``loaded``, by index)."""
        items = [
            loaded.get(index) or StepState(item_step_id(parent, index), agent_name, PENDING, 0)
            for index in range(len(values))
        ]
        for index, item in enumerate(items):
            item.parent_step_id, item.item_index = parent, index
        fan_out = cls(
            parent=parent,
            values=values,
            items=items,
            stored=[index in loaded for index in range(len(values))],
            max_parallel=definition.get("max_parallel") or DEFAULT_MAX_PARALLEL,
            collect=definition.get("on_item_failure") == "collect",
        )
        fan_out._remaining = sum(1 for item in items if not fan_out._done(item))
        return fan_out

    def _done(self, item: StepState) -> bool:
        return item.status == COMPLETED or (self.collect and item.status == FAILED)

    def done(self) -> bool:
        return self._remaining == 0

    def next_items(self) -> list[StepState]:
        """The items to start now: the next not done, in index order, as many as
        ``max_parallel`` leaves room for. (Nothing changes until :meth:`started`.)"""
        room = self.max_parallel - len(self.calling)
        found: list[StepState] = []
        index = self._cursor
        while room > 0 and index < len(self.items):
            item = self.items[index]
            if not self._done(item) and item.step_id not in self.calling:
                found.append(item)
                room -= 1
            index += 1
        return found

    def new_rows(self, starting: Mapping[str, dict[str, Any]]) -> Iterator[NewItem]:
        """Rows for the items not stored yet: those in ``starting`` (by id, with their
        input) start at once."""
        for index, item in enumerate(self.items):
            if self.stored[index]:
                continue
            payload = starting.get(item.step_id)
            yield NewItem(
                id=new_step_execution_id(),
                step_id=item.step_id,
                parent_step_id=self.parent,
                item_index=index,
                status=PENDING if payload is None else RUNNING,
                attempt=0 if payload is None else 1,
                input_data=payload,
                starting=payload is not None,
            )

    def started(self, items: Sequence[StepState]) -> None:
        """``items`` (from :meth:`next_items`) were written RUNNING: they are called now."""
        self.stored = [True] * len(self.items)
        for item in items:
            self.calling.add(item.step_id)
        if items:
            self._cursor = max(self._cursor, items[-1].item_index or 0)

    def finished(self, item: StepState, output: Any, error: str | None) -> None:
        """An item's call ended (``error`` only where failures are collected)."""
        self.calling.discard(item.step_id)
        item.status = COMPLETED if error is None else FAILED
        item.output, item.error = output, error
        self._remaining -= 1

    def output(self) -> list[Any]:
        """The step's output: the items' outputs in index order (with ``collect``, a
        failed item's place says why)."""
        return [
            item.output if item.status == COMPLETED else {"error": item.error}
            for item in self.items
        ]
