"""String rules the contract cannot state: no NUL character anywhere in a request.

PostgreSQL refuses NUL in text and JSON, so a NUL that reached a query would fail it as
an internal error; refusing it here names the field instead. The walk covers every
string of the request, Struct values and map keys included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from baton_server.errors import FieldViolation, InvalidArgument

_NUL = "\x00"


def _strings(message: Message, path: str) -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        entry = field.message_type
        if entry is not None:
            if entry.GetOptions().map_entry:
                value_field = entry.fields_by_name["value"]
                for key, item in value.items():
                    yield f"{name}.{key}", str(key)
                    yield from _values(value_field, item, f"{name}.{key}")
            elif field.is_repeated:
                for index, item in enumerate(value):
                    yield from _strings(item, f"{name}[{index}].")
            else:
                yield from _strings(value, f"{name}.")
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                yield from ((f"{name}[{i}]", item) for i, item in enumerate(value))
            else:
                yield name, value


def _values(field: FieldDescriptor, value: Any, path: str) -> Iterator[tuple[str, str]]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        yield from _strings(value, f"{path}.")
    elif field.type == FieldDescriptor.TYPE_STRING:
        yield path, value


def _readable(path: str) -> str:
    """A Struct's inner path as the JSON reads: ``input_data.rows[0].name``."""
    for inner, outer in ((".fields.", "."), (".struct_value.", "."), (".list_value.values[", "[")):
        path = path.replace(inner, outer)
    return path.removesuffix(".string_value").replace(_NUL, "\\u0000")


def reject_nul(message: Message) -> None:
    """Raise ``InvalidArgument`` naming every field whose string holds a NUL."""
    violations = [
        FieldViolation(
            _readable(path), "must not contain the NUL character (U+0000)", "string.no_nul"
        )
        for path, value in _strings(message, "")
        if _NUL in value
    ]
    if violations:
        raise InvalidArgument(
            "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="INVALID_FIELD",
            violations=violations,
        )
