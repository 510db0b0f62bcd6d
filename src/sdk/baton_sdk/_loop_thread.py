"""An event loop on a private thread, so blocking code can drive the async client.

Running the async client on its own loop (instead of ``asyncio.run`` per call) keeps
one connection for the client's lifetime and works where a loop is already running
in the caller's thread, as in Jupyter notebooks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, TypeVar, cast

T = TypeVar("T")
_EXHAUSTED = object()


class LoopThread:
    """A daemon thread running an asyncio event loop until :meth:`stop`."""

    def __init__(self, name: str = "baton-sdk") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block until it is done.

        If the waiting thread is interrupted (Ctrl-C), the coroutine is cancelled
        too, so no call keeps running unseen.
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a synchronous Baton call cannot be made from the SDK's loop")
        if not self._loop.is_running() and self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Generator[T, None, None]:
        """Iterate ``iterator`` from blocking code, one item per round trip."""

        # The task fetching the next item, if one is in flight. A Ctrl-C can leave
        # one running (the interrupt may land before the caller even holds its
        # future); closing must stop it first, as a running async generator cannot
        # be closed.
        fetching: set[asyncio.Task[object]] = set()

        async def step() -> object:
            task = asyncio.current_task()
            assert task is not None
            fetching.add(task)
            try:
                return await anext(iterator)
            except StopAsyncIteration:
                return _EXHAUSTED
            finally:
                fetching.discard(task)

        async def close() -> None:
            for task in list(fetching):
                task.cancel()
            await asyncio.gather(*fetching, return_exceptions=True)
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

        def items() -> Generator[T, None, None]:
            try:
                while True:
                    item = self.run(step())
                    if item is _EXHAUSTED:
                        return
                    yield cast(T, item)
            finally:
                if threading.current_thread() is self._thread:
                    # Garbage-collected on the loop's own thread: cannot block here.
                    self._loop.create_task(close())
                elif self._thread.is_alive():
                    self.run(close())

        return items()

    @property
    def alive(self) -> bool:
        """Whether the loop still runs (until :meth:`stop`)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the loop and wait for the thread to end."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
