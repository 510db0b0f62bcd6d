"""The caller of the RPC being handled, and the response headers it is owed.

The access guard sets both when it admits a call: the rate-limit headers and the REST
shape the contract declares for the method (``(baton.v1.rest)``: ``x-http-code``,
``x-baton-unwrap``). Servicers read the caller with :func:`caller` and, when one answer
of a method has another status than the declared one, say so with
:func:`answer_with_status`. The interceptor sends them all at once (gRPC allows a single
send of initial metadata per call).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc

from baton_server.access.model import Identity


@dataclass
class Call:
    """One admitted RPC."""

    identity: Identity
    client_address: str
    #: Initial metadata to send with the response (``x-ratelimit-*``).
    headers: list[tuple[str, str]] = field(default_factory=list)
    headers_sent: bool = False


#: The REST status of a successful answer when it is not 200 (applied by envoy/rest.lua).
HTTP_CODE_HEADER = "x-http-code"
#: The response field whose value is the whole REST body (applied by envoy/rest.lua).
UNWRAP_HEADER = "x-baton-unwrap"

_CALL: ContextVar[Call | None] = ContextVar("baton_call", default=None)


def begin(call: Call) -> None:
    _CALL.set(call)


def current_call() -> Call | None:
    return _CALL.get()


def caller() -> Identity:
    """The identity of the caller of the RPC being handled (servicers only)."""
    call = _CALL.get()
    if call is None:
        raise RuntimeError("no caller: not inside an RPC admitted by the access guard")
    return call.identity


def answer_with_status(status: int) -> None:
    """Answer this call's REST request with ``status`` instead of the status its method
    declares (servicers only): 200 for a run that finished within its wait, 503 for a
    failed readiness check."""
    call = _CALL.get()
    if call is None:
        raise RuntimeError("no call: not inside an RPC admitted by the access guard")
    call.headers[:] = [pair for pair in call.headers if pair[0] != HTTP_CODE_HEADER]
    if status != 200:
        call.headers.append((HTTP_CODE_HEADER, str(status)))


async def send_headers(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Send the response's initial metadata: whatever the call is owed."""
    call = _CALL.get()
    if call is None or call.headers_sent:
        return
    call.headers_sent = True
    if call.headers:
        await context.send_initial_metadata(call.headers)
