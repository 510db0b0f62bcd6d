"""Content rules the contract cannot state, checked on every request.

* No NUL character in any string: PostgreSQL refuses NUL in text and JSON, so a NUL
  that reached a query would fail it as an internal error; refusing it here names the
  field instead.
* No request larger than :data:`~baton_server.limits.MAX_REQUEST_BYTES` (the gRPC server
  reads more, see :data:`~baton_server.limits.MAX_GRPC_RECEIVE_BYTES`).
* No Timestamp or Duration outside the range the protobuf specification allows (the
  conversion to a datetime would fail).
* No JSON value (``google.protobuf.Struct``, ``Value``, ``ListValue``: ``input_data``,
  a signal's payload, ...) larger than :data:`~baton_server.limits.MAX_JSON_VALUE_BYTES`.

One walk covers every field of the request, Struct values and map keys included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from baton_server.errors import FieldViolation, InvalidArgument
from baton_server.limits import MAX_JSON_VALUE_BYTES, MAX_REQUEST_BYTES, describe

_NUL = "\x00"
_JSON_TYPES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
_TIMESTAMP = "google.protobuf.Timestamp"
_TIME_TYPES = frozenset({_TIMESTAMP, "google.protobuf.Duration"})
# The ranges the protobuf specification allows (well_known_types checks the same).
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01 to 9999-12-31
_DURATION_SECONDS = 315_576_000_000  # about 10,000 years
_MAX_NANOS = 999_999_999


def _walk(
    message: Message, path: str, in_json: bool = False
) -> Iterator[tuple[str, str | Message]]:
    """Every string of ``message`` and every outermost JSON value in it, with its path."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            for key, item in value.items():
                yield f"{name}.{key}", str(key)
                yield from _values(value_field, item, f"{name}.{key}", in_json)
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _values(field, item, f"{name}[{index}]", in_json)
        else:
            yield from _values(field, value, name, in_json)


def _values(
    field: FieldDescriptor, value: Any, path: str, in_json: bool
) -> Iterator[tuple[str, str | Message]]:
    if field.message_type is not None:
        kind = field.message_type.full_name
        if kind in _TIME_TYPES:
            yield path, value
            return
        json_value = kind in _JSON_TYPES
        if json_value and not in_json:
            yield path, value
        yield from _walk(value, f"{path}.", in_json or json_value)
    elif field.type == FieldDescriptor.TYPE_STRING:
        yield path, value


def _readable(path: str) -> str:
    """A Struct's inner path as the JSON reads: ``input_data.rows[0].name``."""
    for inner, outer in ((".fields.", "."), (".struct_value.", "."), (".list_value.values[", "[")):
        path = path.replace(inner, outer)
    return path.removesuffix(".string_value").replace(_NUL, "\\u0000")


def _violations(message: Message) -> Iterator[FieldViolation]:
    too_large: tuple[str, ...] = ()  # path prefixes: nothing inside them is news
    for path, value in _walk(message, ""):
        if path.startswith(too_large):
            continue
        if isinstance(value, str):
            if _NUL in value:
                yield FieldViolation(
                    _readable(path),
                    "must not contain the NUL character (U+0000)",
                    "string.no_nul",
                )
        elif value.DESCRIPTOR.full_name in _TIME_TYPES:
            if problem := _time_problem(value):
                yield FieldViolation(_readable(path), problem, "time.valid")
        elif (size := value.ByteSize()) > MAX_JSON_VALUE_BYTES:
            too_large += (f"{path}.", f"{path}[")
            yield FieldViolation(
                _readable(path),
                f"is {size} bytes, more than the {describe(MAX_JSON_VALUE_BYTES)} limit of a"
                " JSON value",
                "json.max_bytes",
            )


def _time_problem(value: Any) -> str | None:
    """What is wrong with a Timestamp or Duration, if anything."""
    seconds, nanos = value.seconds, value.nanos
    if value.DESCRIPTOR.full_name == _TIMESTAMP:
        low, high = _TIMESTAMP_SECONDS
        if not low <= seconds <= high or not 0 <= nanos <= _MAX_NANOS:
            return "must be a valid timestamp, from 0001-01-01 to 9999-12-31 (UTC)"
    elif abs(seconds) > _DURATION_SECONDS or abs(nanos) > _MAX_NANOS or seconds * nanos < 0:
        return "must be a valid duration, at most about 10,000 years either way"
    return None


def check_content(message: Message) -> None:
    """Raise ``InvalidArgument`` for a request over the size limit, or naming every field
    that breaks a content rule."""
    if (size := message.ByteSize()) > MAX_REQUEST_BYTES:
        raise InvalidArgument(
            f"invalid request: the request is {size} bytes, more than the"
            f" {describe(MAX_REQUEST_BYTES)} limit of a request",
            reason="REQUEST_TOO_LARGE",
        )
    violations = list(_violations(message))
    if violations:
        raise InvalidArgument(
            "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="INVALID_FIELD",
            violations=violations,
        )
