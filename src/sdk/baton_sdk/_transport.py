"""How every call goes out: deadline, metadata, retries on UNAVAILABLE, error mapping."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

import grpc

from baton_sdk.errors import DeadlineExceededError, error_from_rpc
from baton_sdk.options import RetryPolicy

Request = TypeVar("Request")
Response = TypeVar("Response")

Metadata = tuple[tuple[str, str], ...]


class Transport:
    """The channel plus the call policy shared by every resource of a client."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        metadata: Metadata,
        timeout: float,
        retry: RetryPolicy,
    ) -> None:
        self.channel = channel
        self.metadata = metadata
        self.timeout = timeout
        self.retry = retry

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        *,
        timeout: float | None,
        idempotent: bool,
    ) -> Response:
        """Make one unary call within ``timeout`` (the client default when ``None``).

        UNAVAILABLE is retried with backoff, within the same deadline, but only for
        ``idempotent`` calls: for the others a lost answer may mean the change
        happened, and repeating it could do it twice.
        """
        total = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + total
        attempt = 1
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    f"no answer within the {total:g}s deadline ({attempt - 1} attempts)"
                )
            try:
                return await method(request, timeout=remaining, metadata=self.metadata)
            except grpc.aio.AioRpcError as error:
                retryable = (
                    idempotent
                    and error.code() == grpc.StatusCode.UNAVAILABLE
                    and attempt < self.retry.max_attempts
                )
                delay = self.retry.backoff(attempt) if retryable else 0.0
                if not retryable or time.monotonic() + delay >= deadline:
                    raise error_from_rpc(error) from error
            await asyncio.sleep(delay)
            attempt += 1
