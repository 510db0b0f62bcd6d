"""A lean A2A echo agent for benchmarks: real A2A JSON-RPC, very little CPU.

Run it as a separate process::

    python bench/lean_agent.py --port 8001 [--host 127.0.0.1]
        [--protocol-version both|1.0|0.3] [--server asyncio|uvicorn]

It speaks A2A over JSON-RPC in both dialects on one endpoint (``/``):

- v1.0: ``SendMessage``, ``GetTask``, ``CancelTask``; like the a2a-sdk it
  requires the header ``A2A-Version: 1.0`` (error -32009 otherwise).
- v0.3: ``message/send``, ``tasks/get``, ``tasks/cancel``.

``--protocol-version`` picks the dialects: ``both`` (default), or only one, so a
client can be pushed onto either; the card advertises exactly those, and the
other dialect's methods get "method not found" (-32601), as from a real agent
of that version.

``SendMessage`` / ``message/send`` answers at once with a COMPLETED task whose
single artifact holds one data part: the input (the first data part of the
message, minus ``_``-prefixed keys) plus ``"echo": true`` and ``"data"``
(``input["data"]`` if present, else the input) - the same output as
``tests/agents/echo_agent.py``. Unlike protobuf-based agents it keeps integers
as integers. The last 4096 tasks are kept for ``GetTask``; they are complete, so
``CancelTask`` answers "not cancelable" (-32002).

``GET /.well-known/agent-card.json`` serves the card; ``GET /health`` answers
``{"status": "ok"}``.

Timings (opt-in, ``--record-timings``): for every send that carries the
``baton_idempotency_key`` message metadata Baton sets (``run_id/step_id/attempt``),
the agent records when the request reached it and when its answer left, as
``time.monotonic_ns()`` of this process. ``GET /timings`` answers
``{"clock": "monotonic_ns", "dropped": n, "timings": {key: [arrived, departed]},
"repeats": {key: [arrived, ...]}}`` - a key sent more than once keeps the last call in
``timings`` and the arrival of every call in ``repeats`` (the chaos benchmark counts
duplicate executions so); ``DELETE /timings`` forgets them. The time between one step's
departure and the next step's arrival is what an orchestrator spends in between,
measured on one clock (CLOCK_MONOTONIC, shared by the processes of the machine).
Without the option ``/timings`` is 404 and nothing is recorded.

``--delay-ms`` holds every JSON-RPC answer that long before writing it (asyncio server
only), so that calls are in flight long enough for faults to hit them.

Two servers, same agent logic (``--server``):

``asyncio`` (default)
    A hand-written HTTP/1.1 server on ``asyncio.Protocol`` with keep-alive and
    pipelining, ``Content-Length`` bodies only (chunked requests get 501).
``uvicorn``
    The same logic as a raw ASGI app under uvicorn (h11 here: httptools is not
    installed); kept to measure the difference (see bench/agent_client_cpu.py).

``--port 0`` binds a free port; the process prints ``READY <port>`` on stdout
once it accepts connections, and nothing else. :class:`LeanAgentProcess` runs it
as a subprocess for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, Self

PROTOCOL_VERSIONS: Final = ("both", "1.0", "0.3")
SERVERS: Final = ("asyncio", "uvicorn")
CARD_PATH: Final = "/.well-known/agent-card.json"
HEALTH_PATH: Final = "/health"
TIMINGS_PATH: Final = "/timings"
IDEMPOTENCY_METADATA_KEY: Final = "baton_idempotency_key"
RPC_PATH: Final = "/"

_MAX_HEAD_BYTES: Final = 64 * 1024
_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_KEPT_TASKS: Final = 4096
# Bounds the memory of a forgotten --record-timings agent; later calls are counted only.
_MAX_TIMINGS: Final = 1_000_000

# JSON-RPC / A2A error codes (a2a.utils.errors).
_PARSE_ERROR: Final = -32700
_INVALID_REQUEST: Final = -32600
_METHOD_NOT_FOUND: Final = -32601
_INVALID_PARAMS: Final = -32602
_TASK_NOT_FOUND: Final = -32001
_TASK_NOT_CANCELABLE: Final = -32002
_UNSUPPORTED_OPERATION: Final = -32004
_VERSION_NOT_SUPPORTED: Final = -32009

_V1_SEND, _V1_GET, _V1_CANCEL = "SendMessage", "GetTask", "CancelTask"
_V03_SEND, _V03_GET, _V03_CANCEL = "message/send", "tasks/get", "tasks/cancel"
# Real A2A methods this agent does not offer (its card says no streaming or
# push notifications): "unsupported", not "no such method".
_UNSUPPORTED_METHODS: Final = frozenset(
    {
        "SendStreamingMessage",
        "SubscribeToTask",
        "ListTasks",
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
        "GetExtendedAgentCard",
        "message/stream",
        "tasks/resubscribe",
        "tasks/pushNotificationConfig/set",
        "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list",
        "tasks/pushNotificationConfig/delete",
        "agent/getAuthenticatedExtendedCard",
    }
)

Response = tuple[int, bytes]


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def echo_output(step: dict[str, Any]) -> dict[str, Any]:
    """The echo reply: the public input keys, ``echo`` and ``data`` (as echo_agent)."""
    public = {key: value for key, value in step.items() if not key.startswith("_")}
    data = public.get("data", dict(public))
    return {**public, "echo": True, "data": data}


def agent_card(base_url: str, protocol_version: str) -> dict[str, Any]:
    """The agent card as JSON: one JSON-RPC interface per advertised version.

    A card that offers 0.3 also carries the v0.3 top-level fields (``url``,
    ``protocolVersion``, ``preferredTransport``), as the a2a-sdk's own cards do,
    so pre-1.0 clients can read it.
    """
    versions = ["1.0", "0.3"] if protocol_version == "both" else [protocol_version]
    card: dict[str, Any] = {
        "name": "Baton lean echo agent",
        "description": "Benchmark agent: echoes its data input as a completed task.",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": base_url, "protocolBinding": "JSONRPC", "protocolVersion": version}
            for version in versions
        ],
        "capabilities": {"streaming": False, "pushNotifications": False},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [
            {
                "id": "echo",
                "name": "Echo",
                "description": "Returns the input object with echo=true.",
                "tags": ["benchmark"],
            }
        ],
    }
    if "0.3" in versions:
        card.update(url=base_url, protocolVersion="0.3.0", preferredTransport="JSONRPC")
    return card


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class LeanAgent:
    """The agent logic, independent of the HTTP server that carries it."""

    def __init__(
        self, base_url: str, protocol_version: str, *, record_timings: bool = False
    ) -> None:
        """Serve a card naming ``base_url``; ``protocol_version`` is both, 1.0 or 0.3.

        ``record_timings`` keeps arrival and departure times per idempotency key.
        """
        self._card = _dumps(agent_card(base_url, protocol_version))
        # Only the advertised dialects are served, as a real agent of that
        # version would: a client that picked the wrong one gets -32601.
        self._v1 = protocol_version in ("both", "1.0")
        self._v03 = protocol_version in ("both", "0.3")
        self._health = _dumps({"status": "ok"})
        # Counter ids: unique per process without uuid4's os.urandom per call.
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        # task id -> (context id, output); insertion-ordered, oldest evicted.
        self._tasks: dict[str, tuple[str, Any]] = {}
        # idempotency key -> [arrived, departed] (monotonic ns); None: not recording.
        self._timings: dict[str, list[int]] | None = {} if record_timings else None
        # idempotency key -> arrivals of every call, for keys called more than once.
        self._repeats: dict[str, list[int]] = {}
        self._timings_dropped = 0
        self._timed_key: str | None = None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one HTTP request; ``headers`` have lower-case names."""
        if self._timings is None:
            return self._handle(method, target, headers, body)
        arrived = time.monotonic_ns()
        self._timed_key = None
        response = self._handle(method, target, headers, body)
        # Both servers write the answer right after this returns, without yielding:
        # "departed" is within microseconds of the bytes reaching the socket.
        if self._timed_key is not None:
            earlier = self._timings.get(self._timed_key)
            if earlier is not None:
                self._repeats.setdefault(self._timed_key, [earlier[0]]).append(arrived)
            if len(self._timings) < _MAX_TIMINGS:
                self._timings[self._timed_key] = [arrived, time.monotonic_ns()]
            else:
                self._timings_dropped += 1
        return response

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        path = target.split("?", 1)[0]
        if path == RPC_PATH:
            if method != "POST":
                return 405, _dumps({"error": "use POST"})
            return 200, self._rpc(headers, body)
        if path == TIMINGS_PATH and self._timings is not None:
            if method == "DELETE":
                self._timings.clear()
                self._repeats.clear()
                self._timings_dropped = 0
                return 200, _dumps({"cleared": True})
            if method not in ("GET", "HEAD"):
                return 405, _dumps({"error": "use GET or DELETE"})
            return 200, _dumps(
                {
                    "clock": "monotonic_ns",
                    "dropped": self._timings_dropped,
                    "timings": self._timings,
                    "repeats": self._repeats,
                }
            )
        if path in (CARD_PATH, HEALTH_PATH):
            if method not in ("GET", "HEAD"):
                return 405, _dumps({"error": "use GET"})
            return 200, self._card if path == CARD_PATH else self._health
        return 404, _dumps({"error": "not found"})

    def _rpc(self, headers: dict[str, str], body: bytes) -> bytes:
        try:
            request = json.loads(body)
        except ValueError as error:
            return _rpc_error(None, _PARSE_ERROR, f"Invalid JSON payload: {error}")
        if not isinstance(request, dict):
            return _rpc_error(None, _INVALID_REQUEST, "Batch requests are not supported")
        request_id = request.get("id")
        method = request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _rpc_error(request_id, _INVALID_REQUEST, "Invalid Request")
        params = request.get("params", {})
        try:
            if not isinstance(params, dict):
                raise _RpcError(_INVALID_PARAMS, "params must be an object")
            result = self._dispatch(method, params, headers)
        except _RpcError as error:
            return _rpc_error(request_id, error.code, error.message)
        return _dumps({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _dispatch(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> Any:
        if self._v1 and method in (_V1_SEND, _V1_GET, _V1_CANCEL):
            _require_v1(headers)
            if method == _V1_SEND:
                return {"task": self._send(params, legacy=False)}
            if method == _V1_GET:
                return self._task(_task_id(params), legacy=False)
            return self._cancel(_task_id(params))
        if self._v03 and method in (_V03_SEND, _V03_GET, _V03_CANCEL):
            if method == _V03_SEND:
                return self._send(params, legacy=True)
            if method == _V03_GET:
                return self._task(_task_id(params), legacy=True)
            return self._cancel(_task_id(params))
        if method in _UNSUPPORTED_METHODS:
            raise _RpcError(_UNSUPPORTED_OPERATION, f"{method} is not supported by this agent")
        raise _RpcError(_METHOD_NOT_FOUND, "Method not found")

    def _send(self, params: dict[str, Any], *, legacy: bool) -> dict[str, Any]:
        message = params.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
            raise _RpcError(_INVALID_PARAMS, "params.message with parts is required")
        step: dict[str, Any] = {}
        for part in message["parts"]:
            if isinstance(part, dict) and isinstance(part.get("data"), dict):
                step = part["data"]
                break
        if self._timings is not None:
            metadata = message.get("metadata")
            if isinstance(metadata, dict):
                key = metadata.get(IDEMPOTENCY_METADATA_KEY)
                if isinstance(key, str):
                    self._timed_key = key
        task_id = f"{self._id_prefix}-{next(self._ids)}"
        context_id = message.get("contextId")
        if not isinstance(context_id, str) or not context_id:
            context_id = f"{task_id}-ctx"
        output = echo_output(step)
        self._tasks[task_id] = (context_id, output)
        if len(self._tasks) > _KEPT_TASKS:
            del self._tasks[next(iter(self._tasks))]
        return _task_json(task_id, context_id, output, legacy=legacy)

    def _task(self, task_id: str, *, legacy: bool) -> dict[str, Any]:
        kept = self._tasks.get(task_id)
        if kept is None:
            raise _RpcError(_TASK_NOT_FOUND, "Task not found")
        return _task_json(task_id, kept[0], kept[1], legacy=legacy)

    def _cancel(self, task_id: str) -> dict[str, Any]:
        if task_id not in self._tasks:
            raise _RpcError(_TASK_NOT_FOUND, "Task not found")
        # Every task here completed before its id was known: too late to cancel.
        raise _RpcError(_TASK_NOT_CANCELABLE, "Task cannot be canceled")


def _require_v1(headers: dict[str, str]) -> None:
    # As the a2a-sdk does: no header means 0.3, and the v1.0 methods want 1.x.
    version = headers.get("a2a-version") or "0.3"
    if version.split(".", 1)[0] != "1":
        raise _RpcError(
            _VERSION_NOT_SUPPORTED,
            f"A2A version '{version}' is not supported by this handler. Expected version '1.0'.",
        )


def _task_id(params: dict[str, Any]) -> str:
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise _RpcError(_INVALID_PARAMS, "params.id is required")
    return task_id


def _task_json(task_id: str, context_id: str, output: Any, *, legacy: bool) -> dict[str, Any]:
    if legacy:
        return {
            "kind": "task",
            "id": task_id,
            "contextId": context_id,
            "status": {"state": "completed"},
            "artifacts": [
                {
                    "artifactId": f"{task_id}-out",
                    "name": "output",
                    "parts": [{"kind": "data", "data": output}],
                }
            ],
        }
    return {
        "id": task_id,
        "contextId": context_id,
        "status": {"state": "TASK_STATE_COMPLETED"},
        "artifacts": [
            {"artifactId": f"{task_id}-out", "name": "output", "parts": [{"data": output}]}
        ],
    }


def _rpc_error(request_id: Any, code: int, message: str) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


# --- server 1: hand-written HTTP/1.1 on asyncio.Protocol ----------------------------


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


class _HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; answers in arrival order."""

    def __init__(self, agent: LeanAgent, delay_s: float = 0.0) -> None:
        self._agent = agent
        self._delay_s = delay_s
        # When the last delayed answer of this connection is due: answers keep their order.
        self._last_due = 0.0
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and self._handle_one():
            pass

    def _handle_one(self) -> bool:
        """Answer the first complete request in the buffer; False if there is none."""
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self._buffer) > _MAX_HEAD_BYTES:
                self._reply(431, b"", keep_alive=False)
            return False
        lines = self._buffer[:head_end].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._reply(400, b"", keep_alive=False)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._reply(501, b"", keep_alive=False)
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY_BYTES:
            self._reply(413 if length > 0 else 400, b"", keep_alive=False)
            return False
        request_end = head_end + 4 + length
        if len(self._buffer) < request_end:
            return False
        body = bytes(self._buffer[head_end + 4 : request_end])
        del self._buffer[:request_end]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        status, payload = self._agent.handle(method, target, headers, body)
        payload = b"" if method == "HEAD" else payload
        if self._delay_s and method == "POST":
            loop = asyncio.get_running_loop()
            self._last_due = max(loop.time() + self._delay_s, self._last_due + 1e-6)
            loop.call_at(self._last_due, self._reply_later, status, payload, keep_alive)
        else:
            self._reply(status, payload, keep_alive=keep_alive)
        return keep_alive

    def _reply_later(self, status: int, payload: bytes, keep_alive: bool) -> None:
        if self._transport is not None:  # the client may have gone meanwhile
            self._reply(status, payload, keep_alive=keep_alive)

    def _reply(self, status: int, payload: bytes, *, keep_alive: bool) -> None:
        assert self._transport is not None
        self._transport.write(
            b"".join(
                (
                    _status_line(status),
                    b"Content-Type: application/json\r\nContent-Length: ",
                    str(len(payload)).encode(),
                    b"\r\n" if keep_alive else b"\r\nConnection: close\r\n",
                    b"\r\n",
                    payload,
                )
            )
        )
        if not keep_alive:
            self._transport.close()
            self._transport = None


async def _serve_asyncio(
    sock: socket.socket, agent: LeanAgent, stop: asyncio.Event, delay_s: float
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpProtocol(agent, delay_s), sock=sock)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


# --- server 2: the same logic as a raw ASGI app under uvicorn -----------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def asgi_app(agent: LeanAgent) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A bare ASGI application (no framework) serving ``agent``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        status, payload = agent.handle(scope["method"], scope["path"], headers, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


async def _serve_uvicorn(sock: socket.socket, agent: LeanAgent, stop: asyncio.Event) -> None:
    import uvicorn  # imported here: only this server needs it

    config = uvicorn.Config(asgi_app(agent), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError("uvicorn stopped during startup")
        await asyncio.sleep(0.005)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    await stop.wait()
    server.should_exit = True
    await serving


# --- process entry point -------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    # Bound before the agent exists so `--port 0` works: the card names the port.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY
    # only on accepted sockets that say so. Without it Nagle holds a response
    # written in two parts (uvicorn writes headers, then body) until the
    # client's delayed ACK: ~40 ms per request at low concurrency.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _stop_when_stdin_closes(stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    # The parent holds our stdin pipe; EOF means it died without stopping us.
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT/SIGTERM (or stdin EOF with ``--exit-on-stdin-eof``)."""
    sock = _bind(args.host, args.port)
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    base_url = args.public_url or f"http://{url_host}:{sock.getsockname()[1]}/"
    agent = LeanAgent(base_url, args.protocol_version, record_timings=args.record_timings)
    stop = asyncio.Event()
    if args.exit_on_stdin_eof:
        _stop_when_stdin_closes(stop, asyncio.get_running_loop())
    if args.server == "uvicorn":
        await _serve_uvicorn(sock, agent, stop)
    else:
        await _serve_asyncio(sock, agent, stop, args.delay_ms / 1000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--public-url", help="URL for the card (default: http://HOST:PORT/)")
    parser.add_argument("--protocol-version", choices=PROTOCOL_VERSIONS, default="both")
    parser.add_argument("--server", choices=SERVERS, default="asyncio")
    parser.add_argument(
        "--record-timings",
        action="store_true",
        help="record arrival/departure per idempotency key; serve them at /timings",
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="hold every JSON-RPC answer this long (asyncio server only)",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (set by LeanAgentProcess to avoid orphans)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))
    return 0


# --- running it as a subprocess (tests, benchmarks) ---------------------------------


class LeanAgentProcess:
    """One lean-agent subprocess: start it, learn its URL, stop it.

    Usage::

        with LeanAgentProcess() as agent:
            url = agent.start(protocol_version="1.0")
    """

    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 20.0) -> None:
        """Prepare (but do not start) an agent bound to ``host``."""
        self.host = host
        self.startup_timeout = startup_timeout
        self.url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(
        self,
        *,
        protocol_version: Literal["both", "1.0", "0.3"] = "both",
        server: Literal["asyncio", "uvicorn"] = "asyncio",
        port: int = 0,
        record_timings: bool = False,
        delay_ms: float = 0.0,
    ) -> str:
        """Start the agent and wait until it serves; return its base URL.

        ``port`` 0 lets the agent pick a free port; pass a fixed one to bring an
        agent back on the URL a stopped one had. ``record_timings`` serves
        ``/timings`` and ``delay_ms`` holds every answer (see the module docstring).
        """
        if self._process is not None:
            raise RuntimeError("agent already started; stop() it first")
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--host",
            self.host,
            "--port",
            str(port),
            "--protocol-version",
            protocol_version,
            "--server",
            server,
            "--exit-on-stdin-eof",
            *(["--record-timings"] if record_timings else []),
            *(["--delay-ms", str(delay_ms)] if delay_ms else []),
        ]
        # A file, not a pipe: nobody drains stderr while the agent runs.
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            port = self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{url_host}:{port}/"
        return self.url

    def _wait_ready(self, process: subprocess.Popen[str]) -> int:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = process.stdout

        def pump() -> None:
            # Keep draining after READY so the pipe never fills; the pipe is
            # this thread's alone, so it closes it at EOF (the agent exited).
            with stdout:
                for line in stdout:
                    lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="lean-agent-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"lean agent exited during startup\n{self.stderr_text()}")
            if line.startswith("READY "):
                return int(line.split()[1])
        raise RuntimeError(f"lean agent not ready after {self.startup_timeout}s")

    @property
    def pid(self) -> int | None:
        """The agent's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the agent (SIGTERM, then SIGKILL); safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdin is not None:
                process.stdin.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.url = None

    def stderr_text(self) -> str:
        """Everything the agent wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read()
        self._stderr.seek(0, os.SEEK_END)
        return text

    def __enter__(self) -> Self:
        """Return self; call :meth:`start` inside the block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the agent if it is still running."""
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
