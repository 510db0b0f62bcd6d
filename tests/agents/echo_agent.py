"""A small, real A2A agent for Baton's tests and benchmarks.

Run it as a separate process::

    python tests/agents/echo_agent.py --port 8001 [--mode echo|fail|sleep|flaky]
        [--protocol-version 1.0|0.3] [--host 127.0.0.1] [--no-health]
        [--request-handler default|legacy] [--public-url URL]

It is built from the a2a-sdk's own server pieces (JSON-RPC transport, agent card
at ``/.well-known/agent-card.json``), so every byte on the wire is what a real
SDK agent sends. The step input is the first data part of the incoming message
(a JSON object); the reply is a task whose single artifact holds one data part.

Behaviour is picked per request by the input key ``"_mode"``, else by ``--mode``:

- ``echo``: completes with the input (minus ``_``-prefixed control keys), plus
  ``"echo": true`` and ``"data"`` (``input["data"]`` if present, else the input).
- ``fail``: the task ends FAILED with the status message ``intentional failure``.
- ``sleep``: waits ``_sleep_ms`` milliseconds (cancellable), then echoes.
- ``flaky``: fails the first ``_fail_times`` attempts for ``_key``, then echoes.

Usage: with ``"_usage"`` in the input (a usage entry or a list of them), the reply
reports it as Baton's convention says, in the metadata of the artifact, or of the task
or its status message (``"_usage_in": "task"`` / ``"status"``); a failed task of the
``fail`` and ``flaky`` modes reports it in the task's metadata.

``--request-handler legacy`` swaps the SDK's default request handler for its
``LegacyRequestHandler``: same wire behaviour, about half the agent CPU per
request, which suits benchmarks.

``--port 0`` binds a free port; the process prints ``READY <port>`` on stdout
once it accepts connections, and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

# The SDK reads this once, at import. With OpenTelemetry installed it otherwise
# opens ~70 (no-op) spans per request, which costs more CPU than the agent's
# own work and would inflate the agent's share in benchmarks.
os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")

import uvicorn
from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler, LegacyRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    Message,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

MODES = ("echo", "fail", "sleep", "flaky")
PROTOCOL_VERSIONS = ("1.0", "0.3")
REQUEST_HANDLERS = ("default", "legacy")
FAILURE_TEXT = "intentional failure"


def step_input(message: Message | None) -> dict[str, Any]:
    """Return the step input carried by ``message``.

    Baton sends the input as a data part holding a JSON object. A text part that
    parses as a JSON object is accepted too, so the agent can be poked by hand.
    """
    if message is None:
        return {}
    for data in get_data_parts(message.parts):
        if isinstance(data, dict):
            return data
    text = "\n".join(get_text_parts(message.parts))
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            return {"text": text}
        return parsed if isinstance(parsed, dict) else {"text": text}
    return {}


def echo_output(step: dict[str, Any]) -> dict[str, Any]:
    """Build the echo reply: the public input keys, ``echo`` and ``data``."""
    public = {key: value for key, value in step.items() if not key.startswith("_")}
    # `data` lets workflows reference `${step.output.data}` whether or not the
    # caller wrapped its payload; copy so the reply never nests itself.
    data = public.get("data", dict(public))
    return {**public, "echo": True, "data": data}


class EchoExecutor(AgentExecutor):
    """Agent logic: echo, fail, sleep or flake, as the request asks."""

    def __init__(self, default_mode: str) -> None:
        """Create the executor; ``default_mode`` applies when input has no ``_mode``."""
        self._default_mode = default_mode
        # Attempts per `_key` for the flaky mode; in memory on purpose, so a
        # restarted agent starts flaking again.
        self._attempts: dict[str, int] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Answer one message with a task in a terminal state."""
        task_id = context.task_id or str(uuid.uuid4())
        context_id = context.context_id or str(uuid.uuid4())
        step = step_input(context.message)
        mode = str(step.get("_mode") or self._default_mode)

        if mode == "echo":
            await event_queue.enqueue_event(_completed_task(task_id, context_id, step))
        elif mode == "fail":
            failed = _failed_task(task_id, context_id, FAILURE_TEXT, step.get("_usage"))
            await event_queue.enqueue_event(failed)
        elif mode == "flaky":
            key = str(step.get("_key", ""))
            attempt = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempt
            fail_times = int(step.get("_fail_times", 1))
            if attempt <= fail_times:
                text = f"{FAILURE_TEXT} (attempt {attempt} of {fail_times} planned failures)"
                failed = _failed_task(task_id, context_id, text, step.get("_usage"))
                await event_queue.enqueue_event(failed)
            else:
                await event_queue.enqueue_event(_completed_task(task_id, context_id, step))
        elif mode == "sleep":
            await self._sleep_then_echo(task_id, context_id, step, event_queue)
        else:
            text = f"unknown mode {mode!r}; expected one of {', '.join(MODES)}"
            await event_queue.enqueue_event(_failed_task(task_id, context_id, text))

    async def _sleep_then_echo(
        self, task_id: str, context_id: str, step: dict[str, Any], event_queue: EventQueue
    ) -> None:
        # Publish a WORKING task first: a non-blocking caller gets a task id it
        # can poll or cancel while the agent sleeps.
        working = Task(
            id=task_id,
            context_id=context_id,
            status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
        )
        await event_queue.enqueue_event(working)
        # A plain sleep: the SDK cancels this coroutine on CancelTask.
        await asyncio.sleep(float(step.get("_sleep_ms", 0)) / 1000)
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.add_artifact([new_data_part(echo_output(step))], name="output")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task CANCELED; the SDK then cancels the running ``execute``."""
        if context.task_id is None or context.context_id is None:
            return
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def _completed_task(task_id: str, context_id: str, step: dict[str, Any]) -> Task:
    # One event carrying the final state and the artifact: the cheapest reply
    # the SDK accepts, which keeps the agent's CPU out of benchmark figures.
    usage = step.get("_usage")
    where = step.get("_usage_in", "artifact") if usage is not None else None
    artifact = Artifact(
        artifact_id=str(uuid.uuid4()),
        name="output",
        parts=[new_data_part(echo_output(step))],
        metadata=_usage_metadata(usage if where == "artifact" else None),
    )
    status = TaskStatus(state=TaskState.TASK_STATE_COMPLETED)
    if where == "status":
        status.message.CopyFrom(new_text_message("done", context_id=context_id, task_id=task_id))
        status.message.metadata.update(_usage_metadata(usage))
    return Task(
        id=task_id,
        context_id=context_id,
        status=status,
        artifacts=[artifact],
        metadata=_usage_metadata(usage if where == "task" else None),
    )


def _usage_metadata(usage: Any) -> dict[str, Any]:
    return {} if usage is None else {"usage": usage}


def _failed_task(task_id: str, context_id: str, text: str, usage: Any = None) -> Task:
    message = new_text_message(text, context_id=context_id, task_id=task_id)
    return Task(
        id=task_id,
        context_id=context_id,
        status=TaskStatus(state=TaskState.TASK_STATE_FAILED, message=message),
        metadata=_usage_metadata(usage),
    )


def agent_card(base_url: str, protocol_version: str) -> AgentCard:
    """Describe the agent: one JSON-RPC interface speaking ``protocol_version``."""
    return AgentCard(
        name="Baton echo agent",
        description="Test agent: echoes its data input; can fail, sleep or flake on request.",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url=base_url,
                protocol_binding="JSONRPC",
                protocol_version=protocol_version,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["application/json", "text/plain"],
        default_output_modes=["application/json"],
        skills=[
            AgentSkill(
                id="echo",
                name="Echo",
                description="Returns the input object with echo=true.",
                tags=["test"],
            )
        ],
    )


async def _health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_app(
    *,
    base_url: str,
    mode: str,
    protocol_version: str,
    health: bool,
    request_handler: str = "default",
) -> Starlette:
    """Assemble the Starlette app from the SDK's card and JSON-RPC routes."""
    card = agent_card(base_url, protocol_version)
    handler_class = LegacyRequestHandler if request_handler == "legacy" else DefaultRequestHandler
    handler = handler_class(
        agent_executor=EchoExecutor(mode),
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )
    routes: list[BaseRoute] = []
    if health:
        routes.append(Route("/health", _health, methods=["GET"]))
    routes.extend(create_agent_card_routes(card))
    # The SDK serves v1.0 only unless asked; a 0.3 agent must also accept the
    # legacy method names (`message/send`, ...) that v0.3 clients send.
    routes.extend(create_jsonrpc_routes(handler, "/", enable_v0_3_compat=protocol_version == "0.3"))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        # Only the v2 handler keeps tasks running in the background to drain.
        if isinstance(handler, DefaultRequestHandler):
            await handler.aclose()

    return Starlette(routes=routes, lifespan=lifespan)


def _bind(host: str, port: int) -> socket.socket:
    # Binding before the app exists lets `--port 0` work: the card must name
    # the real port, which is only known once the socket is bound.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _exit_when_stdin_closes(server: uvicorn.Server, loop: asyncio.AbstractEventLoop) -> None:
    # The parent holds our stdin pipe; EOF means it died without stopping us,
    # so shut down rather than linger as an orphan holding a port.
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        loop.call_soon_threadsafe(setattr, server, "should_exit", True)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (or stdin EOF with ``--exit-on-stdin-eof``)."""
    sock = _bind(args.host, args.port)
    port = int(sock.getsockname()[1])
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    # SDK clients call the URL in the card, not the one they fetched it from,
    # so an agent bound to 0.0.0.0 (e.g. in a container) must be told its name.
    base_url = args.public_url or f"http://{url_host}:{port}/"
    app = build_app(
        base_url=base_url,
        mode=args.mode,
        protocol_version=args.protocol_version,
        health=not args.no_health,
        request_handler=args.request_handler,
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    if args.exit_on_stdin_eof:
        _exit_when_stdin_closes(server, asyncio.get_running_loop())
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving
            return 1
        await asyncio.sleep(0.005)
    print(f"READY {port}", flush=True)
    await serving
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument(
        "--public-url", help="URL to advertise in the agent card (default: http://HOST:PORT/)"
    )
    parser.add_argument("--mode", choices=MODES, default="echo")
    parser.add_argument("--protocol-version", choices=PROTOCOL_VERSIONS, default="1.0")
    parser.add_argument(
        "--no-health", action="store_true", help="do not serve GET /health (card only)"
    )
    parser.add_argument(
        "--request-handler",
        choices=REQUEST_HANDLERS,
        default="default",
        help="the SDK's default handler, or its cheaper LegacyRequestHandler",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (set by the test harness to avoid orphans)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
