"""The ``usage`` agents report, read leniently: bad entries are dropped, never fatal.

The convention (docs/usage.md): an entry is ``{model, input_tokens, output_tokens,
cost_usd?, operation?}``; OpenAI's ``prompt_tokens`` / ``completion_tokens`` are read
as input and output tokens. A reported value is one entry or a list of them. Whatever
does not fit is ignored and described, so that the run's log can say why, and the step
goes on: usage is accounting, not the step's result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Beyond this, a count is not a token count (and would lose precision as a double).
MAX_TOKENS = 10**12
MAX_COST_USD = 1e9
MAX_NAME_CHARS = 200
#: Entries read per step attempt; more are ignored (and said so).
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class ReportedUsage:
    """One model call as an agent reported it."""

    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None
    operation: str | None = None


def read_usage(values: list[Any]) -> tuple[list[ReportedUsage], list[str]]:
    """The valid entries among the reported ``values`` (each an entry or a list of
    them), and one problem description per entry ignored."""
    entries = [e for value in values for e in (value if isinstance(value, list) else [value])]
    problems: list[str] = []
    if len(entries) > MAX_ENTRIES:
        problems.append(f"{len(entries) - MAX_ENTRIES} usage entries over {MAX_ENTRIES} ignored")
        entries = entries[:MAX_ENTRIES]
    usage: list[ReportedUsage] = []
    for index, entry in enumerate(entries):
        try:
            usage.append(_entry(entry))
        except ValueError as error:
            problems.append(f"usage entry {index} ignored: {error}")
    return usage, problems


def _entry(entry: Any) -> ReportedUsage:
    if not isinstance(entry, dict):
        raise ValueError(f"not an object ({type(entry).__name__})")
    model = _name(entry.get("model"), "model", required=True)
    input_tokens = _tokens(entry, "input_tokens", "prompt_tokens")
    output_tokens = _tokens(entry, "output_tokens", "completion_tokens")
    if input_tokens is None and output_tokens is None:
        raise ValueError("no input_tokens or output_tokens")
    cost = entry.get("cost_usd")
    if cost is not None and not (_number(cost) and 0 <= cost <= MAX_COST_USD):
        raise ValueError(f"cost_usd must be a number from 0 to {MAX_COST_USD:g}, got {cost!r}")
    return ReportedUsage(
        model=model or "",
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cost_usd=None if cost is None else float(cost),
        operation=_name(entry.get("operation"), "operation", required=False),
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tokens(entry: dict[str, Any], name: str, alias: str) -> int | None:
    key = name if name in entry else alias
    value = entry.get(key)
    if value is None:
        return None
    if not (_number(value) and value == int(value) and 0 <= value <= MAX_TOKENS):
        raise ValueError(f"{key} must be a whole number from 0 to {MAX_TOKENS}, got {value!r}")
    return int(value)


def _name(value: Any, field: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME_CHARS or "\x00" in value:
        raise ValueError(f"{field} must be at most {MAX_NAME_CHARS} characters without NUL")
    return value
