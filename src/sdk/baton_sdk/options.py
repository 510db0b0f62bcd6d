"""Connection options: TLS and the retry policy."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class TLSConfig:
    """TLS settings for the connection to Baton.

    Every field is optional: ``TLSConfig()`` verifies the server against the system's
    root certificates, like ``tls=True``.

    Attributes:
        server_root_ca_cert: PEM root certificates to verify the server with, instead
            of the system's.
        client_cert: PEM client certificate chain, for mutual TLS.
        client_private_key: PEM private key of ``client_cert``.
        domain: Server name to verify the certificate against, when it differs from
            the host in the target (e.g. connecting through an IP address).
    """

    server_root_ca_cert: bytes | None = None
    client_cert: bytes | None = None
    client_private_key: bytes | None = None
    domain: str | None = None


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How the SDK retries calls that failed with ``UNAVAILABLE``.

    Only idempotent calls are retried (gets, lists, deletes, activate/deactivate,
    health checks, and ``runs.execute`` when it has a ``request_id``); creating,
    updating, retrying or cancelling is never repeated behind your back. Retries stay
    within the call's deadline. Delays grow exponentially, with jitter.

    Event streams (``runs.watch``, ``runs.wait``) reconnect on a dropped connection
    and resume after the last event received; they give up once no event and no
    successful reconnection happened for ``stream_reconnect_timeout`` seconds.

    Attributes:
        max_attempts: Attempts per call, the first included (1 disables retries).
        initial_backoff: Upper bound of the first delay, in seconds.
        max_backoff: Upper bound of any delay, in seconds.
        backoff_multiplier: Growth of the delay bound per attempt.
        stream_reconnect_timeout: How long an event stream keeps trying to reconnect,
            in seconds.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    backoff_multiplier: float = 2.0
    stream_reconnect_timeout: float = 60.0

    def __post_init__(self) -> None:
        """Reject values that cannot work."""
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoffs must not be negative")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be at least 1")

    def backoff(self, retry: int) -> float:
        """Return the delay before retry number ``retry`` (1 for the first retry).

        Args:
            retry: Which retry this is, from 1.

        Returns:
            A random delay in seconds between half and all of the capped exponential
            bound.
        """
        bound = min(self.initial_backoff * self.backoff_multiplier ** (retry - 1), self.max_backoff)
        # Jitter, so clients that failed together do not come back together; half the
        # bound is kept so the retries still span a predictable window.
        return bound / 2 + random.uniform(0, bound / 2)


NO_RETRY = RetryPolicy(max_attempts=1, stream_reconnect_timeout=0.0)
"""A policy that never retries and never reconnects."""
