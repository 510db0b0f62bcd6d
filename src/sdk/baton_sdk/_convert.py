"""Conversions between protobuf well-known types and plain Python values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

# Struct numbers are doubles; integers beyond this cannot be told apart from floats.
_EXACT_INTEGER_LIMIT = 2**53


def python_value(value: struct_pb2.Value) -> Any:
    """Return a ``Value`` as plain JSON-like Python.

    Whole numbers come back as ``int``: JSON has no separate integer type and every
    value sent as ``100`` should read as ``100``, not ``100.0``.
    """
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) <= _EXACT_INTEGER_LIMIT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_dict(value.struct_value)
    if kind == "list_value":
        return [python_value(item) for item in value.list_value.values]
    return None


def struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Return a ``Struct`` as a dict (whole numbers as ``int``)."""
    return {key: python_value(item) for key, item in struct.fields.items()}


def optional_value(message: Message, field: str) -> Any:
    """Return a ``Value`` field as Python, or ``None`` when it is not set."""
    if not message.HasField(field):
        return None
    value: struct_pb2.Value = getattr(message, field)
    return python_value(value)


def optional_struct(message: Message, field: str) -> dict[str, Any] | None:
    """Return a ``Struct`` field as a dict, or ``None`` when it is not set."""
    if not message.HasField(field):
        return None
    struct: struct_pb2.Struct = getattr(message, field)
    return struct_dict(struct)


def to_value(data: Any) -> struct_pb2.Value:
    """Return any JSON-compatible value as a ``google.protobuf.Value``."""
    struct = to_struct({"value": data})
    return struct.fields["value"]


def to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    """Return ``data`` as a ``Struct``.

    Raises:
        TypeError: When ``data`` holds something JSON cannot represent.
    """
    struct = struct_pb2.Struct()
    try:
        json_format.ParseDict(dict(data), struct)
    except json_format.ParseError as error:
        raise TypeError(f"not JSON-compatible: {error}") from None
    return struct


def to_datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    """Return a ``Timestamp`` as an aware UTC datetime."""
    return stamp.ToDatetime(tzinfo=UTC)


def optional_datetime(message: Message, field: str) -> datetime | None:
    """Return a ``Timestamp`` field as an aware datetime, or ``None`` when unset."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return to_datetime(stamp)


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """Return ``moment`` as a ``Timestamp``; a naive datetime is taken as local time."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def optional_string(message: Message, field: str) -> str | None:
    """Return an ``optional string`` field, or ``None`` when it is not set."""
    if not message.HasField(field):
        return None
    text: str = getattr(message, field)
    return text


def empty_as_none(text: str) -> str | None:
    """Return ``None`` for the empty string proto3 uses for "not set"."""
    return text or None


def message_dict(message: Message) -> dict[str, Any]:
    """Return ``message`` as the JSON object the REST API prints for it."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def parse_mapping(data: Mapping[str, Any], message: M, path: str) -> M:
    """Fill ``message`` from its REST JSON form (snake_case or camelCase keys).

    Raises:
        ValueError: An unknown field or a value of the wrong type; the message starts
            with ``path``.
    """
    known = {f.name for f in message.DESCRIPTOR.fields} | {
        f.json_name for f in message.DESCRIPTOR.fields
    }
    for key in data:
        if key not in known:
            expected = ", ".join(f.name for f in message.DESCRIPTOR.fields)
            raise ValueError(f"{path}: unknown field {key!r} (expected one of: {expected})")
    try:
        return json_format.ParseDict(dict(data), message)
    except json_format.ParseError as error:
        raise ValueError(f"{path}: {error}") from None
