"""Server interceptors that wrap each method's handler once, not on every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Replaces each method's handler by ``wrap(handler, method)``, built on the first
    call of the method and reused: grpc.aio asks interceptors on every call, and
    building handlers there costs CPU on every call."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def wrap(self, handler: Handler, method: str) -> Handler:
        """The handler to use for ``method`` (e.g. ``/baton.v1.RunService/GetRun``)."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # unknown method: nothing to remember
            wrapped = self._handlers[method] = self.wrap(handler, method)
        return wrapped
