"""Enforces the field constraints declared in the contract (``buf.validate``).

The rules live in ``proto/`` next to the fields they constrain; protovalidate evaluates
them against each request before a servicer sees it.
"""

from __future__ import annotations

import protovalidate
from google.protobuf.message import Message

from baton_server.errors import FieldViolation, InvalidArgument
from baton_server.rpc.content import check_content

_validator = protovalidate.Validator()


def _field_path(violation: protovalidate.Violation) -> str:
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        subscript = element.subscript
        if subscript is None:
            parts.append(element.field_name)
        elif subscript.field == "index":
            parts.append(f"{element.field_name}[{subscript.value}]")
        else:
            # Map keys read as path segments, like `steps.extract.agent_name`.
            parts.append(f"{element.field_name}.{subscript.value}")
    return ".".join(parts)


def validate_request(message: Message) -> None:
    """Raise ``InvalidArgument`` naming every field that breaks a declared rule, or that
    holds a NUL character."""
    check_content(message)
    found = _validator.collect_violations(message)
    if not found:
        return
    violations = [
        FieldViolation(
            field=_field_path(v),
            description=v.proto.message,
            reason=v.proto.rule_id,
        )
        for v in found
    ]
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    raise InvalidArgument(
        f"invalid request: {summary}", reason="INVALID_FIELD", violations=violations
    )
