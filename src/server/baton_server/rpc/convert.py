"""Conversions shared by servicers: timestamps, JSON structs, UUIDs, paging fields."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from baton_server.errors import FieldViolation, InvalidArgument
from baton_server.paging import DEFAULT_PAGE_SIZE, Page, PageRequest


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def integral(value: Any) -> Any:
    """Turn whole floats back into ints, recursively.

    ``google.protobuf.Struct`` (and A2A agents) carry every number as a double; users
    wrote integers, so integers are what Baton stores and returns.
    """
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = integral(json_format.MessageToDict(message))
    return result


def json_value(value: Any) -> struct_pb2.Value:
    """Any JSON value as a ``google.protobuf.Value``."""
    message = struct_pb2.Value()
    struct = struct_pb2.Struct()
    struct.update({"v": value})
    message.CopyFrom(struct.fields["v"])
    return message


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """Parse an id that the contract already checked; kept strict for direct callers."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID",
            reason="INVALID_FIELD",
            violations=[FieldViolation(field, "value must be a valid UUID")],
        ) from None


def optional_datetime(message: Message, name: str) -> datetime | None:
    """A ``Timestamp`` field as an aware UTC datetime, or ``None`` when unset."""
    if not message.HasField(name):
        return None
    value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return value


def present(message: Message, name: str) -> Any:
    """The value of an optional (presence-tracking) field, or ``None`` when unset."""
    return getattr(message, name) if message.HasField(name) else None


def page_fields(page: Page[Any]) -> dict[str, int]:
    """The paging fields every list response has (``total``, ``page``, ...)."""
    return {
        "total": page.total,
        "page": page.request.page,
        "page_size": page.request.page_size,
        "total_pages": page.total_pages,
    }


def page_request(message: Any) -> PageRequest:
    """``page``/``page_size`` from a list request (both optional fields)."""
    return PageRequest(
        page=present(message, "page") or 1,
        page_size=present(message, "page_size") or DEFAULT_PAGE_SIZE,
    )


#: No resource has this id: what a filter by a malformed id selects.
MATCHES_NOTHING = uuid.UUID(int=0)


def filter_uuid(value: str) -> uuid.UUID | None:
    """A UUID filter of a list request: None when empty; a malformed one matches nothing."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return MATCHES_NOTHING
