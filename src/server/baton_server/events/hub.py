"""One Redis pub/sub connection per process, shared by every listener in it.

Listeners attach to a channel (one run's events, or the run feed) and are handed each
decoded message synchronously, in the hub's task; they must not block. The usual
listener is a :class:`Subscription`: a bounded buffer that one watcher drains. The hub
never waits for a watcher: when a buffer is full the watcher is marked ``overflowed``
and stops receiving, so a slow or stuck subscriber costs the executor and the other
watchers nothing; it then catches up from PostgreSQL (or, for the feed, is told it
lagged). When the Redis connection drops, every listener is interrupted so it checks
PostgreSQL for what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as redis
from prometheus_client import Gauge
from redis.exceptions import RedisError

from baton_server.events import codec
from baton_server.runs.model import RunEvent
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SUBSCRIBERS = Gauge("baton_event_subscribers", "Open event subscriptions (WatchRun/WatchRuns)")

#: An event and the id of its run's workflow.
Item = tuple[RunEvent, str]


class Listener(Protocol):
    """What the hub hands messages to."""

    def offer(self, item: Item) -> None:
        """Take one message of the channel; called in the hub's task, must not block."""

    def interrupt(self) -> None:
        """Messages may have been lost (Redis dropped)."""


class Subscription:
    """A watcher's end: a bounded buffer of events and two flags."""

    def __init__(self, channel: str, capacity: int) -> None:
        self.channel = channel
        self._items: deque[Item] = deque()
        self._capacity = capacity
        self._waiter: asyncio.Future[None] | None = None
        self._idle = False
        self.overflowed = False
        self.interrupted = False

    def reset(self) -> None:
        """Forget buffered events and flags; the watcher re-reads PostgreSQL next."""
        self._items.clear()
        self.overflowed = False
        self.interrupted = False

    def offer(self, item: Item) -> None:
        if self.overflowed:
            return
        if len(self._items) >= self._capacity:
            self.overflowed = True
            self.interrupt()
            return
        self._items.append(item)
        self._wake()

    def interrupt(self) -> None:
        self.interrupted = True
        self._wake()

    def tick(self) -> None:
        """The hub's idle clock: a watcher that waited through a whole tick is woken
        empty-handed (so it checks PostgreSQL in case a message was lost)."""
        if self._idle:
            self._wake()
        self._idle = True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Item | None:
        """The next event; None when interrupted, or after a quiet while."""
        if not self._items and not self.interrupted:
            # One bare future per wait, and no timer of its own: with thousands of
            # watchers, waking each one must cost as little as possible.
            self._idle = False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft() if self._items else None


class EventHub:
    """Fans Redis pub/sub messages out to in-process listeners."""

    def __init__(
        self, client: redis.Redis, *, queue_capacity: int = 1000, idle_check_s: float = 5.0
    ) -> None:
        self._redis = client
        self._capacity = queue_capacity
        self._idle_check_s = idle_check_s
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._subscriptions: set[Subscription] = set()
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="event hub"),
            asyncio.create_task(self._tick(), name="event hub idle clock"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)

    def listen(self, channel: str, listener: Listener) -> None:
        """Attach ``listener`` to ``channel`` for the hub's lifetime (call before start)."""
        self._listeners[channel].add(listener)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Receive messages of ``channel`` for the duration of the block."""
        subscription = Subscription(channel, self._capacity)
        first = not self._listeners[channel]
        self._listeners[channel].add(subscription)
        self._subscriptions.add(subscription)
        SUBSCRIBERS.inc()
        try:
            if first and self._pubsub is not None:
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError):
                    subscription.interrupt()
            yield subscription
        finally:
            SUBSCRIBERS.dec()
            self._subscriptions.discard(subscription)
            remaining = self._listeners[channel]
            remaining.discard(subscription)
            if not remaining:
                del self._listeners[channel]
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(channel)

    async def _tick(self) -> None:
        """One clock for every subscription: a quiet one is woken after between one
        and two ``idle_check_s / 2`` periods."""
        while True:
            await asyncio.sleep(self._idle_check_s / 2)
            for subscription in list(self._subscriptions):
                subscription.tick()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                # A placeholder keeps the connection in subscribed mode when idle.
                await pubsub.subscribe("baton:hub", *self._listeners)
                self._pubsub = pubsub
                delay = 0.1
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    listeners = self._listeners.get(message["channel"].decode())
                    if listeners:
                        for item in codec.decode(message["data"]):
                            for listener in list(listeners):
                                listener.offer(item)
            except (RedisError, OSError) as error:
                log.warning("event hub lost Redis (%s); watchers fall back to PostgreSQL", error)
            finally:
                self._pubsub = None
                for listeners in self._listeners.values():
                    for listener in listeners:
                        listener.interrupt()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
