"""Hypothesis strategies for any protobuf message of the contract, built from its
descriptor: random and extreme values of every field type, unknown enum numbers, huge
and NUL-bearing strings, deep and wide JSON values, out-of-range timestamps.

Ids (string fields named ``*_id``) are drawn partly from ``ids``, so that requests reach
past "not found" into the code that handles existing resources.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

_ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "${step.output.x}",
    "${item}",
    "http://127.0.0.1:9/a",
    "-1",
    "null",
    "😀" * 100,
]


def _strings() -> st.SearchStrategy[str]:
    # Long strings are built when drawn (a strategy holding one has a huge repr).
    long = st.sampled_from([256, 2001, 70_000]).map(lambda length: "x" * length)
    return st.one_of(st.text(max_size=40), st.sampled_from(_ODD_STRINGS), long)


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    extremes = [low, high, 0, -1 if low < 0 else 1, 1]
    return st.one_of(st.sampled_from(extremes), st.integers(low, high))


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def json_values() -> st.SearchStrategy[Any]:
    """JSON values: ordinary ones, wide ones, and ones nested up to 200 levels."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**60), 2**60).map(float),
        _strings(),
    )
    ordinary = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(_strings(), children, max_size=4),
        ),
        max_leaves=20,
    )
    wide = st.integers(1000, 20_000).map(lambda n: {f"k{i}": i for i in range(n)})
    deep = st.integers(20, 200).map(_deep)
    return st.one_of(ordinary, ordinary, ordinary, wide, deep)


def _json_message(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(descriptor)

    def build(value: Any) -> Message:
        message = cls()
        if descriptor.full_name == "google.protobuf.Struct":
            value = value if isinstance(value, dict) else {"v": value}
        elif descriptor.full_name == "google.protobuf.ListValue":
            value = value if isinstance(value, list) else [value]
        json_format.ParseDict(value, message, max_recursion_depth=1000)
        return message

    return json_values().map(build)


def _time_message(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(descriptor)
    return st.builds(
        lambda seconds, nanos: cls(seconds=seconds, nanos=nanos),
        _ints(-(2**62), 2**62),
        _ints(-(2**31), 2**31 - 1),
    )


_WELL_KNOWN: dict[str, Callable[[Descriptor], st.SearchStrategy[Message]]] = {
    "google.protobuf.Struct": _json_message,
    "google.protobuf.Value": _json_message,
    "google.protobuf.ListValue": _json_message,
    "google.protobuf.Timestamp": _time_message,
    "google.protobuf.Duration": _time_message,
}


class MessageStrategies:
    """Strategies for messages, with ``ids`` mixed into ``*_id`` string fields."""

    def __init__(self, ids: Sequence[str] = (), max_depth: int = 4) -> None:
        self._ids = list(ids)
        self._max_depth = max_depth

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        if descriptor.full_name in _WELL_KNOWN:
            return _WELL_KNOWN[descriptor.full_name](descriptor)
        cls = message_factory.GetMessageClass(descriptor)
        if depth >= self._max_depth:
            return st.just(cls())
        fields = {
            field.name: self._field(field, depth)
            for field in descriptor.fields
            if field.message_type is None or field.message_type != descriptor
        }

        def build(values: dict[str, Any]) -> Message:
            message = cls()
            for name, value in values.items():
                _assign(message, descriptor.fields_by_name[name], value)
            return message

        return st.fixed_dictionaries({}, optional=fields).map(build)

    def _field(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            keys = self._single(entry.fields_by_name["key"], depth)
            values = self._single(entry.fields_by_name["value"], depth + 1)
            return st.dictionaries(keys, values, max_size=4)
        single = self._single(field, depth)
        if field.is_repeated:
            return st.lists(single, max_size=4)
        return single

    def _single(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE or kind == FieldDescriptor.TYPE_GROUP:
            assert field.message_type is not None
            return self.message(field.message_type, depth + 1)
        if kind == FieldDescriptor.TYPE_STRING:
            if field.name.endswith("_id") and self._ids:
                return st.one_of(st.sampled_from(self._ids), _strings())
            return _strings()
        if kind == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=64)
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind == FieldDescriptor.TYPE_ENUM:
            # Declared numbers and unknown ones (proto3 enums are open).
            assert field.enum_type is not None
            declared = [value.number for value in field.enum_type.values]
            return st.one_of(st.sampled_from(declared), _ints(-5, 50))
        if kind == FieldDescriptor.TYPE_DOUBLE:
            return st.floats(allow_nan=True, allow_infinity=True)
        if kind == FieldDescriptor.TYPE_FLOAT:
            return st.floats(width=32, allow_nan=True, allow_infinity=True)
        low, high = _INT_BOUNDS[kind]
        return _ints(low, high)


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        value_is_message = entry.fields_by_name["value"].message_type is not None
        for key, item in value.items():
            if value_is_message:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if entry is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif entry is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)
