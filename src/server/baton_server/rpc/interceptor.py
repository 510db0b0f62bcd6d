"""Wraps every RPC handler: validate the request, run it, map any error to a status.

Doing this once, around the handlers, keeps servicers free of ``try``/``except`` and
guarantees that no RPC answers with an unmapped error or skips validation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import Message
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from baton_server.errors import BatonError, Unavailable
from baton_server.rpc.status import internal_status, to_grpc_status
from baton_server.rpc.validation import validate_request
from baton_server.rpc.wrapping import Handler, WrappingInterceptor

log = logging.getLogger(__name__)


# What asyncpg (the runs hot path) and redis-py raise when their server is away.
_UNREACHABLE = (
    OSError,
    RedisConnectionError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


def _unreachable_dependency(error: Exception) -> bool:
    """PostgreSQL or Redis could not be reached: the call may succeed if retried."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    return isinstance(error, _UNREACHABLE)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> None:
    if isinstance(error, BatonError):
        status = to_grpc_status(error)
    elif _unreachable_dependency(error):
        log.warning("dependency unavailable: %s", error)
        status = to_grpc_status(
            Unavailable("a dependency is unavailable; retry", reason="DEPENDENCY_UNAVAILABLE")
        )
    else:
        log.exception("unexpected error", exc_info=error)
        status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


class ErrorMappingInterceptor(WrappingInterceptor):
    """Validates requests against the contract and maps domain errors to statuses."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        if handler.request_streaming:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _wrap_unary(inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            validate_request(request)
            return await inner(request, context)
        except Exception as error:
            if isinstance(error, grpc.aio.AbortError):
                raise
            await _abort(context, error)

    return handle


def _wrap_stream(inner: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def handle(
        request: Message, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            validate_request(request)
            async for response in inner(request, context):
                yield response
        except Exception as error:
            if isinstance(error, grpc.aio.AbortError):
                raise
            await _abort(context, error)

    return handle
