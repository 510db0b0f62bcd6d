"""The caller of the RPC being handled, and the response headers it is owed.

The access guard sets both when it admits a call; servicers read the caller with
:func:`caller` and send their own initial metadata (``x-http-code``) through
:func:`send_headers`, so that one send carries the rate-limit headers too (gRPC allows a
single send of initial metadata per call).
"""

from __future__ import annotations

from collections.abc import Sequence
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


async def send_headers(
    context: grpc.aio.ServicerContext[Any, Any], pairs: Sequence[tuple[str, str]] = ()
) -> None:
    """Send the response's initial metadata: ``pairs`` and whatever the call is owed."""
    call = _CALL.get()
    owed: list[tuple[str, str]] = []
    if call is not None:
        if call.headers_sent:
            return
        call.headers_sent = True
        owed = call.headers
    metadata = (*owed, *pairs)
    if metadata:
        await context.send_initial_metadata(metadata)
