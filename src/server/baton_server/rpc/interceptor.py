"""Wraps every RPC handler: admit the caller, validate the request, run it, map any
error to a status.

Doing this once, around the handlers, keeps servicers free of ``try``/``except`` and
guarantees that no RPC answers with an unmapped error, skips access control or skips
validation. The caller is admitted before the request is validated, so a caller
without access learns nothing from the answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import DecodeError, Message
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from baton_server.access import context as calls
from baton_server.access.guard import AccessGuard
from baton_server.access.rules import MethodRule
from baton_server.errors import BatonError, InvalidArgument, Unavailable
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
    call = calls.current_call()
    # Rate-limit headers go with errors too; a trailers-only answer carries them as
    # headers (REST: on the 4xx response).
    headers: tuple[tuple[str, str], ...] = (
        tuple(call.headers) if call is not None and not call.headers_sent else ()
    )
    if isinstance(error, BatonError):
        headers = (*headers, *error.headers)
        status = to_grpc_status(error)
    elif _unreachable_dependency(error):
        log.warning("dependency unavailable: %s", error)
        status = to_grpc_status(
            Unavailable("a dependency is unavailable; retry", reason="DEPENDENCY_UNAVAILABLE")
        )
    else:
        log.exception("unexpected error", exc_info=error)
        status = internal_status()
    await context.abort(status.code, status.details, (*status.trailing_metadata, *headers))


class _Undecodable:
    """What a request that is not a valid message of its type (a string field that is
    not UTF-8, say) becomes, so that the handler can answer INVALID_ARGUMENT instead of
    grpc answering UNKNOWN with the parser's exception text."""


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return _Undecodable()

    return parse


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            "invalid request: it is not a valid message (is every string valid UTF-8?)",
            reason="INVALID_REQUEST",
        )


class ErrorMappingInterceptor(WrappingInterceptor):
    """Admits callers, validates requests against the contract and maps domain errors
    to statuses. Methods without a rule (grpc.health.v1, reflection) are public."""

    def __init__(self, guard: AccessGuard, rules: dict[str, MethodRule]) -> None:
        super().__init__()
        self._guard = guard
        self._rules = rules

    def wrap(self, handler: Handler, method: str) -> Handler:
        if handler.request_streaming:
            return handler
        rule = self._rules.get(method)
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, rule),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, rule),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _admit(
        self, rule: MethodRule | None, context: grpc.aio.ServicerContext[Any, Any]
    ) -> calls.Call | None:
        if rule is None:
            return None
        metadata = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }
        return await self._guard.admit(rule, metadata, context)

    def _wrap_unary(
        self, inner: Callable[..., Any], rule: MethodRule | None
    ) -> Callable[..., Awaitable[Any]]:
        guard = self._guard

        async def handle(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                call = await self._admit(rule, context)
                _check_decoded(request)
                validate_request(request)
                response = await inner(request, context)
                if call is not None:
                    assert rule is not None
                    await calls.send_headers(context)
                    guard.record(rule, call, request, response)
                return response
            except Exception as error:
                if isinstance(error, grpc.aio.AbortError):
                    raise
                await _abort(context, error)

        return handle

    def _wrap_stream(
        self, inner: Callable[..., Any], rule: MethodRule | None
    ) -> Callable[..., AsyncIterator[Any]]:
        async def handle(
            request: Message, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                call = await self._admit(rule, context)
                _check_decoded(request)
                validate_request(request)
                async for response in inner(request, context):
                    if call is not None and not call.headers_sent:
                        # With the first message, not before: an error before it is
                        # then still a plain status (REST: a 4xx, not a 200 stream).
                        await calls.send_headers(context)
                    yield response
            except Exception as error:
                if isinstance(error, grpc.aio.AbortError):
                    raise
                await _abort(context, error)

        return handle
