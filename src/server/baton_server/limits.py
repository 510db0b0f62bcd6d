"""Baton's size limits, in one place (documented in docs/api.md, "Limits").

The API server, Envoy and the executor read them from here, so a limit and the error
that names it cannot drift apart.
"""

from __future__ import annotations

from typing import Final

MIB: Final = 1024 * 1024

#: A request: a gRPC message or a REST body (over it: 413 ``REQUEST_TOO_LARGE`` over REST,
#: ``INVALID_ARGUMENT`` over gRPC; see baton_server.rpc.content and envoy/rest.lua).
MAX_REQUEST_BYTES: Final = 4 * MIB

#: What the gRPC server reads before it looks at a request. JSON can grow up to ~5.5x
#: as protobuf (a list of one-digit numbers), so a REST body Envoy accepted always
#: arrives, and the server answers a message over ``MAX_REQUEST_BYTES`` with an error
#: that names the limit instead of a transport error.
MAX_GRPC_RECEIVE_BYTES: Final = 8 * MAX_REQUEST_BYTES

#: One JSON value of a request (``input_data``, a signal's payload, a step's output
#: given to a step test, ...), measured as its protobuf encoding. Such values are stored
#: with the run and copied into step inputs and events; a run of a few of them still
#: reads back in one ``GetRun``.
MAX_JSON_VALUE_BYTES: Final = 1 * MIB

#: An agent's answer (the HTTP body of an A2A or plain HTTP response). A larger answer
#: fails the step attempt with an error that says so; the output is not stored.
MAX_AGENT_ANSWER_BYTES: Final = 1 * MIB


def describe(size: int) -> str:
    """``1 MiB``, ``4 MiB``, or a byte count for sizes that are not whole MiB."""
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"
