"""Structural validation of a workflow's step graph (everything but agent lookups).

Checks run in a fixed order and the first failing check raises, with every violation
of that kind, so a client sees one coherent reason (``ErrorInfo.reason``) at a time:

0. ``WORKFLOW_INVALID_STEP``: a step has neither an agent nor a wait, or both; a wait
   step has ``for_each``; ``max_parallel`` or ``on_item_failure`` without ``for_each``.
1. ``WORKFLOW_UNKNOWN_STEP``: ``start_step``, a ``next_step``, a ``depends_on`` entry or
   a route's ``next_step`` names no step (or a step names itself); a step's ``id``
   differs from its key.
2. ``WORKFLOW_INVALID_REFERENCE``: a ``${...}`` in an input mapping is malformed, or
   reads ``${item}`` outside a fan-out step; ``for_each`` is not one step output or
   run input reference.
2b. ``WORKFLOW_INVALID_ROUTE``: a route's ``when`` is not a valid CEL expression.
3. ``WORKFLOW_CYCLE``: the graph has a cycle.
4. ``WORKFLOW_UNREACHABLE_STEP``: a step cannot be reached from ``start_step``.
5. ``WORKFLOW_REFERENCE_ORDER``: a reference reads a step that does not always run
   before the referencing step (or names no step).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from baton_server.errors import FieldViolation, InvalidArgument
from baton_server.workflows import references
from baton_server.workflows.references import ReferenceSyntaxError
from baton_server.workflows.routes import Route, RouteError, compiled, routes_of


@dataclass(frozen=True)
class StepGraph:
    """The dependency structure of a workflow: who must finish before whom."""

    start_step: str
    predecessors: Mapping[str, frozenset[str]]
    successors: Mapping[str, frozenset[str]] = field(repr=False)
    #: The routes of the steps that have some.
    routes: Mapping[str, tuple[Route, ...]] = field(default_factory=dict, repr=False)
    #: Per routed step, the successors it may choose among (the others always follow).
    conditional: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, workflow_data: Mapping[str, Any]) -> StepGraph:
        """Build from validated ``workflow_data`` (``start_step`` and ``steps``)."""
        steps: Mapping[str, Mapping[str, Any]] = workflow_data["steps"]
        before: dict[str, set[str]] = {step_id: set() for step_id in steps}
        routes: dict[str, tuple[Route, ...]] = {}
        conditional: dict[str, frozenset[str]] = {}
        for step_id, step in steps.items():
            if step.get("next_step"):
                before[step["next_step"]].add(step_id)
            before[step_id].update(step.get("depends_on") or ())
            step_routes = routes_of(step)
            if step_routes:
                routes[step_id] = step_routes
                targets = {r.next_step for r in step_routes}
                if step.get("next_step"):
                    targets.add(step["next_step"])
                for target in targets:
                    before[target].add(step_id)
                # A target that also depends on the step outright always follows it.
                conditional[step_id] = frozenset(
                    t for t in targets if step_id not in (steps[t].get("depends_on") or ())
                )
        after: dict[str, set[str]] = {step_id: set() for step_id in steps}
        for step_id, preceding in before.items():
            for other in preceding:
                after[other].add(step_id)
        return cls(
            start_step=workflow_data["start_step"],
            predecessors={k: frozenset(v) for k, v in before.items()},
            successors={k: frozenset(v) for k, v in after.items()},
            routes=routes,
            conditional=conditional,
        )

    def ancestors(self, step_id: str) -> set[str]:
        """Every step that must complete before ``step_id`` starts."""
        seen: set[str] = set()
        pending = list(self.predecessors[step_id])
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.add(current)
                pending.extend(self.predecessors[current])
        return seen

    def topological_order(self) -> list[str]:
        """Steps in an order where every step follows all its predecessors.

        Ties are broken by name so the order is stable; the graph must be acyclic.
        """
        waiting = {step: len(before) for step, before in self.predecessors.items()}
        ready = sorted(step for step, count in waiting.items() if count == 0)
        order: list[str] = []
        while ready:
            step = ready.pop(0)
            order.append(step)
            for nxt in sorted(self.successors[step]):
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    ready.append(nxt)
            ready.sort()
        return order

    def reachable(self) -> set[str]:
        """Steps reachable from the start step."""
        seen = {self.start_step}
        pending = [self.start_step]
        while pending:
            for nxt in self.successors[pending.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    pending.append(nxt)
        return seen

    def find_cycle(self) -> list[str] | None:
        """One cycle as a list of step ids (first repeated at the end), if any."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = fully explored
        for root in sorted(self.successors):
            if root in state:
                continue
            path: list[str] = []
            stack: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(self.successors[root])))]
            state[root] = 1
            path.append(root)
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    state[node] = 2
                    path.pop()
                    stack.pop()
                elif state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                elif child not in state:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(sorted(self.successors[child]))))
        return None


def _fail(reason: str, message: str, violations: list[FieldViolation]) -> InvalidArgument:
    return InvalidArgument(message, reason=reason, violations=violations)


def validate_structure(workflow_data: Mapping[str, Any]) -> StepGraph:
    """Validate the graph of ``workflow_data``; return it, or raise ``InvalidArgument``."""
    steps: Mapping[str, Mapping[str, Any]] = workflow_data["steps"]
    start = workflow_data["start_step"]
    invalid = [
        FieldViolation(
            f"steps.{step_id}.agent_name",
            "must be empty: a wait step calls no agent"
            if step.get("wait")
            else "is required (or `wait`, for a step that waits for a signal)",
        )
        for step_id, step in steps.items()
        if bool(step.get("wait")) == bool(step.get("agent_name"))
    ]
    for step_id, step in steps.items():
        if step.get("for_each") and step.get("wait"):
            invalid.append(
                FieldViolation(f"steps.{step_id}.for_each", "a wait step cannot fan out")
            )
        for name in ("max_parallel", "on_item_failure"):
            if step.get(name) is not None and not step.get("for_each"):
                invalid.append(
                    FieldViolation(f"steps.{step_id}.{name}", "applies only with `for_each`")
                )
    if invalid:
        raise _fail("WORKFLOW_INVALID_STEP", _summary("invalid step", invalid), invalid)
    unknown: list[FieldViolation] = []
    if start not in steps:
        unknown.append(FieldViolation("start_step", f"no step has id '{start}'"))
    for step_id, step in steps.items():
        prefix = f"steps.{step_id}"
        if step.get("id", step_id) != step_id:
            unknown.append(FieldViolation(f"{prefix}.id", f"must equal its key '{step_id}'"))
        next_step = step.get("next_step")
        if next_step and (next_step not in steps or next_step == step_id):
            unknown.append(FieldViolation(f"{prefix}.next_step", _bad_target(next_step, step_id)))
        for index, dep in enumerate(step.get("depends_on") or ()):
            if dep not in steps or dep == step_id:
                unknown.append(
                    FieldViolation(f"{prefix}.depends_on[{index}]", _bad_target(dep, step_id))
                )
        for index, route in enumerate(routes_of(step)):
            if route.next_step not in steps or route.next_step == step_id:
                unknown.append(
                    FieldViolation(
                        f"{prefix}.routes[{index}].next_step",
                        _bad_target(route.next_step, step_id),
                    )
                )
    if unknown:
        raise _fail("WORKFLOW_UNKNOWN_STEP", _summary("unknown step", unknown), unknown)

    parsed: dict[str, list[tuple[str, references.Reference]]] = {}
    malformed: list[FieldViolation] = []
    for step_id, step in steps.items():
        found = parsed.setdefault(step_id, [])
        for path, text in references.walk_strings(
            step.get("input_mapping") or {}, f"steps.{step_id}.input_mapping"
        ):
            try:
                for ref in references.references_in(text):
                    if ref.is_item and not step.get("for_each"):
                        malformed.append(
                            FieldViolation(
                                path, f"{ref.text}: only a step with `for_each` has an item"
                            )
                        )
                    found.append((path, ref))
            except ReferenceSyntaxError as error:
                malformed.append(FieldViolation(path, str(error)))
        if step.get("for_each"):
            path = f"steps.{step_id}.for_each"
            try:
                whole = references.whole_reference(step["for_each"])
            except ReferenceSyntaxError as error:
                malformed.append(FieldViolation(path, str(error)))
                continue
            if whole is None or whole.is_item:
                malformed.append(
                    FieldViolation(
                        path,
                        "must be one reference to a list: `${<step_id>.output...}` or"
                        " `${workflow.input...}`",
                    )
                )
            else:
                found.append((path, whole))
    if malformed:
        raise _fail(
            "WORKFLOW_INVALID_REFERENCE", _summary("invalid reference", malformed), malformed
        )

    invalid_routes: list[FieldViolation] = []
    for step_id, step in steps.items():
        for index, route in enumerate(routes_of(step)):
            try:
                compiled(route.when)
            except RouteError as error:
                invalid_routes.append(
                    FieldViolation(f"steps.{step_id}.routes[{index}].when", str(error))
                )
    if invalid_routes:
        raise _fail(
            "WORKFLOW_INVALID_ROUTE", _summary("invalid route", invalid_routes), invalid_routes
        )

    graph = StepGraph.of(workflow_data)
    cycle = graph.find_cycle()
    if cycle:
        described = " -> ".join(cycle)
        raise _fail(
            "WORKFLOW_CYCLE",
            f"workflow has a circular reference: {described}",
            [FieldViolation(f"steps.{cycle[0]}", f"is part of the cycle {described}")],
        )

    unreachable = sorted(set(steps) - graph.reachable())
    if unreachable:
        violations = [
            FieldViolation(f"steps.{s}", f"is not reachable from start_step '{start}'")
            for s in unreachable
        ]
        raise _fail(
            "WORKFLOW_UNREACHABLE_STEP", _summary("unreachable step", violations), violations
        )

    out_of_order: list[FieldViolation] = []
    for step_id, found in parsed.items():
        ancestors = graph.ancestors(step_id)
        for path, ref in found:
            if ref.is_workflow_input or ref.is_item:
                continue
            if ref.source not in steps:
                out_of_order.append(FieldViolation(path, f"{ref.text} names no step"))
            elif ref.source not in ancestors:
                out_of_order.append(
                    FieldViolation(
                        path,
                        f"{ref.text} reads step '{ref.source}', which cannot have "
                        f"completed before step '{step_id}' starts",
                    )
                )
    if out_of_order:
        raise _fail(
            "WORKFLOW_REFERENCE_ORDER",
            _summary("reference to a later or unknown step", out_of_order),
            out_of_order,
        )
    return graph


def _bad_target(target: str, step_id: str) -> str:
    if target == step_id:
        return f"step '{step_id}' cannot follow itself"
    return f"no step has id '{target}'"


def _summary(kind: str, violations: list[FieldViolation]) -> str:
    details = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return f"workflow validation failed, {kind}: {details}"
