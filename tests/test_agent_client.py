"""The agent client against real processes and sockets.

Peers: the echo agent (a real a2a-sdk agent, v1.0 and v0.3, in its own process),
the lean benchmark agent (bench/lean_agent.py, in its own process), and a
scripted stdlib HTTP server in a thread, for answers no well-behaved agent gives
on demand (HTTP errors, JSON-RPC errors, odd cards, tasks that need polling) and
for seeing exactly what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socketserver
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Event, Lock, Thread
from typing import Any

import aiohttp
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest
from google.protobuf import json_format, struct_pb2

from baton_server.agents.client import (
    IDEMPOTENCY_METADATA_KEY,
    REASON_AGENT_CARD,
    REASON_BAD_RESPONSE,
    REASON_CONNECTION,
    REASON_HTTP_STATUS,
    REASON_INPUT_REQUIRED,
    REASON_RPC_ERROR,
    REASON_TASK_FAILED,
    REASON_TASK_REJECTED,
    REASON_TIMEOUT,
    AgentCallError,
    AgentClient,
    AgentEndpoint,
)
from baton_server.limits import MAX_AGENT_ANSWER_BYTES
from bench.lean_agent import LeanAgentProcess
from tests.agents.process import AgentProcess, ProtocolVersion, unused_loopback_port

TIMEOUT_MS = 5000
CARD_PATH = "/.well-known/agent-card.json"
# Every JSON type, with integers where protobuf-based agents turn them to floats.
STEP_INPUT: dict[str, Any] = {
    "count": 3,
    "negative": -7,
    "largest_exact": 2**53,
    "ratio": 2.5,
    "flag": True,
    "nothing": None,
    "text": "héllo",
    "nested": {"ids": [1, 2, 3], "deeper": {"n": 10}},
}


def echoed(step: dict[str, Any]) -> dict[str, Any]:
    """What the echo agents answer for ``step``."""
    public = {key: value for key, value in step.items() if not key.startswith("_")}
    return {**public, "echo": True, "data": public.get("data", dict(public))}


def a2a(url: str, *, timeout_ms: int = TIMEOUT_MS, **headers: str) -> AgentEndpoint:
    """An A2A endpoint with the test defaults."""
    return AgentEndpoint(url=url, protocol="a2a", timeout_ms=timeout_ms, headers=headers)


def key() -> str:
    """A fresh idempotency key."""
    return f"run-{uuid.uuid4().hex[:8]}:step-1:attempt-1"


# --- a scripted HTTP peer -----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An answer of the scripted server; ``body`` is sent as JSON unless bytes."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: Sent in 64 KiB chunks without a Content-Length.
    chunked: bool = False


@dataclass(frozen=True)
class Seen:
    """A request the scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def rpc_method(self) -> str | None:
        """The JSON-RPC method, for JSON-RPC requests."""
        return self.body.get("method") if isinstance(self.body, dict) else None


Route = Reply | Callable[[Seen], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.lock = Lock()
        self.release = Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up closes the socket under us: expected


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        self._answer(body)

    def _answer(self, body: Any) -> None:
        path = self.path.split("?", 1)[0]
        seen = Seen(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.server.lock:
            self.server.seen.append(seen)
        routes = self.server.routes
        route = routes.get(f"RPC {seen.rpc_method}") or routes.get(f"{self.command} {path}")
        reply = Reply(404, {"error": "not found"}) if route is None else route
        if not isinstance(reply, Reply):
            reply = reply(seen)
        if reply.delay_s:
            self.server.release.wait(reply.delay_s)
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(payload), 65536):
                chunk = payload[start : start + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ScriptedServer:
    """A loopback HTTP server answering scripted replies, in a thread.

    Routes are keyed ``"GET /path"``, ``"POST /path"`` or, for JSON-RPC
    requests, ``"RPC <method>"`` (which wins over the path).
    """

    def __init__(self) -> None:
        """Create the server; add routes, then enter it."""
        self._server = _Server()
        self._thread = Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL (no trailing slash)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def routes(self) -> dict[str, Route]:
        """The routes; may be changed while serving."""
        return self._server.routes

    @property
    def seen(self) -> list[Seen]:
        """Requests received so far, in order."""
        with self._server.lock:
            return list(self._server.seen)

    def count(self, method: str, path: str) -> int:
        """How many ``method path`` requests arrived."""
        return sum(1 for seen in self.seen if (seen.method, seen.path) == (method, path))

    def rpc_calls(self) -> list[Seen]:
        """The JSON-RPC requests received so far."""
        return [seen for seen in self.seen if seen.rpc_method is not None]

    def serve_card(self, version: str = "1.0", rpc_path: str = "/rpc") -> None:
        """Serve a card naming one JSON-RPC interface at ``rpc_path``."""
        self.routes[f"GET {CARD_PATH}"] = Reply(body=card(f"{self.url}{rpc_path}", version))

    def __enter__(self) -> ScriptedServer:
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop serving and release stalled handlers."""
        self._server.release.set()
        self._server.shutdown()
        self._server.server_close()


def card(rpc_url: str, version: str = "1.0") -> dict[str, Any]:
    """A minimal v1.0-style card with one JSON-RPC interface."""
    return {
        "name": "scripted",
        "description": "scripted agent",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": rpc_url, "protocolBinding": "JSONRPC", "protocolVersion": version}
        ],
        "capabilities": {},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [],
    }


def rpc_result(result: Any) -> Callable[[Seen], Reply]:
    """A route answering a JSON-RPC success with ``result``."""
    return lambda seen: Reply(body={"jsonrpc": "2.0", "id": seen.body["id"], "result": result})


def rpc_error(code: int, message: str, data: Any = None) -> Callable[[Seen], Reply]:
    """A route answering a JSON-RPC error."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return lambda seen: Reply(body={"jsonrpc": "2.0", "id": seen.body["id"], "error": error})


def v1_task(state: str, *, artifacts: Any = None, message_text: str | None = None) -> Any:
    """A v1.0 task as JSON."""
    status: dict[str, Any] = {"state": f"TASK_STATE_{state}"}
    if message_text is not None:
        status["message"] = {
            "messageId": "m-1",
            "role": "ROLE_AGENT",
            "parts": [{"text": message_text}],
        }
    task: dict[str, Any] = {"id": "task-1", "contextId": "ctx-1", "status": status}
    if artifacts is not None:
        task["artifacts"] = artifacts
    return task


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["1.0", "0.3"])
def echo_agent(request: pytest.FixtureRequest) -> Iterator[tuple[str, ProtocolVersion]]:
    """(url, version) of a real a2a-sdk echo agent, once per protocol version."""
    version: ProtocolVersion = request.param
    with AgentProcess() as agent:
        yield agent.start(protocol_version=version), version


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A fresh HTTP client per test."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A fresh aiohttp session per test, for the agent client."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(session: aiohttp.ClientSession) -> AgentClient:
    """An agent client on the test's aiohttp session."""
    return AgentClient(session)


async def task_state(
    http: httpx.AsyncClient, url: str, version: ProtocolVersion, task_id: str
) -> str:
    """Ask the agent directly (raw JSON-RPC) for a task's state."""
    method = "GetTask" if version == "1.0" else "tasks/get"
    response = await http.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": {"id": task_id}},
        headers={"A2A-Version": version},
    )
    return str(response.json()["result"]["status"]["state"])


# --- the real a2a-sdk agent, v1.0 and v0.3 --------------------------------------------


async def test_echo_output_equals_input_and_ints_stay_ints(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent

    output = await client.call(a2a(url), STEP_INPUT, idempotency_key=key())

    assert output == echoed(STEP_INPUT)
    # The SDK agent sends every number back as a float; == would not notice.
    assert type(output["count"]) is int
    assert type(output["largest_exact"]) is int
    assert [type(n) for n in output["nested"]["ids"]] == [int, int, int]
    assert type(output["data"]["nested"]["deeper"]["n"]) is int
    assert type(output["ratio"]) is float
    assert output["flag"] is True


async def test_failed_task_is_a_retryable_error_with_the_agents_text(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent

    with pytest.raises(AgentCallError) as caught:
        await client.call(a2a(url), {"_mode": "fail"}, idempotency_key=key())

    error = caught.value
    assert str(error) == "Agent task failed: intentional failure"
    assert (error.retryable, error.reason, error.status_code) == (True, REASON_TASK_FAILED, None)
    assert error.task_id


async def test_slow_agent_times_out_within_budget(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent

    started = time.perf_counter()
    with pytest.raises(AgentCallError) as caught:
        await client.call(
            a2a(url, timeout_ms=300), {"_mode": "sleep", "_sleep_ms": 5000}, idempotency_key=key()
        )
    elapsed = time.perf_counter() - started

    assert str(caught.value) == "Timed out after 300ms"
    assert (caught.value.retryable, caught.value.reason) == (True, REASON_TIMEOUT)
    assert 0.29 <= elapsed < 0.3 + 0.5


async def test_running_task_is_polled_to_completion_and_reported(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent
    task_ids: list[str] = []
    step = {"_mode": "sleep", "_sleep_ms": 300, "n": 1}

    output = await client.call(a2a(url), step, idempotency_key=key(), on_task=task_ids.append)

    assert output == echoed(step)
    assert len(task_ids) == 1


async def test_timeout_while_polling_carries_the_task_id(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent
    task_ids: list[str] = []

    with pytest.raises(AgentCallError) as caught:
        await client.call(
            a2a(url, timeout_ms=300),
            {"_mode": "sleep", "_sleep_ms": 5000},
            idempotency_key=key(),
            on_task=task_ids.append,
        )

    assert caught.value.reason == REASON_TIMEOUT
    assert caught.value.task_id == task_ids[0]


async def test_cancelling_a_blocking_call_is_prompt_and_the_client_stays_usable(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent
    endpoint = a2a(url, timeout_ms=30_000)
    await client.call(endpoint, {"warm": 1}, idempotency_key=key())  # card cached
    call = asyncio.create_task(
        client.call(endpoint, {"_mode": "sleep", "_sleep_ms": 20_000}, idempotency_key=key())
    )
    await asyncio.sleep(0.3)  # the send is in flight, the agent sleeping

    started = time.perf_counter()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert await client.call(endpoint, {"after": 1}, idempotency_key=key()) == echoed({"after": 1})


async def test_cancel_reaches_the_agent_after_the_call_is_cancelled(
    http: httpx.AsyncClient, client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, version = echo_agent
    endpoint = a2a(url, timeout_ms=30_000)
    task_ids: list[str] = []
    got_task = asyncio.Event()

    def on_task(task_id: str) -> None:
        task_ids.append(task_id)
        got_task.set()

    call = asyncio.create_task(
        client.call(
            endpoint,
            {"_mode": "sleep", "_sleep_ms": 20_000},
            idempotency_key=key(),
            on_task=on_task,
        )
    )
    await asyncio.wait_for(got_task.wait(), 5)
    assert await task_state(http, url, version, task_ids[0]) in ("TASK_STATE_WORKING", "working")

    started = time.perf_counter()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.perf_counter() - started < 1.0

    await client.cancel(endpoint, task_ids[0])

    assert await task_state(http, url, version, task_ids[0]) in ("TASK_STATE_CANCELED", "canceled")


async def test_cancel_is_best_effort_and_never_raises(
    client: AgentClient, echo_agent: tuple[str, ProtocolVersion]
) -> None:
    url, _ = echo_agent
    dead = f"http://127.0.0.1:{unused_loopback_port()}/"

    await client.cancel(a2a(url), "no-such-task")
    await client.cancel(a2a(dead), "task-1")
    await client.cancel(AgentEndpoint(dead, "http", TIMEOUT_MS), "task-1")


# --- transport failures ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["a2a", "http"])
async def test_dead_url_is_a_retryable_connection_error(client: AgentClient, protocol: str) -> None:
    url = f"http://127.0.0.1:{unused_loopback_port()}/"

    with pytest.raises(AgentCallError) as caught:
        await client.call(AgentEndpoint(url, protocol, TIMEOUT_MS), {}, idempotency_key=key())

    error = caught.value
    assert (error.retryable, error.reason, error.status_code) == (True, REASON_CONNECTION, None)
    assert str(error).startswith("Could not connect to http://127.0.0.1:")
    assert str(error).endswith(": connection refused")


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
@pytest.mark.parametrize("protocol", ["a2a", "http"])
async def test_http_status_decides_retryability(
    client: AgentClient, protocol: str, status: int, retryable: bool
) -> None:
    with ScriptedServer() as server:
        # For A2A the card is fine and the JSON-RPC endpoint answers the status.
        server.serve_card(rpc_path="/agent")
        server.routes["POST /agent"] = Reply(status, {"error": "nope"}, {"Retry-After": "2"})
        with pytest.raises(AgentCallError) as caught:
            await client.call(
                AgentEndpoint(
                    f"{server.url}/agent" if protocol == "http" else server.url,
                    protocol,
                    TIMEOUT_MS,
                ),
                {"x": 1},
                idempotency_key=key(),
            )

    error = caught.value
    assert (error.status_code, error.retryable, error.reason) == (
        status,
        retryable,
        REASON_HTTP_STATUS,
    )
    assert str(error) == f'HTTP {status} from {server.url}/agent: {{"error": "nope"}}'
    assert error.retry_after_s == (2.0 if retryable else None)


async def test_unreachable_agent_card_status_is_reported(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes[f"GET {CARD_PATH}"] = Reply(503, b"busy", {"Content-Type": "text/plain"})
        with pytest.raises(AgentCallError) as caught:
            await client.call(a2a(server.url), {}, idempotency_key=key())

    assert str(caught.value) == f"HTTP 503 from {server.url}{CARD_PATH}: busy"
    assert caught.value.retryable is True


async def test_redirect_is_not_followed(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes["POST /step"] = Reply(307, b"", {"Location": "/elsewhere"})
        with pytest.raises(AgentCallError) as caught:
            await client.call(
                AgentEndpoint(f"{server.url}/step", "http", TIMEOUT_MS), {}, idempotency_key=key()
            )

    assert str(caught.value) == (
        f"HTTP 307 from {server.url}/step (redirect to /elsewhere not followed)"
    )
    assert caught.value.retryable is False
    assert [seen.path for seen in server.seen] == ["/step"]


class _DroppingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drop: set[int]) -> None:
        super().__init__(("127.0.0.1", 0), _DroppingHandler)
        self.drop = drop
        self.lock = Lock()
        self.requests = 0
        self.connections = 0


class _DroppingHandler(socketserver.StreamRequestHandler):
    """HTTP/1.1 keep-alive; closes the connection unanswered on chosen requests."""

    server: _DroppingTCPServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        while True:
            head = b""
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                head += line
            if not head:
                return
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            self.rfile.read(int(length.group(1)) if length else 0)
            with self.server.lock:
                index = self.server.requests
                self.server.requests += 1
            if index in self.server.drop:
                return  # as an agent closing an idle connection under our request
            body = b'{"ok": true}'
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )


@contextlib.contextmanager
def dropping_server(drop: set[int]) -> Iterator[_DroppingTCPServer]:
    """A server that drops the requests whose 0-based index is in ``drop``."""
    server = _DroppingTCPServer(drop)
    thread = Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_connection_dropped_under_a_reused_request_is_resent_once(
    client: AgentClient,
) -> None:
    with dropping_server({1}) as server:
        endpoint = AgentEndpoint(
            f"http://127.0.0.1:{server.server_address[1]}/step", "http", TIMEOUT_MS
        )
        first = await client.call(endpoint, {}, idempotency_key=key())
        # Reuses the pooled connection, which the server then drops unanswered.
        second = await client.call(endpoint, {}, idempotency_key=key())

    assert first == second == {"ok": True}
    assert (server.requests, server.connections) == (3, 2)


async def test_connection_dropped_twice_is_a_retryable_error(client: AgentClient) -> None:
    with dropping_server({0, 1, 2}) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/step"
        with pytest.raises(AgentCallError) as caught:
            await client.call(AgentEndpoint(url, "http", TIMEOUT_MS), {}, idempotency_key=key())

    assert (caught.value.retryable, caught.value.reason) == (True, REASON_CONNECTION)
    assert str(caught.value) == (
        f"Connection to {url} failed: Server disconnected without sending a response."
    )
    assert server.requests == 2


# --- protocol "http" --------------------------------------------------------------------


async def test_http_protocol_posts_the_payload_with_credentials_and_idempotency_key(
    client: AgentClient,
) -> None:
    with ScriptedServer() as server:
        server.routes["POST /steps/summarise"] = Reply(200, {"summary": "ok", "tokens": 12.0})
        idempotency_key = key()
        output = await client.call(
            AgentEndpoint(
                f"{server.url}/steps/summarise",
                "http",
                TIMEOUT_MS,
                {"Authorization": "Bearer s3cret", "X-API-Key": "k-123"},
            ),
            STEP_INPUT,
            idempotency_key=idempotency_key,
            attempt=2,
        )

    assert output == {"summary": "ok", "tokens": 12}
    assert type(output["tokens"]) is int
    (seen,) = server.seen
    assert (seen.method, seen.body) == ("POST", STEP_INPUT)
    assert seen.headers["authorization"] == "Bearer s3cret"
    assert seen.headers["x-api-key"] == "k-123"
    assert seen.headers["idempotency-key"] == idempotency_key
    assert seen.headers["baton-attempt"] == "2"
    assert seen.headers["content-type"] == "application/json"


async def test_http_protocol_empty_answer_is_none(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes["POST /step"] = Reply(204, b"")
        output = await client.call(
            AgentEndpoint(f"{server.url}/step", "http", TIMEOUT_MS), {}, idempotency_key=key()
        )

    assert output is None


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_over_the_size_limit_is_a_permanent_error_naming_it(
    client: AgentClient, chunked: bool
) -> None:
    # Just at the limit is an answer; one byte more is not (with or without a length).
    at_limit = b'"' + b"x" * (MAX_AGENT_ANSWER_BYTES - 2) + b'"'
    with ScriptedServer() as server:
        server.routes["POST /fits"] = Reply(200, at_limit)
        server.routes["POST /big"] = Reply(200, at_limit + b" ", chunked=chunked)
        fits = await client.call(
            AgentEndpoint(f"{server.url}/fits", "http", TIMEOUT_MS), {}, idempotency_key=key()
        )
        with pytest.raises(AgentCallError) as raised:
            await client.call(
                AgentEndpoint(f"{server.url}/big", "http", TIMEOUT_MS), {}, idempotency_key=key()
            )

    assert len(fits) == MAX_AGENT_ANSWER_BYTES - 2
    assert "larger than the 1 MiB limit of an answer" in str(raised.value)
    assert (raised.value.retryable, raised.value.reason) == (False, REASON_BAD_RESPONSE)


async def test_an_answer_holding_a_nul_character_is_a_permanent_error(
    client: AgentClient,
) -> None:
    # PostgreSQL cannot store U+0000 in text or jsonb: refused at the door, by path of
    # arrival (plain HTTP, an A2A artifact); an escaped backslash before "u0000" is text.
    with ScriptedServer() as server:
        server.serve_card()
        server.routes["POST /nul"] = Reply(200, {"text": "a\u0000b"})
        server.routes["POST /nul-key"] = Reply(200, {"k\u0000": 1})
        server.routes["POST /escaped"] = Reply(200, {"text": "\\u0000"})
        server.routes["POST /rpc"] = rpc_result(
            {"task": v1_task("COMPLETED", artifacts=[{"parts": [{"data": ["ok", "\u0000"]}]}])}
        )
        errors = []
        for path in ("nul", "nul-key"):
            with pytest.raises(AgentCallError) as raised:
                await client.call(
                    AgentEndpoint(f"{server.url}/{path}", "http", TIMEOUT_MS),
                    {},
                    idempotency_key=key(),
                )
            errors.append(raised.value)
        with pytest.raises(AgentCallError) as raised:
            await client.call(a2a(server.url), {}, idempotency_key=key())
        errors.append(raised.value)
        escaped = await client.call(
            AgentEndpoint(f"{server.url}/escaped", "http", TIMEOUT_MS), {}, idempotency_key=key()
        )

    for error in errors:
        assert "answer holds a NUL character" in str(error)
        assert (error.retryable, error.reason) == (False, REASON_BAD_RESPONSE)
    assert escaped == {"text": "\\u0000"}


async def test_an_error_body_with_nul_bytes_gives_a_storable_message(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes["POST /step"] = Reply(500, b"broken\x00body")
        with pytest.raises(AgentCallError) as raised:
            await client.call(
                AgentEndpoint(f"{server.url}/step", "http", TIMEOUT_MS), {}, idempotency_key=key()
            )

    assert "\x00" not in str(raised.value)
    assert "broken\\0body" in str(raised.value)


# --- A2A wire details, against the scripted peer ----------------------------------------


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_a2a_request_carries_headers_key_and_one_data_part(
    client: AgentClient, version: str
) -> None:
    result: Any
    if version == "1.0":
        result = {"task": v1_task("COMPLETED", artifacts=[{"parts": [{"data": {"ok": 1}}]}])}
    else:
        result = {
            "kind": "task",
            "id": "t-1",
            "contextId": "c-1",
            "status": {"state": "completed"},
            "artifacts": [{"parts": [{"kind": "data", "data": {"ok": 1}}]}],
        }
    with ScriptedServer() as server:
        server.serve_card(version)
        server.routes["POST /rpc"] = rpc_result(result)
        idempotency_key = key()
        output = await client.call(
            a2a(server.url, Authorization="Bearer t0ken"),
            {"x": 1},
            idempotency_key=idempotency_key,
        )

    assert output == {"ok": 1}
    card_request, rpc_request = server.seen
    assert card_request.path == CARD_PATH
    assert card_request.headers["authorization"] == "Bearer t0ken"
    assert rpc_request.path == "/rpc"
    assert rpc_request.headers["authorization"] == "Bearer t0ken"
    assert rpc_request.headers["a2a-version"] == version
    params = rpc_request.body["params"]
    message = params["message"]
    assert message["messageId"] == f"baton-{idempotency_key}/1"
    assert message["metadata"] == {IDEMPOTENCY_METADATA_KEY: idempotency_key, "baton_attempt": 1}
    if version == "1.0":
        assert rpc_request.rpc_method == "SendMessage"
        assert message["role"] == "ROLE_USER"
        assert message["parts"] == [{"data": {"x": 1}}]
        assert "returnImmediately" not in params["configuration"]
    else:
        assert rpc_request.rpc_method == "message/send"
        assert message["role"] == "user"
        assert message["parts"] == [{"kind": "data", "data": {"x": 1}}]
        assert params["configuration"]["blocking"] is True


async def test_old_style_card_is_read_the_v03_way(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes[f"GET {CARD_PATH}"] = Reply(
            body={
                "name": "old",
                "url": f"{server.url}/legacy-rpc",
                "preferredTransport": "JSONRPC",
                "protocolVersion": "0.3.0",
                "capabilities": {},
                "skills": [],
            }
        )
        server.routes["RPC message/send"] = rpc_result(
            {
                "kind": "message",
                "messageId": "m",
                "role": "agent",
                "parts": [{"kind": "text", "text": "hi"}],
            }
        )
        output = await client.call(a2a(server.url), {}, idempotency_key=key())

    assert output == "hi"
    assert [seen.path for seen in server.rpc_calls()] == ["/legacy-rpc"]


async def test_card_preferring_v1_among_several_interfaces(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes[f"GET {CARD_PATH}"] = Reply(
            body={
                "name": "multi",
                "supportedInterfaces": [
                    {
                        "url": f"{server.url}/grpc",
                        "protocolBinding": "GRPC",
                        "protocolVersion": "1.0",
                    },
                    {
                        "url": f"{server.url}/v03",
                        "protocolBinding": "JSONRPC",
                        "protocolVersion": "0.3",
                    },
                    {
                        "url": "/v1",
                        "protocolBinding": "JSONRPC",
                        "protocolVersion": "1.0.0",
                        "tenant": "acme",
                    },
                ],
            }
        )
        server.routes["POST /v1"] = rpc_result({"message": {"parts": [{"data": [1, 2]}]}})
        output = await client.call(a2a(server.url), {}, idempotency_key=key())

    assert output == [1, 2]
    (rpc_request,) = server.rpc_calls()
    # A relative interface URL resolves against the card's; the tenant travels along.
    assert rpc_request.path == "/v1"
    assert rpc_request.body["params"]["tenant"] == "acme"


@pytest.mark.parametrize(
    "card_body",
    [
        {
            "name": "rest only",
            "supportedInterfaces": [
                {"url": "http://x/", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
            ],
        },
        {
            "name": "from the future",
            "supportedInterfaces": [
                {"url": "http://x/", "protocolBinding": "JSONRPC", "protocolVersion": "2.0"}
            ],
        },
        {"name": "no interfaces at all"},
        ["not", "an", "object"],
    ],
)
async def test_unusable_card_is_a_permanent_error(client: AgentClient, card_body: Any) -> None:
    with ScriptedServer() as server:
        server.routes[f"GET {CARD_PATH}"] = Reply(body=card_body)
        with pytest.raises(AgentCallError) as caught:
            await client.call(a2a(server.url), {}, idempotency_key=key())

    assert (caught.value.reason, caught.value.retryable) == (REASON_AGENT_CARD, False)
    assert str(caught.value).startswith(f"Unusable agent card at {server.url}{CARD_PATH}: ")


async def test_legacy_card_location_is_the_fallback(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes["GET /.well-known/agent.json"] = Reply(body=card(f"{server.url}/rpc"))
        server.routes["POST /rpc"] = rpc_result({"message": {"parts": [{"text": "ok"}]}})
        output = await client.call(a2a(server.url), {}, idempotency_key=key())

    assert output == "ok"
    assert [seen.path for seen in server.seen] == [CARD_PATH, "/.well-known/agent.json", "/rpc"]


@pytest.mark.parametrize(
    ("code", "retryable"), [(-32602, False), (-32600, False), (-32001, False), (-32603, True)]
)
async def test_json_rpc_error_is_reported_with_its_code(
    client: AgentClient, code: int, retryable: bool
) -> None:
    data = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "INVALID_PARAMS",
            "metadata": {"parseError": "bad\nfield"},
        }
    ]
    with ScriptedServer() as server:
        server.serve_card()
        server.routes["POST /rpc"] = rpc_error(code, "Invalid params", data)
        with pytest.raises(AgentCallError) as caught:
            await client.call(a2a(server.url), {}, idempotency_key=key())

    error = caught.value
    assert str(error) == f"JSON-RPC error {code}: Invalid params (parseError: bad field)"
    assert (error.rpc_code, error.retryable, error.reason) == (code, retryable, REASON_RPC_ERROR)


@pytest.mark.parametrize(
    ("state", "message", "reason", "retryable"),
    [
        ("REJECTED", "Agent rejected the task: not my job", REASON_TASK_REJECTED, False),
        ("INPUT_REQUIRED", "Agent requires input: not my job", REASON_INPUT_REQUIRED, False),
        ("FAILED", "Agent task failed: not my job", REASON_TASK_FAILED, True),
    ],
)
async def test_unsuccessful_task_states(
    client: AgentClient, state: str, message: str, reason: str, retryable: bool
) -> None:
    with ScriptedServer() as server:
        server.serve_card()
        server.routes["POST /rpc"] = rpc_result(
            {"task": v1_task(state, message_text="not my\njob")}
        )
        with pytest.raises(AgentCallError) as caught:
            await client.call(a2a(server.url), {}, idempotency_key=key())

    assert str(caught.value) == message
    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)
    assert caught.value.task_id == "task-1"


async def test_working_task_is_polled_until_done(client: AgentClient) -> None:
    polls: list[Seen] = []

    def get_task(seen: Seen) -> Reply:
        polls.append(seen)
        state = "WORKING" if len(polls) < 3 else "COMPLETED"
        artifacts = [{"parts": [{"data": {"done": 1.0}}]}] if state == "COMPLETED" else None
        task = v1_task(state, artifacts=artifacts)
        return Reply(body={"jsonrpc": "2.0", "id": seen.body["id"], "result": task})

    with ScriptedServer() as server:
        server.serve_card()
        server.routes["RPC SendMessage"] = rpc_result({"task": v1_task("SUBMITTED")})
        server.routes["RPC GetTask"] = get_task
        task_ids: list[str] = []
        output = await client.call(a2a(server.url), {}, idempotency_key=key())
        # the same again with on_task: the id is reported once
        polls.clear()
        await client.call(a2a(server.url), {}, idempotency_key=key(), on_task=task_ids.append)

    assert output == {"done": 1}
    assert [poll.body["params"] for poll in polls] == [{"id": "task-1", "historyLength": 0}] * 3
    assert task_ids == ["task-1"]


async def test_task_lost_while_polling_is_retryable(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.serve_card()
        server.routes["RPC SendMessage"] = rpc_result({"task": v1_task("WORKING")})
        server.routes["RPC GetTask"] = rpc_error(-32001, "Task not found")
        with pytest.raises(AgentCallError) as caught:
            await client.call(a2a(server.url), {}, idempotency_key=key())

    assert (caught.value.rpc_code, caught.value.retryable) == (-32001, True)


@pytest.mark.parametrize(
    ("artifacts", "expected"),
    [
        (
            [{"parts": [{"data": {"a": 1}}]}, {"parts": [{"data": {"b": 2}}, {"data": {"a": 3}}]}],
            {"a": 3, "b": 2},
        ),
        ([{"parts": [{"text": "hello"}]}], "hello"),
        ([{"parts": [{"text": "total:"}, {"data": 4.0}]}], ["total:", 4]),
        (
            [
                {
                    "parts": [
                        {
                            "url": "https://x/report.pdf",
                            "mediaType": "application/pdf",
                            "filename": "report.pdf",
                        }
                    ]
                }
            ],
            {
                "url": "https://x/report.pdf",
                "mediaType": "application/pdf",
                "filename": "report.pdf",
            },
        ),
        ([], None),
    ],
)
async def test_output_rule_over_artifacts_and_parts(
    client: AgentClient, artifacts: Any, expected: Any
) -> None:
    with ScriptedServer() as server:
        server.serve_card()
        server.routes["POST /rpc"] = rpc_result({"task": v1_task("COMPLETED", artifacts=artifacts)})
        output = await client.call(a2a(server.url), {}, idempotency_key=key())

    assert output == expected


async def test_v03_file_part_becomes_the_v1_shape(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.serve_card("0.3")
        server.routes["POST /rpc"] = rpc_result(
            {
                "kind": "task",
                "id": "t",
                "contextId": "c",
                "status": {"state": "completed"},
                "artifacts": [
                    {
                        "parts": [
                            {
                                "kind": "file",
                                "file": {
                                    "uri": "https://x/a.png",
                                    "name": "a.png",
                                    "mimeType": "image/png",
                                },
                            }
                        ]
                    }
                ],
            }
        )
        output = await client.call(a2a(server.url), {}, idempotency_key=key())

    assert output == {"url": "https://x/a.png", "filename": "a.png", "mediaType": "image/png"}


# --- the agent card cache -----------------------------------------------------------------


async def test_card_is_fetched_once_and_shared_by_concurrent_first_calls(
    session: aiohttp.ClientSession,
) -> None:
    client = AgentClient(session, card_ttl_s=60)
    with ScriptedServer() as server:
        server.routes[f"GET {CARD_PATH}"] = Reply(body=card(f"{server.url}/rpc"), delay_s=0.2)
        server.routes["POST /rpc"] = rpc_result({"message": {"parts": [{"data": {"ok": 1}}]}})
        first = await asyncio.gather(
            *(client.call(a2a(server.url), {}, idempotency_key=key()) for _ in range(5))
        )
        second = await client.call(a2a(server.url), {}, idempotency_key=key())

        assert first == [{"ok": 1}] * 5
        assert second == {"ok": 1}
        assert server.count("GET", CARD_PATH) == 1
        assert server.count("POST", "/rpc") == 6


async def test_card_is_fetched_again_after_its_ttl(session: aiohttp.ClientSession) -> None:
    client = AgentClient(session, card_ttl_s=0.2)
    with ScriptedServer() as server:
        server.serve_card()
        server.routes["POST /rpc"] = rpc_result({"message": {"parts": [{"text": "ok"}]}})
        await client.call(a2a(server.url), {}, idempotency_key=key())
        await client.call(a2a(server.url), {}, idempotency_key=key())
        await asyncio.sleep(0.3)
        await client.call(a2a(server.url), {}, idempotency_key=key())

        assert server.count("GET", CARD_PATH) == 2


async def test_failed_card_fetch_is_not_cached(client: AgentClient) -> None:
    with ScriptedServer() as server:
        server.routes[f"GET {CARD_PATH}"] = Reply(500, {"error": "starting"})
        with pytest.raises(AgentCallError):
            await client.call(a2a(server.url), {}, idempotency_key=key())
        server.serve_card()
        server.routes["POST /rpc"] = rpc_result({"message": {"parts": [{"text": "ok"}]}})

        assert await client.call(a2a(server.url), {}, idempotency_key=key()) == "ok"


async def test_stale_cached_card_is_refreshed_when_the_agent_changed(
    client: AgentClient,
) -> None:
    # The agent comes back on the same URL speaking only v0.3: the cached v1.0
    # route gets "method not found", so the client refetches the card and resends.
    with LeanAgentProcess() as agent:
        url = agent.start(protocol_version="1.0")
        assert await client.call(a2a(url), {"n": 1}, idempotency_key=key()) == echoed({"n": 1})
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        agent.stop()
        agent.start(protocol_version="0.3", port=port)

        assert await client.call(a2a(url), {"n": 2}, idempotency_key=key()) == echoed({"n": 2})


# --- the lean benchmark agent ---------------------------------------------------------------


@pytest.mark.parametrize("protocol_version", ["both", "1.0", "0.3"])
@pytest.mark.parametrize("server", ["asyncio", "uvicorn"])
async def test_lean_agent_with_our_client(
    http: httpx.AsyncClient, client: AgentClient, protocol_version: Any, server: Any
) -> None:
    with LeanAgentProcess() as agent:
        url = agent.start(protocol_version=protocol_version, server=server)
        output = await client.call(a2a(url), STEP_INPUT, idempotency_key=key())
        health = await http.get(f"{url}health")

    assert output == echoed(STEP_INPUT)
    assert type(output["count"]) is int
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("protocol_version", ["1.0", "0.3"])
async def test_lean_agent_with_the_a2a_sdk_client(
    http: httpx.AsyncClient, protocol_version: Any
) -> None:
    with LeanAgentProcess() as agent:
        url = agent.start(protocol_version=protocol_version)
        card_proto = await A2ACardResolver(http, url).get_agent_card()
        sdk = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card_proto)
        data = struct_pb2.Value()
        json_format.ParseDict({"x": 1, "data": {"y": "z"}}, data)
        request = SendMessageRequest(
            message=Message(message_id=key(), role=Role.ROLE_USER, parts=[Part(data=data)])
        )
        outputs = [
            json_format.MessageToDict(part.data)
            async for response in sdk.send_message(request)
            for artifact in response.task.artifacts
            for part in artifact.parts
        ]

    (interface,) = card_proto.supported_interfaces
    assert interface.protocol_version == protocol_version
    # The lean agent serves only the advertised dialect, so this went over it.
    assert outputs == [{"x": 1, "data": {"y": "z"}, "echo": True}]


async def test_lean_agent_rejects_v1_calls_without_the_version_header(
    http: httpx.AsyncClient,
) -> None:
    with LeanAgentProcess() as agent:
        url = agent.start()
        message = {"messageId": "m", "role": "ROLE_USER", "parts": []}
        body = {"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {"message": message}}
        without = (await http.post(url, json=body)).json()
        with_header = (await http.post(url, json=body, headers={"A2A-Version": "1.0"})).json()

    assert without["error"]["code"] == -32009
    assert with_header["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
