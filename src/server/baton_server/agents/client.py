"""Calling agents: one step input in, one step output out.

Baton's executor calls an agent once per workflow step, so this module sits on the
hot path and is written for CPU per call: plain dicts and the stdlib ``json`` on
the wire, no pydantic or protobuf, one shared :class:`aiohttp.ClientSession` (its
HTTP stack costs a tenth of httpx's CPU per request), and the agent card fetched
once per URL and cached.

Two protocols, chosen per agent (:attr:`AgentEndpoint.protocol`):

``"http"``
    ``POST <url>`` with the step input as the JSON body, an ``Idempotency-Key``
    header (the same on every attempt of the step) and ``Baton-Attempt`` (1, 2, ...);
    a 2xx JSON body is the step output.

``"a2a"``
    The agent card (``<url>/.well-known/agent-card.json``, falling back to the
    pre-0.3 ``agent.json``) names the JSON-RPC interface and protocol version;
    v1.0 is preferred, v0.3 agents are spoken to in their dialect. The step
    input goes as ONE data part of a user message whose ``messageId`` is
    ``baton-<idempotency key>/<attempt>`` and whose metadata holds
    ``baton_idempotency_key`` (the same on every attempt of the step) and
    ``baton_attempt``, so an agent (or a log reader) can recognise a repeat. The
    send is blocking: the agent answers with its final task or with a direct
    message. A task still SUBMITTED/WORKING is polled with ``GetTask``
    (``tasks/get``) on a short, growing backoff.

Output rule (A2A): the parts of all artifacts of the completed task, in order
(when it has none: the parts of its final status message; for a direct message
answer: its parts). A data part gives its JSON value, a text part its string, a
file part its v1.0 JSON form (``url`` or ``raw``, plus ``filename`` and
``mediaType`` when set). One value is the output as is; several values that are
all JSON objects are merged into one (later keys win); any other mix gives the
list of values; no parts give ``None``.

Usage: an agent reports the model calls it made as ``usage`` (one entry or a list of
them, see :mod:`baton_server.usage.reported`): an A2A agent in the ``metadata`` of its
task, of its final status message, of any artifact, or of its direct message answer;
an HTTP agent at the top of its JSON answer (with OpenAI's answer shape, the answer's
``model`` names the model). Each one found is handed to ``on_usage`` as is, also when
the task failed; the output stays as the agent sent it.

Numbers: A2A agents built on protobuf (the a2a-sdk among them) carry JSON as
``google.protobuf.Value`` and send every integer back as a float (``3.0``).
Whole floats within +-2**53 (the range where a double holds integers exactly) are
turned back into ints while parsing, for both protocols, so a step's output
types do not depend on how the agent was built. A genuine ``2.0`` thus reads as
``2``; JSON does not tell the two apart anyway.

Deadline: ``endpoint.timeout_ms`` bounds the whole call (card fetch, send,
every poll); each HTTP request gets the time that is left. A request whose
connection breaks before any answer (typically a pooled keep-alive connection
the agent closed just as it was reused) is resent once at once; timeouts never
are. Cancelling the
calling task abandons the in-flight request at once (aiohttp drops the
connection). :meth:`AgentClient.call` never cancels the agent's task by itself:
Baton also cancels calls when a worker shuts down and another one resumes the
run, and that must not kill the agent's work. Callers that want the agent to
stop get the task id through ``on_task`` (or :attr:`AgentCallError.task_id`) and
call :meth:`AgentClient.cancel`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, NoReturn

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from baton_server import tracing
from baton_server.limits import MAX_AGENT_ANSWER_BYTES, describe

logger = logging.getLogger(__name__)

PROTOCOL_A2A: Final = "a2a"
PROTOCOL_HTTP: Final = "http"
AGENT_CARD_PATHS: Final = (".well-known/agent-card.json", ".well-known/agent.json")
IDEMPOTENCY_METADATA_KEY: Final = "baton_idempotency_key"
ATTEMPT_METADATA_KEY: Final = "baton_attempt"
ATTEMPT_HEADER: Final = "Baton-Attempt"
MESSAGE_ID_PREFIX: Final = "baton-"

# Why a call failed, for code that must not parse messages (AgentCallError.reason).
REASON_TIMEOUT: Final = "TIMEOUT"
REASON_CONNECTION: Final = "CONNECTION"
REASON_INVALID_URL: Final = "INVALID_URL"
REASON_HTTP_STATUS: Final = "HTTP_STATUS"
REASON_BAD_RESPONSE: Final = "BAD_RESPONSE"
REASON_AGENT_CARD: Final = "AGENT_CARD"
REASON_RPC_ERROR: Final = "RPC_ERROR"
REASON_TASK_FAILED: Final = "TASK_FAILED"
REASON_TASK_REJECTED: Final = "TASK_REJECTED"
REASON_TASK_CANCELED: Final = "TASK_CANCELED"
REASON_INPUT_REQUIRED: Final = "INPUT_REQUIRED"
REASON_AUTH_REQUIRED: Final = "AUTH_REQUIRED"
REASON_TASK_STATE: Final = "TASK_STATE"
REASON_INVALID_PAYLOAD: Final = "INVALID_PAYLOAD"

# JSON-RPC / A2A error codes this module reacts to (a2a.utils.errors).
RPC_INTERNAL_ERROR: Final = -32603
RPC_METHOD_NOT_FOUND: Final = -32601
RPC_TASK_NOT_FOUND: Final = -32001
RPC_VERSION_NOT_SUPPORTED: Final = -32009

_VERSION_HEADER: Final = "A2A-Version"
_JSON_HEADERS: Final = {"Content-Type": "application/json", "Accept": "application/json"}
_V1_HEADERS: Final = {**_JSON_HEADERS, _VERSION_HEADER: "1.0"}
# The a2a-sdk's own v0.3 transport sends this too; real 0.3 servers ignore it.
_V03_HEADERS: Final = {**_JSON_HEADERS, _VERSION_HEADER: "0.3"}

# Polling a task that is still running: start quick (most agents that do not
# answer at once finish within tens of ms), back off to a ceiling that bounds
# the extra latency for long-running agents to half a second.
_POLL_FIRST_DELAY_S: Final = 0.01
_POLL_MAX_DELAY_S: Final = 0.5
_CANCEL_MAX_TIMEOUT_MS: Final = 10_000

_EXACT_INT_LIMIT: Final = 2.0**53
_MAX_MESSAGE_CHARS: Final = 300
_RETRYABLE_4XX: Final = frozenset({408, 429})
# Answers to the send that mean "this is not the endpoint the card promised":
# nothing was processed, so a cached card may be stale and a resend is safe.
_STALE_ROUTE_STATUSES: Final = frozenset({404, 405, 410})
_STALE_ROUTE_RPC_CODES: Final = frozenset({RPC_METHOD_NOT_FOUND, RPC_VERSION_NOT_SUPPORTED})
# A connection that broke before an answer arrived. ClientConnectorError (a failed
# connect) is a ClientOSError too and is told apart first.
_BROKEN_CONNECTION: Final = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientConnectionResetError,
)
# A URL that cannot be requested: aiohttp.InvalidURL and yarl's parse errors are
# ValueErrors; a scheme other than http(s) is NonHttpUrlClientError.
_INVALID_URL: Final = (ValueError, aiohttp.NonHttpUrlClientError)
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

_DONE_STATES: Final = frozenset({"completed"})
_RUNNING_STATES: Final = frozenset({"submitted", "working"})
# Task states as both dialects spell them, normalised to the v0.3 spelling.
_STATE_NAMES: Final = {
    "TASK_STATE_SUBMITTED": "submitted",
    "TASK_STATE_WORKING": "working",
    "TASK_STATE_COMPLETED": "completed",
    "TASK_STATE_FAILED": "failed",
    "TASK_STATE_CANCELED": "canceled",
    "TASK_STATE_REJECTED": "rejected",
    "TASK_STATE_INPUT_REQUIRED": "input-required",
    "TASK_STATE_AUTH_REQUIRED": "auth-required",
    "TASK_STATE_UNSPECIFIED": "unspecified",
}
# state -> (message prefix, reason, retryable). A FAILED task is retried: agents
# fail transiently (a model timeout, an overloaded backend). Everything else is
# a deliberate answer that a new attempt would only repeat.
_UNSUCCESSFUL_STATES: Final = {
    "failed": ("Agent task failed", REASON_TASK_FAILED, True),
    "rejected": ("Agent rejected the task", REASON_TASK_REJECTED, False),
    "canceled": ("Agent task was canceled", REASON_TASK_CANCELED, False),
    "input-required": ("Agent requires input", REASON_INPUT_REQUIRED, False),
    "auth-required": ("Agent requires authentication", REASON_AUTH_REQUIRED, False),
}


class AgentCallError(Exception):
    """A call to an agent did not produce an output.

    ``str(error)`` is a one-line, human-readable reason such as
    ``"HTTP 503 from http://agent/"``, ``"Timed out after 30000ms"``,
    ``"Agent task failed: <agent's text>"`` or ``"JSON-RPC error -32602: ..."``.

    Attributes:
        retryable: Whether a new attempt may succeed. True for timeouts,
            connection failures, HTTP 5xx/408/429, JSON-RPC internal errors
            (-32603) and FAILED tasks; False for other 4xx, JSON-RPC errors,
            rejected/canceled tasks, unusable agent cards and bad responses.
        status_code: HTTP status of the answer that failed the call, if any.
        reason: Machine-readable cause, one of the ``REASON_*`` constants.
        rpc_code: JSON-RPC error code, for ``REASON_RPC_ERROR``.
        retry_after_s: The agent's ``Retry-After`` (seconds), when it sent one.
        task_id: The agent's task id, when the agent had created a task (for
            :meth:`AgentClient.cancel` after a timeout).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        reason: str,
        status_code: int | None = None,
        rpc_code: int | None = None,
        retry_after_s: float | None = None,
        task_id: str | None = None,
    ) -> None:
        """Create the error; ``message`` should be one line."""
        # It is stored as the step's error: text that PostgreSQL can hold (an agent's
        # error body may carry NUL bytes).
        super().__init__(message.replace("\x00", "\\0"))
        self.retryable = retryable
        self.reason = reason
        self.status_code = status_code
        self.rpc_code = rpc_code
        self.retry_after_s = retry_after_s
        self.task_id = task_id


class _StaleRouteError(AgentCallError):
    """The send hit no such endpoint or method: the cached card may be outdated."""


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """Where and how to call one agent.

    Attributes:
        url: The agent's base URL (``"a2a"``: where its card lives; ``"http"``:
            the URL that is POSTed to).
        protocol: ``"a2a"`` or ``"http"``.
        timeout_ms: Budget for a whole call, polls included.
        headers: Extra request headers, typically credentials
            (``Authorization``, an API-key header); sent on every request,
            the agent card fetch included.
    """

    url: str
    protocol: str
    timeout_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Route:
    """How to reach an A2A agent, distilled from its card."""

    rpc_url: str
    legacy: bool  # True: the v0.3 dialect (`message/send`, lower-case states, `kind`)
    tenant: str
    headers: Mapping[str, str]


@dataclass(slots=True)
class _CallState:
    """What one call learned so far (for error reports and ``on_task``)."""

    task_id: str | None = None
    on_task: Callable[[str], None] | None = None
    attempt: int = 1
    on_usage: Callable[[Any], None] | None = None

    def saw_usage(self, *holders: Any) -> None:
        """Report the ``usage`` in the metadata of each of ``holders`` (a task, a
        message, an artifact; anything else is skipped)."""
        if self.on_usage is None:
            return
        for holder in holders:
            metadata = holder.get("metadata") if isinstance(holder, dict) else None
            if isinstance(metadata, dict) and metadata.get("usage") is not None:
                self.on_usage(metadata["usage"])

    def saw_task(self, task_id: str) -> None:
        if task_id and task_id != self.task_id:
            self.task_id = task_id
            if self.on_task is not None:
                self.on_task(task_id)


@dataclass(frozen=True, slots=True)
class _Response:
    """An agent's answer, read whole."""

    status_code: int
    content: bytes
    headers: CIMultiDictProxy[str]
    url: URL

    @property
    def is_redirect(self) -> bool:
        return self.status_code in _REDIRECT_STATUSES and "location" in self.headers


class AgentClient:
    """A lean client for calling agents; one instance per process.

    It holds no connections of its own: all requests go through the shared
    ``session`` (its connector's pool is reused; redirects are never followed and
    the timeout is set per request). It caches each A2A agent's card for
    ``card_ttl_s`` seconds, and concurrent first calls to an agent share one
    card fetch.
    """

    def __init__(self, session: aiohttp.ClientSession, *, card_ttl_s: float = 60.0) -> None:
        """Use ``session`` for every request; cache agent cards for ``card_ttl_s`` seconds."""
        self._session = session
        self._card_ttl_s = card_ttl_s
        # url -> (monotonic expiry, route)
        self._routes: dict[str, tuple[float, _Route]] = {}
        self._card_fetches: dict[str, asyncio.Future[_Route]] = {}
        self._rpc_ids = itertools.count(1)

    async def call(
        self,
        endpoint: AgentEndpoint,
        payload: dict[str, Any],
        *,
        idempotency_key: str,
        attempt: int = 1,
        on_task: Callable[[str], None] | None = None,
        on_usage: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send ``payload`` to the agent and return its output (decoded JSON).

        Args:
            endpoint: The agent.
            payload: The step input, a JSON object.
            idempotency_key: Identifies the logical call across attempts: the
                same key on a retry lets the agent recognise a repeat.
            attempt: Which attempt this is (1 first), sent beside the key.
            on_task: A2A only. Called with the agent's task id as soon as it
                is known; it must not block (it runs on the event loop) and
                an exception from it fails the call. Passing it also makes
                the send non-blocking (``returnImmediately`` / ``blocking:
                false``), so the id arrives while the agent still works and
                the task can be cancelled; the client then polls for the
                result. Agents whose first answer is already final (most
                simple ones) still cost one round trip.
            on_usage: Called with each ``usage`` value the agent reported (see the
                module docstring), as is, before the call returns or raises.

        Returns:
            The output; see the module docstring for the A2A output rule.

        Raises:
            AgentCallError: The agent did not produce an output; see
                :attr:`AgentCallError.retryable`.
            ValueError: ``endpoint`` names an unknown protocol or a
                non-positive timeout (a caller bug, not an agent failure).
        """
        if endpoint.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be positive, got {endpoint.timeout_ms}")
        if endpoint.protocol not in (PROTOCOL_A2A, PROTOCOL_HTTP):
            raise ValueError(f"unknown agent protocol {endpoint.protocol!r}")
        state = _CallState(on_task=on_task, attempt=attempt, on_usage=on_usage)
        deadline = asyncio.get_running_loop().time() + endpoint.timeout_ms / 1000
        try:
            # One deadline over every request: per-request timeouts alone would
            # let polls and card fetches run far past the budget.
            async with asyncio.timeout_at(deadline):
                if endpoint.protocol == PROTOCOL_HTTP:
                    return await self._call_http(
                        endpoint, payload, idempotency_key, state, deadline
                    )
                return await self._call_a2a(endpoint, payload, idempotency_key, state, deadline)
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise AgentCallError(
                f"Timed out after {endpoint.timeout_ms}ms",
                retryable=True,
                reason=REASON_TIMEOUT,
                task_id=state.task_id,
            ) from None
        except AgentCallError as error:
            if error.task_id is None:
                error.task_id = state.task_id
            raise

    async def cancel(self, endpoint: AgentEndpoint, task_id: str) -> None:
        """Ask an A2A agent to cancel ``task_id`` (``CancelTask`` / ``tasks/cancel``).

        Best effort: failures (the task already finished, the agent is down,
        ...) are logged, never raised. Bounded by ``endpoint.timeout_ms`` and at
        most 10 s. A no-op for ``"http"`` agents, which have no way to cancel.
        """
        if endpoint.protocol != PROTOCOL_A2A or endpoint.timeout_ms <= 0:
            return
        budget_s = min(endpoint.timeout_ms, _CANCEL_MAX_TIMEOUT_MS) / 1000
        deadline = asyncio.get_running_loop().time() + budget_s
        try:
            async with asyncio.timeout_at(deadline):
                route, _ = await self._route(endpoint, deadline)
                method = "tasks/cancel" if route.legacy else "CancelTask"
                params = _with_tenant({"id": task_id}, route)
                await self._rpc(route, method, params, endpoint.headers, deadline)
        except Exception as error:  # best effort by contract
            logger.info("cancelling task %s at %s failed: %s", task_id, endpoint.url, error)

    # --- protocol "http" --------------------------------------------------------

    async def _call_http(
        self,
        endpoint: AgentEndpoint,
        payload: dict[str, Any],
        idempotency_key: str,
        state: _CallState,
        deadline: float,
    ) -> Any:
        headers = {
            **endpoint.headers,
            **_JSON_HEADERS,
            "Idempotency-Key": idempotency_key,
            ATTEMPT_HEADER: str(state.attempt),
        }
        response = await self._post(endpoint.url, _dump(payload), headers, deadline)
        _check_status(response)
        if not response.content:
            return None
        output = _load(response, endpoint.url)
        if state.on_usage is not None and isinstance(output, dict):
            usage = output.get("usage")
            if isinstance(usage, dict) and "model" not in usage and "model" in output:
                usage = {**usage, "model": output["model"]}  # OpenAI's answer shape
            if usage is not None:
                state.on_usage(usage)
        return output

    # --- protocol "a2a" ---------------------------------------------------------

    async def _call_a2a(
        self,
        endpoint: AgentEndpoint,
        payload: dict[str, Any],
        idempotency_key: str,
        state: _CallState,
        deadline: float,
    ) -> Any:
        route, cached = await self._route(endpoint, deadline)
        try:
            return await self._send(endpoint, route, payload, idempotency_key, state, deadline)
        except _StaleRouteError:
            self._forget_route(endpoint.url, route)
            if not cached:
                raise
        # The agent moved or changed protocol version since its card was
        # cached; nothing was processed, so one resend with a fresh card is safe.
        route, _ = await self._route(endpoint, deadline)
        return await self._send(endpoint, route, payload, idempotency_key, state, deadline)

    async def _send(
        self,
        endpoint: AgentEndpoint,
        route: _Route,
        payload: dict[str, Any],
        idempotency_key: str,
        state: _CallState,
        deadline: float,
    ) -> Any:
        blocking = state.on_task is None
        # Each attempt is a new message (its own id) of the same logical call (its key).
        message_id = f"{MESSAGE_ID_PREFIX}{idempotency_key}/{state.attempt}"
        metadata = {IDEMPOTENCY_METADATA_KEY: idempotency_key, ATTEMPT_METADATA_KEY: state.attempt}
        params: dict[str, Any]
        if route.legacy:
            method = "message/send"
            params = {
                "message": {
                    "kind": "message",
                    "messageId": message_id,
                    "role": "user",
                    "parts": [{"kind": "data", "data": payload}],
                    "metadata": metadata,
                },
                "configuration": {"blocking": blocking},
            }
        else:
            method = "SendMessage"
            # historyLength 0: the answer need not repeat our own input back.
            configuration: dict[str, Any] = {"historyLength": 0}
            if not blocking:
                configuration["returnImmediately"] = True
            params = _with_tenant(
                {
                    "message": {
                        "messageId": message_id,
                        "role": "ROLE_USER",
                        "parts": [{"data": payload}],
                        "metadata": metadata,
                    },
                    "configuration": configuration,
                },
                route,
            )
        result = await self._rpc(route, method, params, endpoint.headers, deadline, send=True)
        task = _task_or_message(result, route.legacy)
        if task is None:
            message = result.get("message", result)
            state.saw_usage(message)
            return _combine(_parts_values(message))
        return await self._finish_task(endpoint, route, task, state, deadline)

    async def _finish_task(
        self,
        endpoint: AgentEndpoint,
        route: _Route,
        task: dict[str, Any],
        state: _CallState,
        deadline: float,
    ) -> Any:
        task_id = task.get("id")
        if not isinstance(task_id, str) or not task_id:
            _bad_response(route.rpc_url, "task without an id")
        state.saw_task(task_id)
        status_state = _task_state(task)
        delay = _POLL_FIRST_DELAY_S
        while status_state in _RUNNING_STATES:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_DELAY_S)
            method = "tasks/get" if route.legacy else "GetTask"
            params = {"id": task_id} if route.legacy else {"id": task_id, "historyLength": 0}
            try:
                task = await self._rpc(
                    route, method, _with_tenant(params, route), endpoint.headers, deadline
                )
            except AgentCallError as error:
                if error.rpc_code == RPC_TASK_NOT_FOUND:
                    # The agent lost the task (restarted, evicted it): a new
                    # attempt re-sends the message and can still succeed.
                    error.retryable = True
                raise
            if not isinstance(task, dict):
                _bad_response(route.rpc_url, "GetTask result is not a task")
            status_state = _task_state(task)
        state.saw_usage(task, _status_message(task), *_list(task.get("artifacts")))
        if status_state in _DONE_STATES:
            values = [
                value
                for artifact in _list(task.get("artifacts"))
                for value in _parts_values(artifact)
            ]
            if not values:
                values = _parts_values(_status_message(task))
            return _combine(values)
        unsuccessful = _UNSUCCESSFUL_STATES.get(status_state)
        if unsuccessful is None:
            raise AgentCallError(
                f"Agent returned a task in unexpected state {status_state!r}",
                retryable=False,
                reason=REASON_TASK_STATE,
            )
        prefix, reason, retryable = unsuccessful
        text = _status_text(task)
        raise AgentCallError(
            f"{prefix}: {text}" if text else prefix, retryable=retryable, reason=reason
        )

    async def _rpc(
        self,
        route: _Route,
        method: str,
        params: dict[str, Any],
        endpoint_headers: Mapping[str, str],
        deadline: float,
        *,
        send: bool = False,
    ) -> Any:
        """POST one JSON-RPC request and return its ``result``."""
        request = {"jsonrpc": "2.0", "id": next(self._rpc_ids), "method": method, "params": params}
        headers = {**endpoint_headers, **route.headers}
        try:
            response = await self._post(route.rpc_url, _dump(request), headers, deadline)
        except AgentCallError as error:
            # Only a failed connect proves nothing was sent; a connection that
            # broke later may have delivered the message.
            if send and isinstance(error.__cause__, aiohttp.ClientConnectorError):
                raise _stale(error) from error.__cause__
            raise
        try:
            _check_status(response)
        except AgentCallError as error:
            if send and response.status_code in _STALE_ROUTE_STATUSES:
                raise _stale(error) from None
            raise
        body = _load(response, route.rpc_url)
        if not isinstance(body, dict):
            _bad_response(route.rpc_url, "JSON-RPC response is not an object")
        error_body = body.get("error")
        if error_body is not None:
            rpc_error = _rpc_error(error_body)
            if send and rpc_error.rpc_code in _STALE_ROUTE_RPC_CODES:
                raise _stale(rpc_error)
            raise rpc_error
        if "result" not in body:
            _bad_response(route.rpc_url, "JSON-RPC response has neither result nor error")
        return body["result"]

    # --- agent cards ------------------------------------------------------------

    async def _route(self, endpoint: AgentEndpoint, deadline: float) -> tuple[_Route, bool]:
        """Return the agent's route and whether it came from the cache."""
        cached = self._routes.get(endpoint.url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], True
        fetch = self._card_fetches.get(endpoint.url)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch_route(endpoint, deadline))
            self._card_fetches[endpoint.url] = fetch
            fetch.add_done_callback(partial(self._card_fetched, endpoint.url))
        # Shielded: the fetch is shared, so one cancelled caller must not
        # cancel it for the others (it is bounded by its own deadline).
        return await asyncio.shield(fetch), False

    def _card_fetched(self, url: str, fetch: asyncio.Future[_Route]) -> None:
        if self._card_fetches.get(url) is fetch:
            del self._card_fetches[url]
        if fetch.cancelled():
            return
        # Failures are not cached: the next call fetches again. Reading the
        # exception also keeps asyncio from warning when no caller is left.
        if fetch.exception() is None:
            self._routes[url] = (time.monotonic() + self._card_ttl_s, fetch.result())

    def _forget_route(self, url: str, route: _Route) -> None:
        cached = self._routes.get(url)
        if cached is not None and cached[1] is route:
            del self._routes[url]

    async def _fetch_route(self, endpoint: AgentEndpoint, deadline: float) -> _Route:
        headers = {**endpoint.headers, "Accept": "application/json"}
        try:
            base = URL(endpoint.url)
            async with asyncio.timeout_at(deadline):
                for card_path in AGENT_CARD_PATHS:
                    card_url = str(
                        base.with_path(f"{base.path.rstrip('/')}/{card_path}", keep_query=True)
                    )
                    response = await self._get(card_url, headers, deadline)
                    if response.status_code != 404:
                        break
        except ValueError as error:  # yarl's, for a URL it cannot parse
            raise AgentCallError(
                f"Invalid agent URL {endpoint.url!r}: {error}",
                retryable=False,
                reason=REASON_INVALID_URL,
            ) from None
        except TimeoutError:
            raise AgentCallError(
                f"Timed out after {endpoint.timeout_ms}ms fetching the agent card",
                retryable=True,
                reason=REASON_TIMEOUT,
            ) from None
        _check_status(response)
        card = _load(response, card_url)
        return _route_from_card(card, card_url)

    # --- HTTP -------------------------------------------------------------------

    async def _post(
        self, url: str, content: bytes, headers: Mapping[str, str], deadline: float
    ) -> _Response:
        return await self._request("POST", url, content, headers, deadline)

    async def _get(self, url: str, headers: Mapping[str, str], deadline: float) -> _Response:
        return await self._request("GET", url, None, headers, deadline)

    async def _request(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        deadline: float,
    ) -> _Response:
        loop = asyncio.get_running_loop()
        if tracing.enabled():
            # The agent's spans join the call's trace (W3C traceparent).
            headers = dict(headers)
            tracing.inject(headers)
        resent = False
        while True:
            remaining = max(deadline - loop.time(), 0.001)
            try:
                # No redirects: following one would hide a misconfigured URL and
                # could replay credentials (and a non-idempotent POST) elsewhere.
                response = await self._session.request(
                    method,
                    url,
                    data=content,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=remaining),
                    allow_redirects=False,
                )
            except TimeoutError:  # aiohttp's own timeout errors included
                raise
            except aiohttp.ClientConnectorError as error:
                _transport_failure(url, error)
            except _BROKEN_CONNECTION as error:
                # The keep-alive race: the agent closed a pooled connection
                # (uvicorn does after 5 s idle; the worker's pool keeps them 4 s)
                # just as it was reused, and reset it before answering. aiohttp
                # does not resend a POST, so do it once on a fresh connection, as
                # Go's net/http does for requests carrying an idempotency key
                # (ours all do). A second failure is reported (retryable).
                if resent:
                    _transport_failure(url, error)
                resent = True
                continue
            except (aiohttp.ClientError, *_INVALID_URL) as error:
                _transport_failure(url, error)
            # The answer has begun: a failure from here on is reported, not resent.
            try:
                async with response:
                    body = await _read_answer(response)
            except TimeoutError:
                raise
            except aiohttp.ClientError as error:
                _transport_failure(url, error)
            return _Response(response.status, body, response.headers, response.url)


async def _read_answer(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, or an error once it is known to exceed ``MAX_AGENT_ANSWER_BYTES``
    (from its length, or as it arrives when it has none: never all in memory)."""
    if response.content_length is not None:
        if response.content_length > MAX_AGENT_ANSWER_BYTES:
            raise _answer_too_large()
        return await response.read()  # the common case, as fast as it was
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_AGENT_ANSWER_BYTES:
            raise _answer_too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _answer_too_large() -> AgentCallError:
    return AgentCallError(
        f"The agent's answer is larger than the {describe(MAX_AGENT_ANSWER_BYTES)} limit"
        " of an answer",
        retryable=False,
        reason=REASON_BAD_RESPONSE,
    )


# --- helpers: JSON ----------------------------------------------------------------


def _parse_float(text: str) -> float | int:
    value = float(text)
    if value.is_integer() and -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
        return int(value)
    return value


# Built once: json.dumps with non-default options builds an encoder per call.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dump(value: Any) -> bytes:
    try:
        return _ENCODER.encode(value).encode()
    except (TypeError, ValueError) as error:
        raise AgentCallError(
            f"Step input is not valid JSON: {error}",
            retryable=False,
            reason=REASON_INVALID_PAYLOAD,
        ) from None


def _load(response: _Response, url: str) -> Any:
    # parse_float restores integers while the C parser runs, which is cheaper
    # than walking the decoded tree afterwards.
    try:
        value = json.loads(response.content, parse_float=_parse_float)
    except ValueError:
        _bad_response(url, f"HTTP {response.status_code} body is not JSON")
    # PostgreSQL stores no U+0000 in text or jsonb, so an answer holding one could not
    # be recorded. JSON can only spell it \u0000: the byte search keeps the walk off the
    # common path, the walk tells a real NUL from an escaped backslash.
    if _NUL_ESCAPE in response.content and _holds_nul(value):
        _bad_response(url, "answer holds a NUL character (\\u0000), which cannot be stored")
    return value


_NUL_ESCAPE: Final = b"\\u0000"


def _holds_nul(value: Any) -> bool:
    """Whether a decoded JSON value has U+0000 in any string or key (iteratively: the
    value may be as deep as the parser allowed)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if any("\x00" in key for key in item):
                return True
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


# --- helpers: HTTP errors ---------------------------------------------------------


def _check_status(response: _Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    url = str(response.url)
    message = f"HTTP {status} from {url}"
    if response.is_redirect:
        message += f" (redirect to {response.headers.get('location', '?')} not followed)"
    else:
        detail = _body_excerpt(response)
        if detail:
            message += f": {detail}"
    retryable = status >= 500 or status in _RETRYABLE_4XX
    raise AgentCallError(
        _one_line(message),
        retryable=retryable,
        reason=REASON_HTTP_STATUS,
        status_code=status,
        retry_after_s=_retry_after(response) if retryable else None,
    )


def _body_excerpt(response: _Response) -> str:
    # Only bodies meant to be read: an HTML error page would drown the reason.
    content_type = response.headers.get("content-type", "")
    if not response.content or not ("json" in content_type or "text/plain" in content_type):
        return ""
    return response.content[:_MAX_MESSAGE_CHARS].decode("utf-8", "replace")


def _retry_after(response: _Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: rare for agents, not worth parsing


def _transport_failure(url: str, error: Exception) -> NoReturn:
    if isinstance(error, _INVALID_URL):
        # aiohttp's own errors say only the URL; yarl's say what is wrong with it.
        is_aiohttp = isinstance(error, aiohttp.ClientError)
        detail = "not an absolute http:// or https:// URL" if is_aiohttp else str(error)
        raise AgentCallError(
            f"Invalid agent URL {url!r}: {detail}", retryable=False, reason=REASON_INVALID_URL
        ) from error
    if isinstance(error, aiohttp.ClientConnectorError):
        root = _root_os_error(error.os_error)
        if isinstance(root, ConnectionRefusedError):
            detail = "connection refused"
        elif isinstance(error, aiohttp.ClientConnectorDNSError) or isinstance(
            root, socket.gaierror
        ):
            why = root.strerror if root is not None and root.strerror else (root or error)
            detail = f"could not resolve host ({why})"
        else:
            detail = str(root.strerror if root is not None and root.strerror else error)
        message = f"Could not connect to {url}: {detail}"
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        # Worded as httpx worded it: no answer began (a break mid-body is a
        # ClientPayloadError).
        message = f"Connection to {url} failed: Server disconnected without sending a response."
    elif isinstance(error, aiohttp.ClientResponseError):
        # An answer aiohttp could not parse as HTTP.
        message = f"Connection to {url} failed: {error.message or type(error).__name__}"
    else:
        # The connection broke mid-request (agent crashed or restarted).
        message = f"Connection to {url} failed: {error or type(error).__name__}"
    raise AgentCallError(_one_line(message), retryable=True, reason=REASON_CONNECTION) from error


def _root_os_error(error: BaseException) -> OSError | None:
    # The socket error may wrap others (a resolver's gaierror); the innermost says
    # what broke.
    found: OSError | None = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _stale(error: AgentCallError) -> _StaleRouteError:
    return _StaleRouteError(
        str(error),
        retryable=error.retryable,
        reason=error.reason,
        status_code=error.status_code,
        rpc_code=error.rpc_code,
        retry_after_s=error.retry_after_s,
    )


def _bad_response(url: str, what: str) -> NoReturn:
    raise AgentCallError(
        f"Bad response from {url}: {what}", retryable=False, reason=REASON_BAD_RESPONSE
    )


def _rpc_error(error: Any) -> AgentCallError:
    if not isinstance(error, dict):
        return AgentCallError(
            _one_line(f"JSON-RPC error: {error!r}"), retryable=False, reason=REASON_RPC_ERROR
        )
    code = error.get("code")
    message = f"JSON-RPC error {code}: {error.get('message') or 'no message'}"
    detail = _rpc_error_detail(error.get("data"))
    if detail:
        message += f" ({detail})"
    return AgentCallError(
        _one_line(message),
        # Only the server's own failure is worth another try; every other code
        # says the request itself is wrong for this agent.
        retryable=code == RPC_INTERNAL_ERROR,
        reason=REASON_RPC_ERROR,
        rpc_code=code if isinstance(code, int) else None,
    )


def _rpc_error_detail(data: Any) -> str:
    if not data:
        return ""
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        # v1.0 agents attach google.rpc.ErrorInfo; its metadata holds the detail.
        details = [
            f"{key}: {value}"
            for item in data
            if isinstance(item, dict) and isinstance(item.get("metadata"), dict)
            for key, value in item["metadata"].items()
        ]
        return "; ".join(details)
    return json.dumps(data, ensure_ascii=False, default=str)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > _MAX_MESSAGE_CHARS:
        line = line[: _MAX_MESSAGE_CHARS - 3] + "..."
    return line


# --- helpers: A2A documents ---------------------------------------------------------


def _with_tenant(params: dict[str, Any], route: _Route) -> dict[str, Any]:
    # v1.0 interfaces may name a tenant, which then travels in every request.
    if route.tenant and not route.legacy:
        params["tenant"] = route.tenant
    return params


def _route_from_card(card: Any, card_url: str) -> _Route:
    """Pick the JSON-RPC interface to use, as the a2a-sdk's ClientFactory does.

    Preference: protocol version 1.0 (patch ignored), else the first 1.x, else
    the first 0.3 <= v < 1.0, else the first interface without a version
    (spoken to as 1.0). Cards without ``supportedInterfaces`` are read the v0.3
    way: top-level ``url``, ``preferredTransport`` (default JSONRPC),
    ``protocolVersion`` (default 0.3.0) and ``additionalInterfaces``.
    """
    if not isinstance(card, dict):
        _bad_card(card_url, "it is not a JSON object")
    interfaces = (
        card.get("supportedInterfaces")
        if "supportedInterfaces" in card
        else (_legacy_interfaces(card))
    )
    best: dict[int, dict[str, Any]] = {}
    bindings: list[str] = []
    for interface in _list(interfaces):
        if not isinstance(interface, dict):
            continue
        binding = str(interface.get("protocolBinding") or "")
        bindings.append(binding)
        url = interface.get("url")
        if binding.upper() != "JSONRPC" or not isinstance(url, str) or not url:
            continue
        rank = _version_rank(interface.get("protocolVersion"))
        if rank is not None:
            best.setdefault(rank, interface)
    if not best:
        found = ", ".join(sorted(set(bindings))) or "none"
        _bad_card(card_url, f"it offers no usable JSON-RPC interface (found: {found})")
    rank = min(best)
    interface = best[rank]
    legacy = rank == 2
    try:
        rpc_url = str(URL(card_url).join(URL(interface["url"])))
    except (ValueError, TypeError):
        _bad_card(card_url, f"bad interface URL {interface['url']!r}")
    tenant = interface.get("tenant")
    return _Route(
        rpc_url=rpc_url,
        legacy=legacy,
        tenant=tenant if isinstance(tenant, str) else "",
        headers=_V03_HEADERS if legacy else _V1_HEADERS,
    )


def _legacy_interfaces(card: dict[str, Any]) -> list[dict[str, Any]]:
    main_url = card.get("url")
    if not main_url:
        return []
    version = card.get("protocolVersion") or "0.3.0"
    interfaces = [
        {
            "url": main_url,
            "protocolBinding": card.get("preferredTransport") or "JSONRPC",
            "protocolVersion": version,
        }
    ]
    interfaces.extend(
        {
            "url": extra.get("url"),
            "protocolBinding": extra.get("transport"),
            "protocolVersion": version,
        }
        for extra in _list(card.get("additionalInterfaces"))
        if isinstance(extra, dict)
    )
    return interfaces


def _version_rank(version: Any) -> int | None:
    """0: 1.0; 1: other 1.x; 2: 0.3 <= v < 1.0; 3: no version; None: unusable."""
    if not version:
        return 3
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return None
    if major == 1:
        return 0 if minor == 0 else 1
    if major == 0 and minor >= 3:
        return 2
    return None


def _bad_card(card_url: str, why: str) -> NoReturn:
    raise AgentCallError(
        f"Unusable agent card at {card_url}: {why}", retryable=False, reason=REASON_AGENT_CARD
    )


def _task_or_message(result: Any, legacy: bool) -> dict[str, Any] | None:
    """Return the task in a send result, or None when the agent sent a message."""
    if not isinstance(result, dict):
        raise AgentCallError(
            "Bad response: SendMessage result is not an object",
            retryable=False,
            reason=REASON_BAD_RESPONSE,
        )
    if not legacy:
        # v1.0: SendMessageResponse is a oneof, {"task": ...} or {"message": ...}.
        task = result.get("task")
        if isinstance(task, dict):
            return task
        if isinstance(result.get("message"), dict):
            return None
    # v0.3 (and lenient v1.0): the task or message itself, told apart by
    # `kind`, or by its fields for servers that omit `kind`.
    kind = result.get("kind")
    if kind == "task" or (kind is None and "status" in result):
        return result
    if kind == "message" or (kind is None and "messageId" in result):
        return None
    raise AgentCallError(
        "Bad response: SendMessage result is neither a task nor a message",
        retryable=False,
        reason=REASON_BAD_RESPONSE,
    )


def _task_state(task: dict[str, Any]) -> str:
    status = task.get("status")
    raw = status.get("state") if isinstance(status, dict) else None
    if not isinstance(raw, str):
        return "unspecified"
    return _STATE_NAMES.get(raw) or raw.lower()


def _status_message(task: dict[str, Any]) -> Any:
    status = task.get("status")
    return status.get("message") if isinstance(status, dict) else None


def _status_text(task: dict[str, Any]) -> str:
    """The agent's explanation in a task's status message, as one line."""
    values = _parts_values(_status_message(task))
    texts = [value for value in values if isinstance(value, str)]
    if texts:
        return _one_line(" ".join(texts))
    if values:
        return _one_line(json.dumps(_combine(values), ensure_ascii=False, default=str))
    return ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _parts_values(holder: Any) -> list[Any]:
    """The values of the parts of a message or artifact (see the module docstring)."""
    if not isinstance(holder, dict):
        return []
    values = []
    for part in _list(holder.get("parts")):
        if not isinstance(part, dict):
            continue
        if "data" in part:
            values.append(part["data"])
        elif "text" in part:
            values.append(part["text"])
        else:
            file_value = _file_value(part)
            if file_value is not None:
                values.append(file_value)
    return values


def _file_value(part: dict[str, Any]) -> dict[str, Any] | None:
    value: dict[str, Any] = {}
    legacy_file = part.get("file")
    if isinstance(legacy_file, dict):
        # v0.3 FilePart: {"kind": "file", "file": {"uri" | "bytes", "name", "mimeType"}}
        if "uri" in legacy_file:
            value["url"] = legacy_file["uri"]
        elif "bytes" in legacy_file:
            value["raw"] = legacy_file["bytes"]
        else:
            return None
        name, media_type = legacy_file.get("name"), legacy_file.get("mimeType")
    elif "url" in part or "raw" in part:
        key = "url" if "url" in part else "raw"
        value[key] = part[key]
        name, media_type = part.get("filename"), part.get("mediaType")
    else:
        return None
    if name:
        value["filename"] = name
    if media_type:
        value["mediaType"] = media_type
    return value


def _combine(values: list[Any]) -> Any:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if all(isinstance(value, dict) for value in values):
        merged: dict[str, Any] = {}
        for value in values:
            merged.update(value)
        return merged
    return values
