"""Who may call each RPC, and how its REST answer looks, read from the contract's
``(baton.v1.access)`` and ``(baton.v1.rest)`` method options."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.descriptor import FileDescriptor

from baton.v1 import access_pb2, rest_pb2
from baton_server.access.context import HTTP_CODE_HEADER, UNWRAP_HEADER
from baton_server.access.model import Role

_READ_PREFIXES = ("List", "Get", "Watch", "Wait", "Check")
# The kind of resource each service writes; AccessService writes two, named by method.
_RESOURCE_TYPES = {
    "baton.v1.AgentService": "agent",
    "baton.v1.WorkflowService": "workflow",
    "baton.v1.RunService": "run",
    "baton.v1.ModelPriceService": "model_price",
}


@dataclass(frozen=True)
class MethodRule:
    """What one RPC requires, and how the audit trail names what it writes."""

    method: str  # e.g. baton.v1.AgentService/CreateAgent
    role: Role
    public: bool
    #: The kind of resource the RPC changes; None for a read (not audited).
    writes: str | None
    #: Initial metadata that tells Envoy's Lua filter (envoy/rest.lua) how to shape a
    #: successful REST answer: ``x-http-code`` and ``x-baton-unwrap``.
    response_headers: tuple[tuple[str, str], ...] = ()


def _resource_type(service: str, method: str) -> str:
    if service in _RESOURCE_TYPES:
        return _RESOURCE_TYPES[service]
    return "api_key" if "ApiKey" in method else "project"


def _response_headers(rest: rest_pb2.RestResponse) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    if rest.success_status not in (0, 200):
        headers.append((HTTP_CODE_HEADER, str(rest.success_status)))
    if rest.bare_field:
        headers.append((UNWRAP_HEADER, rest.bare_field))
    return tuple(headers)


def method_rules(files: Iterable[FileDescriptor]) -> dict[str, MethodRule]:
    """Rules by gRPC path (``/baton.v1.AgentService/CreateAgent``) of every RPC in
    ``files``. A method without the option needs ``admin`` (fail closed)."""
    rules: dict[str, MethodRule] = {}
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[access_pb2.access]
                name = f"{service.full_name}/{method.name}"
                rules[f"/{name}"] = MethodRule(
                    method=name,
                    role=Role(rule.role) if rule.role else Role.admin,
                    public=rule.public,
                    writes=None
                    if method.name.startswith(_READ_PREFIXES)
                    else _resource_type(service.full_name, method.name),
                    response_headers=_response_headers(
                        method.GetOptions().Extensions[rest_pb2.rest]
                    ),
                )
    return rules
