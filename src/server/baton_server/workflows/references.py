"""The `${...}` reference language of step input mappings.

Grammar (whitespace not allowed)::

    reference := "${" source path "}"
    source    := "workflow.input" | STEP_ID ".output" | "item" | "item_index"
    path      := ( "." NAME | "[" DIGITS "]" )*

``${workflow.input.user.name}`` reads the run's input; ``${extract.output.rows[0].id}``
reads the output of step ``extract``. In a fan-out step (``for_each``), ``${item}``
reads the current item and ``${item_index}`` its place in the list (no path); ``item``
and ``item_index`` are therefore not usable as step ids in references. The validator
and the executor share this parser, so whatever is accepted at definition time resolves
the same way at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

WORKFLOW_SOURCE = "workflow"
ITEM_SOURCE = "item"
ITEM_INDEX_SOURCE = "item_index"

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_SOURCE = re.compile(r"(?P<source>[A-Za-z_][A-Za-z0-9_-]*)\.(?P<kind>input|output)")
_ITEM = re.compile(r"(?P<source>item_index|item)(?![A-Za-z0-9_-])")
_SEGMENT = re.compile(r"\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|\[(?P<index>[0-9]+)\]")


class ReferenceSyntaxError(ValueError):
    """A `${...}` expression that does not follow the grammar."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference: ``source`` is ``workflow`` or a step id."""

    text: str
    source: str
    path: tuple[str | int, ...]

    @property
    def is_workflow_input(self) -> bool:
        return self.source == WORKFLOW_SOURCE

    @property
    def is_item(self) -> bool:
        """Whether it reads the current item of a fan-out step (or its index)."""
        return self.source in (ITEM_SOURCE, ITEM_INDEX_SOURCE)


def parse(expression: str) -> Reference:
    """Parse the inside of one ``${...}``; raise ``ReferenceSyntaxError`` if malformed."""
    text = "${" + expression + "}"
    item = _ITEM.match(expression)
    if item is not None:
        reference = _with_path(text, item["source"], expression, item.end())
        if reference.source == ITEM_INDEX_SOURCE and reference.path:
            raise ReferenceSyntaxError(f"{text}: ${{item_index}} is a number, it has no path")
        return reference
    head = _SOURCE.match(expression)
    if head is None:
        raise ReferenceSyntaxError(
            f"{text} must start with 'workflow.input', '<step_id>.output', 'item' or 'item_index'"
        )
    source, kind = head["source"], head["kind"]
    if (source == WORKFLOW_SOURCE) != (kind == "input"):
        raise ReferenceSyntaxError(
            f"{text}: use 'workflow.input' for the run input and '<step_id>.output' for a step"
        )
    return _with_path(text, source, expression, head.end())


def _with_path(text: str, source: str, expression: str, position: int) -> Reference:
    path: list[str | int] = []
    while position < len(expression):
        segment = _SEGMENT.match(expression, position)
        if segment is None:
            raise ReferenceSyntaxError(
                f"{text}: invalid path at '{expression[position:]}' (use .name or [index] segments)"
            )
        path.append(int(segment["index"]) if segment["index"] is not None else segment["name"])
        position = segment.end()
    return Reference(text=text, source=source, path=tuple(path))


def references_in(text: str) -> Iterator[Reference]:
    """Every reference in a string, in order; raises on the first malformed one."""
    for match in _REFERENCE.finditer(text):
        yield parse(match[1])
    # A "${" that the pattern did not consume was never closed.
    if "${" in _REFERENCE.sub("", text):
        raise ReferenceSyntaxError(f"unterminated '${{' in {text!r}")


def whole_reference(text: str) -> Reference | None:
    """The reference if ``text`` is exactly one ``${...}`` (it then keeps its JSON type)."""
    match = _REFERENCE.fullmatch(text)
    return parse(match[1]) if match else None


def walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value, with its dotted path (``a.b[0]``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk_strings(item, f"{path}[{index}]")
