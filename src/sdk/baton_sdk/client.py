"""The async client: :func:`connect` and :class:`BatonClient`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from baton_sdk._transport import Transport
from baton_sdk.access import Access
from baton_sdk.agents import Agents
from baton_sdk.errors import UnavailableError
from baton_sdk.options import RetryPolicy, TLSConfig
from baton_sdk.runs import Runs
from baton_sdk.schedules import Schedules
from baton_sdk.usage import ModelPrices
from baton_sdk.webhooks import Webhooks
from baton_sdk.workflows import Workflows

DEFAULT_TARGET = "localhost:50051"
"""Where :func:`connect` goes when given no target and ``BATON_SERVER`` is unset."""
DEFAULT_TIMEOUT = 30.0
"""Default deadline of every unary call, in seconds."""

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("baton-orchestrator-sdk")
    except PackageNotFoundError:
        return "unknown"


class BatonClient:
    """An async connection to a Baton server, with one attribute per resource.

    Create it with :func:`connect`; close it with :meth:`close` or by using it as an
    async context manager. A client is cheap to share: all resources multiplex over
    one HTTP/2 connection, and it is safe to use from many tasks at once (of one
    event loop).

    Attributes:
        access: Projects, API keys, the audit trail and who the caller is.
        agents: Register and manage agents.
        webhooks: Subscribe endpoints to events; their deliveries.
        schedules: Run workflows on cron expressions, intervals or at a fixed time.
        model_prices: Prices of models, for AI calls reported without a cost.
        workflows: Define, version, activate and deactivate workflows.
        runs: Start, list, watch, wait for, retry and cancel runs.
        target: The server address the client talks to.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        target: str,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Wrap an open channel; most code should call :func:`connect` instead.

        Args:
            channel: A ``grpc.aio`` channel to the server (the client closes it).
            target: The address, for messages.
            timeout: Default deadline of every unary call, in seconds.
            retry: How UNAVAILABLE is retried (default :class:`RetryPolicy`).
            metadata: gRPC metadata sent with every call.
        """
        self.target = target
        self._channel = channel
        self._transport = Transport(
            channel,
            metadata=tuple(metadata),
            timeout=timeout,
            retry=retry or RetryPolicy(),
        )
        self.access = Access(self._transport)
        self.agents = Agents(self._transport)
        self.webhooks = Webhooks(self._transport)
        self.model_prices = ModelPrices(self._transport)
        self.workflows = Workflows(self._transport)
        self.runs = Runs(self._transport)
        self.schedules = Schedules(self._transport, self.runs)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying ``grpc.aio`` channel, to call the generated stubs directly."""
        return self._channel

    @property
    def timeout(self) -> float:
        """Default deadline of every unary call, in seconds."""
        return self._transport.timeout

    async def close(self) -> None:
        """Close the connection; calls still in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> Self:
        """Return the client itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        await self.close()

    def __repr__(self) -> str:
        """Return ``BatonClient(target=...)``."""
        return f"BatonClient(target={self.target!r})"


class Connecting:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, open_client: Callable[[], Awaitable[BatonClient]]) -> None:
        """Wrap the coroutine function that opens the client."""
        self._open_client = open_client
        self._client: BatonClient | None = None

    def __await__(self) -> Generator[Any, None, BatonClient]:
        """Connect and return the client (close it yourself)."""
        return self._open_client().__await__()

    async def __aenter__(self) -> BatonClient:
        """Connect and return the client, closed when the block ends."""
        self._client = await self._open_client()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None


def _channel_credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.server_root_ca_cert,
        private_key=tls.client_private_key,
        certificate_chain=tls.client_cert,
    )


def _resolve_target(target: str | None) -> str:
    """Return ``target``, else ``$BATON_SERVER``, else ``localhost:50051``."""
    return target or os.environ.get("BATON_SERVER") or DEFAULT_TARGET


def _open_channel(
    target: str,
    *,
    tls: bool | TLSConfig,
    channel_options: Sequence[tuple[str, Any]],
) -> grpc.aio.Channel:
    """Open a ``grpc.aio`` channel with the SDK's defaults (must run in an event loop)."""
    options: dict[str, Any] = {
        "grpc.primary_user_agent": f"baton-sdk/{_sdk_version()}",
        # A restarted server is found again within a fraction of a second, so
        # retries and resumed streams do not sit out gRPC's default 1 s+ backoff.
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 2000,
        # A run's snapshot holds every step's input and output.
        "grpc.max_receive_message_length": _MAX_MESSAGE_BYTES,
    }
    if isinstance(tls, TLSConfig) and tls.domain:
        options["grpc.ssl_target_name_override"] = tls.domain
    options.update(dict(channel_options))
    if tls is False:
        return grpc.aio.insecure_channel(target, options=list(options.items()))
    config = tls if isinstance(tls, TLSConfig) else TLSConfig()
    return grpc.aio.secure_channel(
        target, _channel_credentials(config), options=list(options.items())
    )


def connect(
    target: str | None = None,
    *,
    api_key: str | None = None,
    token: str | None = None,
    tls: bool | TLSConfig = False,
    timeout: float = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    metadata: Mapping[str, str] | None = None,
    lazy: bool = False,
    connect_timeout: float = 10.0,
    channel_options: Sequence[tuple[str, Any]] = (),
) -> Connecting:
    """Connect to a Baton server.

    Use it either way::

        async with baton_sdk.connect("localhost:50051") as client:
            ...

        client = await baton_sdk.connect("localhost:50051")
        try:
            ...
        finally:
            await client.close()

    Args:
        target: ``host:port`` of the server's gRPC port; default ``$BATON_SERVER``,
            else ``localhost:50051``.
        api_key: A Baton API key, sent as ``x-api-key`` with every call; default
            ``$BATON_API_KEY``.
        token: A JWT, sent as ``authorization: Bearer <token>`` with every call (for
            a server configured to accept JWTs). Not together with ``api_key``.
        tls: ``True`` for TLS with the system's root certificates, a
            :class:`TLSConfig` for custom certificates, ``False`` for plaintext.
        timeout: Default deadline of every unary call, in seconds; each method
            also takes its own ``timeout``.
        retry: How calls failing with UNAVAILABLE are retried and streams resumed
            (default :class:`RetryPolicy`).
        metadata: Extra gRPC metadata sent with every call.
        lazy: Do not wait for the connection; the first call establishes it.
        connect_timeout: Seconds to wait for the connection unless ``lazy``.
        channel_options: Extra ``grpc.aio`` channel options (override the SDK's).

    Returns:
        An awaitable that is also an async context manager, giving a
        :class:`BatonClient`.

    Raises:
        UnavailableError: The server could not be reached within ``connect_timeout``.
    """
    resolved = _resolve_target(target)
    call_metadata = list((metadata or {}).items())
    api_key = api_key if api_key is not None else os.environ.get("BATON_API_KEY") or None
    if api_key is not None and token is not None:
        raise ValueError("give api_key or token, not both")
    if api_key is not None:
        call_metadata.append(("x-api-key", api_key))
    if token is not None:
        call_metadata.append(("authorization", f"Bearer {token}"))

    async def open_client() -> BatonClient:
        channel = _open_channel(resolved, tls=tls, channel_options=channel_options)
        if not lazy:
            try:
                await asyncio.wait_for(channel.channel_ready(), connect_timeout)
            except TimeoutError:
                await channel.close()
                raise UnavailableError(
                    f"could not connect to the Baton server at {resolved} within"
                    f" {connect_timeout:g}s"
                ) from None
        return BatonClient(
            channel, target=resolved, timeout=timeout, retry=retry, metadata=call_metadata
        )

    return Connecting(open_client)
