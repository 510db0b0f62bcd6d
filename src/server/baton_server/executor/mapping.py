"""Builds a step's input from its ``input_mapping``, the run input and earlier outputs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton_server.workflows import references
from baton_server.workflows.references import ITEM_SOURCE, Reference

#: Most items one fan-out step calls its agent for.
MAX_ITEMS = 10_000


class MappingError(Exception):
    """A reference cannot be resolved; the message names it."""


#: The "output" of a skipped step: every reference into it resolves to null.
SKIPPED_OUTPUT: Any = object()


@dataclass(frozen=True)
class Item:
    """The item a fan-out step calls its agent for: ``${item}`` and ``${item_index}``."""

    index: int
    value: Any


def _lookup(
    reference: Reference, workflow_input: Any, outputs: Mapping[str, Any], item: Item | None
) -> Any:
    value: Any
    if reference.is_item:
        if item is None:
            raise MappingError(f"{reference.text}: only a fan-out step (for_each) has an item")
        value = item.value if reference.source == ITEM_SOURCE else item.index
    elif reference.is_workflow_input:
        value = workflow_input
    elif reference.source in outputs and outputs[reference.source] is SKIPPED_OUTPUT:
        return None  # a branch not taken: a join reads null for it
    elif reference.source in outputs:
        value = outputs[reference.source]
    else:
        raise MappingError(f"{reference.text}: step '{reference.source}' has no output")
    for segment in reference.path:
        found = (isinstance(segment, int) and isinstance(value, list) and segment < len(value)) or (
            isinstance(segment, str) and isinstance(value, dict) and segment in value
        )
        if not found:
            raise MappingError(f"{reference.text}: '{segment}' not found")
        value = value[segment]
    return value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _resolve(value: Any, workflow_input: Any, outputs: Mapping[str, Any], item: Item | None) -> Any:
    if isinstance(value, str):
        whole = references.whole_reference(value)
        if whole is not None:
            return _lookup(whole, workflow_input, outputs, item)
        if "${" not in value:
            return value
        result = value
        for reference in references.references_in(value):
            result = result.replace(
                reference.text, _as_text(_lookup(reference, workflow_input, outputs, item)), 1
            )
        return result
    if isinstance(value, dict):
        return {k: _resolve(v, workflow_input, outputs, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, workflow_input, outputs, item) for v in value]
    return value


def resolve_items(for_each: str, workflow_input: Any, outputs: Mapping[str, Any]) -> list[Any]:
    """The list a fan-out step calls its agent for, read from its ``for_each``."""
    reference = references.whole_reference(for_each)
    if reference is None:  # validated at definition time
        raise MappingError(f"for_each {for_each!r} is not one ${{...}} reference")
    items = _lookup(reference, workflow_input, outputs, None)
    if not isinstance(items, list):
        kind = "null" if items is None else type(items).__name__
        raise MappingError(f"for_each {reference.text} is {kind}, not a list")
    if len(items) > MAX_ITEMS:
        raise MappingError(
            f"for_each {reference.text} has {len(items)} items, more than {MAX_ITEMS}"
        )
    return items


def resolve_input(
    input_mapping: Mapping[str, Any],
    workflow_input: Any,
    outputs: Mapping[str, Any],
    item: Item | None = None,
) -> dict[str, Any]:
    """The step input: static values as they are, references replaced by their values.

    A value that is exactly one reference keeps the referenced JSON type; references
    inside longer strings are interpolated as text (JSON for non-strings).
    """
    return {k: _resolve(v, workflow_input, outputs, item) for k, v in input_mapping.items()}
