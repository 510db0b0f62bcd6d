"""One Redis pub/sub connection per process, shared by every watcher in it.

Watchers subscribe to a channel (one run's events, or the run feed) and get a bounded
queue. The hub never waits for a watcher: when a queue is full the watcher is marked
``overflowed`` and stops receiving, so a slow or stuck subscriber costs the executor and
the other watchers nothing; it then catches up from PostgreSQL (or, for the feed, is told
it lagged). When the Redis connection drops, every watcher is marked ``interrupted`` so
it checks PostgreSQL for what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis
from prometheus_client import Gauge
from redis.exceptions import RedisError

from baton_server.events import codec
from baton_server.runs.model import RunEvent
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SUBSCRIBERS = Gauge("baton_event_subscribers", "Open event subscriptions (WatchRun/WatchRuns)")


class Subscription:
    """A watcher's end: a bounded queue of events and two flags."""

    def __init__(self, channel: str, capacity: int) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[tuple[RunEvent, str]] = asyncio.Queue(capacity)
        self.overflowed = False
        self.interrupted = asyncio.Event()

    def reset(self) -> None:
        """Forget queued events and flags; the watcher re-reads PostgreSQL next."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.overflowed = False
        self.interrupted.clear()

    def offer(self, item: tuple[RunEvent, str]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.interrupted.set()

    async def next(self, wait_s: float) -> tuple[RunEvent, str] | None:
        """The next event, or None after ``wait_s`` seconds or when interrupted."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        if self.interrupted.is_set():
            return None
        getter = asyncio.ensure_future(self.queue.get())
        waker = asyncio.ensure_future(self.interrupted.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, waker}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waker.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done and not getter.cancelled():
            return getter.result()
        return None


class EventHub:
    """Fans Redis pub/sub messages out to in-process subscriptions."""

    def __init__(self, client: redis.Redis, *, queue_capacity: int = 1000) -> None:
        self._redis = client
        self._capacity = queue_capacity
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._pubsub: Any = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event hub")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Receive messages of ``channel`` for the duration of the block."""
        subscription = Subscription(channel, self._capacity)
        first = not self._subscribers[channel]
        self._subscribers[channel].add(subscription)
        SUBSCRIBERS.inc()
        try:
            if first and self._pubsub is not None:
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError):
                    subscription.interrupted.set()
            yield subscription
        finally:
            SUBSCRIBERS.dec()
            remaining = self._subscribers[channel]
            remaining.discard(subscription)
            if not remaining:
                del self._subscribers[channel]
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                # A placeholder keeps the connection in subscribed mode when idle.
                await pubsub.subscribe("baton:hub", *self._subscribers)
                self._pubsub = pubsub
                delay = 0.1
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = message["channel"].decode()
                    subscribers = self._subscribers.get(channel)
                    if subscribers:
                        item = codec.decode(message["data"])
                        for subscription in list(subscribers):
                            subscription.offer(item)
            except (RedisError, OSError) as error:
                log.warning("event hub lost Redis (%s); watchers fall back to PostgreSQL", error)
            finally:
                self._pubsub = None
                for subscribers in self._subscribers.values():
                    for subscription in subscribers:
                        subscription.interrupted.set()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
