"""Liveness probe for registered agents.

An agent counts as healthy when it answers ``GET <url>/health`` with a 2xx. The A2A
SDK serves no ``/health`` route, so a 404 (or 405) there falls back to the agent
card, which every A2A agent must publish: ``GET <url>/.well-known/agent-card.json``,
then the pre-0.3 location ``<url>/.well-known/agent.json`` if that is 404 too. A
card counts only when it is a 2xx carrying a JSON object.

The probe never raises for network trouble: timeouts, refused connections, bad
URLs and redirects all come back as an unhealthy :class:`AgentHealth` whose
``error`` says what happened, because callers store and display the result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

HEALTH_PATH = "health"
AGENT_CARD_PATHS = (".well-known/agent-card.json", ".well-known/agent.json")
# Answers that mean "no such route" rather than "the agent is in trouble".
_NO_HEALTH_ROUTE = frozenset({404, 405})
_NOT_FOUND = 404
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class AgentHealth:
    """Outcome of one probe.

    Attributes:
        healthy: True only when the final answer was a 2xx (for the agent card:
            a 2xx with a JSON object body).
        status_code: HTTP status of the final answer; None when none arrived.
        response_time_ms: Wall time of the whole probe, fallbacks included,
            rounded to 0.01 ms; None when no HTTP answer arrived.
        error: Why the agent is unhealthy; None when healthy.
    """

    healthy: bool
    status_code: int | None
    response_time_ms: float | None
    error: str | None


@dataclass(frozen=True)
class _Answer:
    """The verdict on the last HTTP response, before timing is attached."""

    healthy: bool
    status_code: int
    error: str | None


async def probe_agent(
    client: aiohttp.ClientSession,
    url: str,
    *,
    timeout_ms: int,
    headers: Mapping[str, str],
) -> AgentHealth:
    """Probe the agent at ``url`` and report whether it is alive.

    Args:
        client: Shared HTTP session (the one the agent client uses); its pool is
            reused across probes. Redirects and timeouts are set per request.
        url: The agent's base URL; it may carry a path, with or without a
            trailing slash (``/health`` and the card are looked up under it).
        timeout_ms: Budget for the whole probe, all fallbacks included.
        headers: Extra request headers, typically the agent's credentials
            (``Authorization`` or an API-key header); sent on every request.

    Returns:
        The probe outcome; network failures are reported, never raised.

    Raises:
        ValueError: If ``timeout_ms`` is not positive.
    """
    if timeout_ms <= 0:
        raise ValueError(f"timeout_ms must be positive, got {timeout_ms}")
    started = time.perf_counter()
    try:
        # One deadline over every request and every fallback, so a slow-dripping
        # server or a chain of fallbacks cannot run past the budget.
        async with asyncio.timeout(timeout_ms / 1000):
            answer = await _probe(client, URL(url), headers)
    except TimeoutError:
        return AgentHealth(False, None, None, f"Timed out after {timeout_ms}ms")
    except (aiohttp.ClientError, ValueError) as exc:
        return AgentHealth(False, None, None, _describe_failure(exc))
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    return AgentHealth(answer.healthy, answer.status_code, elapsed_ms, answer.error)


async def _probe(client: aiohttp.ClientSession, base: URL, headers: Mapping[str, str]) -> _Answer:
    answer = await _get(client, _join(base, HEALTH_PATH), headers, expect_card=False)
    if answer.status_code not in _NO_HEALTH_ROUTE:
        return answer
    for card_path in AGENT_CARD_PATHS:
        answer = await _get(client, _join(base, card_path), headers, expect_card=True)
        if answer.status_code != _NOT_FOUND:
            break
    return answer


async def _get(
    client: aiohttp.ClientSession, url: URL, headers: Mapping[str, str], *, expect_card: bool
) -> _Answer:
    async with client.get(
        url,
        headers={"Accept": "application/json", **headers},
        # A redirect is a misconfigured agent URL: following it would hide the
        # problem (and could hand credentials to another host).
        allow_redirects=False,
        # The probe's own deadline decides (probe_agent), not the session's default.
        timeout=aiohttp.ClientTimeout(total=None),
    ) as response:
        status = response.status
        if status in _REDIRECTS:
            location = response.headers.get("Location", "")
            return _Answer(False, status, f"redirected to {response.url.join(URL(location))}")
        if not 200 <= status < 300:
            return _Answer(False, status, f"HTTP {status}")
        if expect_card:
            try:
                card = json.loads(await response.read())
            except ValueError:
                return _Answer(False, status, "agent card is not valid JSON")
            if not isinstance(card, dict):
                return _Answer(False, status, "agent card is not a JSON object")
        return _Answer(True, status, None)


def _join(base: URL, path: str) -> URL:
    # Append under the agent's own path (like the A2A SDK's card resolver),
    # whether or not it ends with a slash; urljoin would drop the last segment.
    # The query is kept: some deployments route or authenticate by it.
    return base.with_path(f"{base.path.rstrip('/')}/{path}", keep_query=True)


def _describe_failure(exc: Exception) -> str:
    """Turn a transport failure into a short, human-readable reason."""
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError | ValueError):
        return f"Invalid agent URL: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"Could not resolve host: {_root_os_error_text(exc) or exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "Connection refused"
        return f"Connection failed: {_root_os_error_text(exc) or exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return f"Protocol error: {exc}"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"Connection error: {_root_os_error_text(exc) or exc}"
    return f"{type(exc).__name__}: {exc}"


def _root_os_error(exc: BaseException) -> OSError | None:
    found: OSError | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _root_os_error_text(exc: BaseException) -> str | None:
    root = _root_os_error(exc)
    if root is None:
        return None
    if root.strerror:
        return str(root.strerror)
    return str(root) or type(root).__name__
