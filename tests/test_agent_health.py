"""Agent health probes and the echo test agent, against real processes and sockets.

Two kinds of peer: the echo agent (a real A2A agent in its own process) and a
scripted stdlib HTTP server in a thread, for answers no agent should give
(redirects, stalls, bodies that are not cards) and for seeing request headers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Event, Thread
from typing import Any

import aiohttp
import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_data_parts, get_text_parts, new_data_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)

from baton_server.agents.health import AgentHealth, probe_agent
from tests.agents.process import (
    AgentProcess,
    ProtocolVersion,
    RequestHandler,
    unused_loopback_port,
)

TIMEOUT_MS = 3000


# --- a scripted HTTP peer -------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the scripted server answers on one path."""

    status: int = 200
    body: bytes = b'{"status": "ok"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class SeenRequest:
    """A request the scripted server received."""

    path: str
    headers: dict[str, str]


class _ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replies: dict[str, Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.replies = replies
        self.seen: list[SeenRequest] = []
        # Set at teardown so stalled handlers return at once.
        self.release = Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A probe that gave up closes the socket under a stalled handler; the
        # resulting broken pipe is expected, not worth a traceback.
        pass


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: _ScriptedHTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.seen.append(SeenRequest(path, {k.lower(): v for k, v in self.headers.items()}))
        reply = self.server.replies.get(path, Reply(404, b"not found"))
        if reply.delay_s:
            self.server.release.wait(reply.delay_s)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ScriptedServer:
    """A loopback HTTP server answering fixed replies per path, in a thread."""

    def __init__(self, replies: dict[str, Reply]) -> None:
        """Serve ``replies``; unknown paths get 404."""
        self._server = _ScriptedHTTPServer(replies)
        # A short poll interval keeps shutdown() (once per test) quick.
        self._thread = Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL (no trailing slash)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def paths(self) -> list[str]:
        """Paths requested so far, in order."""
        return [seen.path for seen in self._server.seen]

    @property
    def seen(self) -> list[SeenRequest]:
        """Requests received so far, in order."""
        return list(self._server.seen)

    def __enter__(self) -> ScriptedServer:
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop serving and release stalled handlers."""
        self._server.release.set()
        self._server.shutdown()
        self._server.server_close()


CARD = b'{"name": "scripted", "supportedInterfaces": []}'
CARD_PATH = "/.well-known/agent-card.json"
LEGACY_CARD_PATH = "/.well-known/agent.json"


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_agent() -> Iterator[str]:
    """A v1.0 echo agent serving /health."""
    with AgentProcess() as agent:
        yield agent.start()


@pytest.fixture(scope="module")
def echo_agent_without_health() -> Iterator[str]:
    """A v1.0 echo agent that serves only the A2A routes (no /health)."""
    with AgentProcess() as agent:
        yield agent.start(health=False)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A fresh HTTP session per test (the server probes with the agent client's)."""
    async with aiohttp.ClientSession() as session:
        yield session


async def probe(
    http: aiohttp.ClientSession,
    url: str,
    *,
    timeout_ms: int = TIMEOUT_MS,
    headers: dict[str, str] | None = None,
) -> AgentHealth:
    """Probe with the test defaults."""
    return await probe_agent(http, url, timeout_ms=timeout_ms, headers=headers or {})


# --- probes against the real agent ----------------------------------------------


async def test_agent_with_health_route_is_healthy(
    http: aiohttp.ClientSession, echo_agent: str
) -> None:
    health = await probe(http, echo_agent)

    assert health.healthy is True
    assert health.status_code == 200
    assert health.error is None
    assert health.response_time_ms is not None
    assert 0 < health.response_time_ms < TIMEOUT_MS
    assert health.response_time_ms == round(health.response_time_ms, 2)


async def test_agent_without_health_route_is_healthy_by_its_card(
    http: aiohttp.ClientSession, echo_agent_without_health: str
) -> None:
    async with http.get(f"{echo_agent_without_health}health") as answer:
        assert answer.status == 404

    health = await probe(http, echo_agent_without_health)

    assert (health.healthy, health.status_code, health.error) == (True, 200, None)


async def test_url_without_trailing_slash_works(
    http: aiohttp.ClientSession, echo_agent: str
) -> None:
    health = await probe(http, echo_agent.rstrip("/"))

    assert (health.healthy, health.status_code) == (True, 200)


async def test_wrong_path_prefix_is_unhealthy_not_found(
    http: aiohttp.ClientSession, echo_agent_without_health: str
) -> None:
    health = await probe(http, f"{echo_agent_without_health}no/such/agent")

    assert health.healthy is False
    assert health.status_code == 404
    assert health.error == "HTTP 404"
    assert health.response_time_ms is not None


async def test_closed_port_is_unhealthy_without_raising(http: aiohttp.ClientSession) -> None:
    health = await probe(http, f"http://127.0.0.1:{unused_loopback_port()}/")

    assert health == AgentHealth(
        healthy=False, status_code=None, response_time_ms=None, error="Connection refused"
    )


async def test_stopped_agent_becomes_unhealthy(http: aiohttp.ClientSession) -> None:
    with AgentProcess() as agent:
        url = agent.start()
        assert (await probe(http, url)).healthy is True
        agent.stop()

        health = await probe(http, url)

    assert (health.healthy, health.error) == (False, "Connection refused")


@pytest.mark.parametrize(
    ("url", "error_start"),
    [
        ("not a url", "Invalid agent URL"),
        ("ftp://127.0.0.1/agent", "Invalid agent URL"),
        ("http://no-such-host.invalid/", "Could not resolve host"),
    ],
)
async def test_unusable_url_is_unhealthy_without_raising(
    http: aiohttp.ClientSession, url: str, error_start: str
) -> None:
    health = await probe(http, url)

    assert (health.healthy, health.status_code, health.response_time_ms) == (False, None, None)
    assert health.error is not None
    assert health.error.startswith(error_start)


# --- probes against scripted peers ----------------------------------------------


async def test_health_answer_settles_it_without_the_card(http: aiohttp.ClientSession) -> None:
    with ScriptedServer({"/health": Reply(204, b""), CARD_PATH: Reply(body=CARD)}) as server:
        health = await probe(http, server.url)

    assert (health.healthy, health.status_code) == (True, 204)
    assert server.paths == ["/health"]


async def test_agent_path_is_kept_with_or_without_trailing_slash(
    http: aiohttp.ClientSession,
) -> None:
    replies = {"/agents/echo/health": Reply(404), f"/agents/echo{CARD_PATH}": Reply(body=CARD)}
    with ScriptedServer(replies) as server:
        with_slash = await probe(http, f"{server.url}/agents/echo/")
        without_slash = await probe(http, f"{server.url}/agents/echo")

    assert with_slash.healthy
    assert without_slash.healthy
    expected_paths = ["/agents/echo/health", f"/agents/echo{CARD_PATH}"]
    assert server.paths == expected_paths * 2


async def test_method_not_allowed_on_health_falls_back_to_card(http: aiohttp.ClientSession) -> None:
    with ScriptedServer({"/health": Reply(405), CARD_PATH: Reply(body=CARD)}) as server:
        health = await probe(http, server.url)

    assert (health.healthy, health.status_code) == (True, 200)
    assert server.paths == ["/health", CARD_PATH]


async def test_legacy_card_path_is_the_last_fallback(http: aiohttp.ClientSession) -> None:
    with ScriptedServer({LEGACY_CARD_PATH: Reply(body=CARD)}) as server:
        health = await probe(http, server.url)

    assert (health.healthy, health.status_code) == (True, 200)
    assert server.paths == ["/health", CARD_PATH, LEGACY_CARD_PATH]


async def test_not_found_everywhere_is_unhealthy(http: aiohttp.ClientSession) -> None:
    with ScriptedServer({}) as server:
        health = await probe(http, server.url)

    assert (health.healthy, health.status_code, health.error) == (False, 404, "HTTP 404")
    assert server.paths == ["/health", CARD_PATH, LEGACY_CARD_PATH]


async def test_server_error_on_health_does_not_fall_back(http: aiohttp.ClientSession) -> None:
    with ScriptedServer({"/health": Reply(503), CARD_PATH: Reply(body=CARD)}) as server:
        health = await probe(http, server.url)

    assert (health.healthy, health.status_code, health.error) == (False, 503, "HTTP 503")
    assert health.response_time_ms is not None
    assert server.paths == ["/health"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[1, 2]", "agent card is not a JSON object"),
        (b"<html>welcome</html>", "agent card is not valid JSON"),
    ],
)
async def test_card_that_is_not_a_json_object_is_unhealthy(
    http: aiohttp.ClientSession, body: bytes, error: str
) -> None:
    with ScriptedServer({CARD_PATH: Reply(body=body)}) as server:
        health = await probe(http, server.url)

    assert (health.healthy, health.status_code, health.error) == (False, 200, error)


@pytest.mark.parametrize("redirecting_path", ["/health", CARD_PATH])
async def test_redirect_is_reported_not_followed(
    http: aiohttp.ClientSession, redirecting_path: str
) -> None:
    replies = {
        "/health": Reply(404),
        redirecting_path: Reply(302, b"", {"Location": "/login"}),
        "/login": Reply(body=CARD),
    }
    with ScriptedServer(replies) as server:
        health = await probe(http, server.url)

    assert health.healthy is False
    assert health.status_code == 302
    assert health.error == f"redirected to {server.url}/login"
    assert "/login" not in server.paths


async def test_client_redirect_and_timeout_settings_do_not_leak_in() -> None:
    # A session that times out fast: the probe must still
    # refuse the redirect and still wait for its own budget.
    replies = {
        "/health": Reply(302, b"", {"Location": "/ok"}),
        "/ok": Reply(),
        "/slow/health": Reply(delay_s=0.3),
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.05)) as client:
        with ScriptedServer(replies) as server:
            redirected = await probe(client, server.url)
            slow = await probe(client, f"{server.url}/slow", timeout_ms=TIMEOUT_MS)

    assert (redirected.healthy, redirected.status_code) == (False, 302)
    assert (slow.healthy, slow.status_code) == (True, 200)


async def test_slow_agent_times_out_within_budget(http: aiohttp.ClientSession) -> None:
    with ScriptedServer({"/health": Reply(delay_s=10)}) as server:
        started = time.perf_counter()
        health = await probe(http, server.url, timeout_ms=300)
        elapsed = time.perf_counter() - started

    assert health == AgentHealth(
        healthy=False, status_code=None, response_time_ms=None, error="Timed out after 300ms"
    )
    assert 0.29 <= elapsed < 0.3 + 0.5


async def test_budget_covers_all_fallbacks_together(http: aiohttp.ClientSession) -> None:
    # Each answer alone fits the budget; the chain of them does not.
    replies = {
        "/health": Reply(404, delay_s=0.2),
        CARD_PATH: Reply(404, delay_s=0.2),
        LEGACY_CARD_PATH: Reply(body=CARD, delay_s=0.2),
    }
    with ScriptedServer(replies) as server:
        started = time.perf_counter()
        health = await probe(http, server.url, timeout_ms=500)
        elapsed = time.perf_counter() - started

    assert health.error == "Timed out after 500ms"
    assert health.status_code is None
    assert elapsed < 0.5 + 0.5


async def test_auth_headers_reach_the_agent_on_every_request(http: aiohttp.ClientSession) -> None:
    credentials = {"Authorization": "Bearer s3cret-token", "X-API-Key": "key-123"}
    with ScriptedServer({"/health": Reply(404), CARD_PATH: Reply(body=CARD)}) as server:
        health = await probe(http, server.url, headers=credentials)

    assert health.healthy is True
    assert [seen.path for seen in server.seen] == ["/health", CARD_PATH]
    for seen in server.seen:
        assert seen.headers["authorization"] == "Bearer s3cret-token"
        assert seen.headers["x-api-key"] == "key-123"


async def test_non_positive_timeout_is_a_caller_error(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="timeout_ms"):
        await probe(http, "http://127.0.0.1:1/", timeout_ms=0)


# --- the echo agent is a real A2A agent ------------------------------------------


async def a2a_client(http: httpx.AsyncClient, url: str) -> Client:
    """Resolve the agent's card and build an SDK client from it (non-streaming)."""
    card = await A2ACardResolver(http, url).get_agent_card()
    return ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)


async def send(client: Client, data: dict[str, Any], *, return_immediately: bool = False) -> Task:
    """Send ``data`` as one data part; return the task the agent answers with."""
    request = SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[new_data_part(data)]
        )
    )
    request.configuration.return_immediately = return_immediately
    responses = [response async for response in client.send_message(request)]
    assert len(responses) == 1
    assert responses[0].HasField("task")
    return responses[0].task


def output_of(task: Task) -> Any:
    """The data part of the task's only artifact."""
    assert len(task.artifacts) == 1
    (output,) = get_data_parts(task.artifacts[0].parts)
    return output


def status_text(task: Task) -> str:
    """The text of the task's status message."""
    return "\n".join(get_text_parts(task.status.message.parts))


@pytest.mark.parametrize(
    ("protocol_version", "request_handler"),
    [("1.0", "default"), ("0.3", "default"), ("1.0", "legacy"), ("0.3", "legacy")],
)
async def test_echo_agent_answers_the_a2a_sdk_client(
    protocol_version: ProtocolVersion, request_handler: RequestHandler
) -> None:
    step_input = {"data": {"city": "Oslo", "n": 3}, "note": "hi", "_mode": "echo"}
    with AgentProcess() as agent:
        url = agent.start(protocol_version=protocol_version, request_handler=request_handler)
        async with httpx.AsyncClient() as http:
            card = await A2ACardResolver(http, url).get_agent_card()
            (interface,) = card.supported_interfaces
            client = await a2a_client(http, url)
            task = await send(client, step_input)
            await client.close()

    assert (interface.protocol_binding, interface.protocol_version) == ("JSONRPC", protocol_version)
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    # Numbers come back as floats (google.protobuf.Value); they still compare equal.
    assert output_of(task) == {"data": {"city": "Oslo", "n": 3}, "note": "hi", "echo": True}


@pytest.mark.parametrize("request_handler", ["default", "legacy"])
async def test_echo_agent_modes(request_handler: RequestHandler) -> None:
    key = str(uuid.uuid4())
    with AgentProcess() as agent:
        url = agent.start(mode="fail", request_handler=request_handler)
        async with httpx.AsyncClient() as http:
            client = await a2a_client(http, url)
            by_flag = await send(client, {"x": 1})
            echoed = await send(client, {"x": 1, "_mode": "echo"})
            flaky = [
                await send(client, {"_mode": "flaky", "_key": key, "_fail_times": 2, "v": 7})
                for _ in range(3)
            ]
            other_key = await send(client, {"_mode": "flaky", "_key": f"{key}-2", "_fail_times": 0})
            sleeping = await send(
                client, {"_mode": "sleep", "_sleep_ms": 60_000}, return_immediately=True
            )
            canceled = await client.cancel_task(CancelTaskRequest(id=sleeping.id))
            stored = await client.get_task(GetTaskRequest(id=sleeping.id))
            slept = await send(client, {"_mode": "sleep", "_sleep_ms": 50, "v": 1})
            await client.close()

    assert by_flag.status.state == TaskState.TASK_STATE_FAILED
    assert status_text(by_flag) == "intentional failure"
    assert echoed.status.state == TaskState.TASK_STATE_COMPLETED
    assert output_of(echoed) == {"x": 1, "echo": True, "data": {"x": 1}}

    assert [task.status.state for task in flaky] == [
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_COMPLETED,
    ]
    assert status_text(flaky[0]).startswith("intentional failure")
    assert output_of(flaky[2]) == {"v": 7, "echo": True, "data": {"v": 7}}
    assert other_key.status.state == TaskState.TASK_STATE_COMPLETED

    assert sleeping.status.state == TaskState.TASK_STATE_WORKING
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert stored.status.state == TaskState.TASK_STATE_CANCELED
    assert not stored.artifacts
    assert slept.status.state == TaskState.TASK_STATE_COMPLETED
    assert output_of(slept) == {"v": 1, "echo": True, "data": {"v": 1}}
