"""Counts and times every RPC for Prometheus (``GET /metrics``).

Registered as the outermost interceptor, so it sees the status code the client gets,
after validation and error mapping. The metrics live in prometheus_client's default
registry, created once per process (several servers in one process share them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from baton_server.rpc.wrapping import Handler, WrappingInterceptor

_Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

REQUESTS = Counter(
    "baton_rpc_requests",
    "RPCs handled (REST requests included: Envoy turns them into RPCs), by final status.",
    ["service", "method", "code"],
)
LATENCY = Histogram(
    "baton_rpc_duration_seconds",
    "Time to handle a unary RPC, by method (streams are counted, not timed).",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def _names(method: str) -> tuple[str, str]:
    """``/baton.v1.RunService/GetRun`` -> (``baton.v1.RunService``, ``GetRun``)."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _code(context: _Context, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return grpc.StatusCode.OK.name
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    return grpc.StatusCode.UNKNOWN.name


class MetricsInterceptor(WrappingInterceptor):
    """Records ``baton_rpc_requests_total`` and ``baton_rpc_duration_seconds``."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        service, name = _names(method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _timed_unary(handler.unary_unary, service, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _counted_stream(handler.unary_stream, service, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _counted_stream(handler.stream_stream, service, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client streaming: Baton has none


def _timed_unary(
    inner: Callable[..., Any], service: str, method: str
) -> Callable[..., Awaitable[Any]]:
    latency = LATENCY.labels(service, method)

    async def handle(request: Message, context: _Context) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await inner(request, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            latency.observe(time.perf_counter() - started)
            REQUESTS.labels(service, method, _code(context, error)).inc()

    return handle


def _counted_stream(
    inner: Callable[..., Any], service: str, method: str
) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: _Context) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            async for response in inner(request, context):
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            REQUESTS.labels(service, method, _code(context, error)).inc()

    return handle
