"""Conditional routes: CEL expressions over a step's output choose the step that follows.

CEL (https://cel.dev) is a small, side-effect-free expression language with a
maintained Python implementation (cel-python); expressions are compiled once per
workflow version and cached, and an evaluation never runs user code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

_ENV = celpy.Environment()


class RouteError(Exception):
    """An expression that does not compile, fails, or gives no bool; says which."""


@dataclass(frozen=True)
class Route:
    """``when`` holds -> ``next_step`` follows."""

    when: str
    next_step: str


def routes_of(step: Mapping[str, Any]) -> tuple[Route, ...]:
    """The routes of a step of ``workflow_data``, in order."""
    return tuple(Route(r["when"], r["next_step"]) for r in step.get("routes") or ())


@lru_cache(maxsize=4096)
def compiled(expression: str) -> celpy.Runner:
    """The program of an expression; raises RouteError if it does not compile."""
    try:
        return _ENV.program(_ENV.compile(expression))
    except CELParseError as error:
        where = f"line {error.line}, column {error.column}" if error.line else "its end"
        raise RouteError(f"not a valid CEL expression: syntax error at {where}") from None


def choose(
    routes: Sequence[Route],
    default: str | None,
    *,
    output: Any,
    workflow_input: Any,
    outputs: Mapping[str, Any],
) -> str | None:
    """The step that follows: the first route whose expression holds, else ``default``."""
    activation = {
        "output": json_to_cel(output),
        "input": json_to_cel(workflow_input),
        "steps": json_to_cel(dict(outputs)),
    }
    for index, route in enumerate(routes):
        try:
            result = compiled(route.when).evaluate(activation)
        except Exception as error:  # whatever the output, never crash the worker
            detail = error.args[0] if isinstance(error, CELEvalError) else error
            raise RouteError(f"routes[{index}].when `{route.when}` failed: {detail}") from None
        if not isinstance(result, celtypes.BoolType):
            raise RouteError(
                f"routes[{index}].when `{route.when}` gave {type(result).__name__}, not a bool"
            )
        if result:
            return route.next_step
    return default
