"""Who may call each RPC, read from the contract's ``(baton.v1.access)`` method option."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.descriptor import FileDescriptor

from baton.v1 import access_pb2
from baton_server.access.model import Role

_READ_PREFIXES = ("List", "Get", "Watch", "Wait", "Check")
# The kind of resource each service writes; AccessService writes two, named by method.
_RESOURCE_TYPES = {
    "baton.v1.AgentService": "agent",
    "baton.v1.WorkflowService": "workflow",
    "baton.v1.RunService": "run",
}


@dataclass(frozen=True)
class MethodRule:
    """What one RPC requires, and how the audit trail names what it writes."""

    method: str  # e.g. baton.v1.AgentService/CreateAgent
    role: Role
    public: bool
    #: The kind of resource the RPC changes; None for a read (not audited).
    writes: str | None


def _resource_type(service: str, method: str) -> str:
    if service in _RESOURCE_TYPES:
        return _RESOURCE_TYPES[service]
    return "api_key" if "ApiKey" in method else "project"


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
                )
    return rules
