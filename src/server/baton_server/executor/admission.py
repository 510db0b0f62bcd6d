"""How many runs one worker drives at once: as many as keep its steps quick.

A worker that takes on more runs than the machine can carry makes every step of every
run wait - for the CPU, for PostgreSQL - and a run in progress then crawls through its
steps. Finishing started runs first is better: runs not yet admitted wait in the Redis
stream (PENDING, visible as executor lag) until there is room.

The limit follows the worker's step latency: the time from an agent's answer to the next
step's start (the journal commit and the worker's own queueing are most of it). Every
interval, the median over the interval is compared with the target: the configured
one plus the fastest journal commit of the last five minutes, so that the round trip to
a PostgreSQL far away does not read as overload. Over the target, the limit shrinks by
a tenth; well under it, it grows by a quarter, else by one - but only while the worker
is full, so a quiet worker keeps the limit it had. Runs whose agents are slow cost no
latency, so with such workloads the limit climbs to ``maximum``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable

_BASELINE_WINDOW_S = 300.0
_MIN_SAMPLES = 8


class Admission:
    """An adaptive limit on a worker's concurrent runs."""

    def __init__(
        self,
        *,
        maximum: int,
        target_s: float,
        initial: int = 16,
        minimum: int = 2,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.target_s = target_s
        self._limit = max(self.minimum, min(initial, maximum))
        self._interval_s = interval_s
        self._samples: list[float] = []
        self._fastest_commit = math.inf  # in this interval
        self._fastest_commits: deque[float] = deque(
            maxlen=math.ceil(_BASELINE_WINDOW_S / interval_s)
        )
        self._full = False
        self._clock = clock
        self._next_update = clock() + interval_s

    def observe(self, latency_s: float) -> None:
        """One step's latency: from its agent's answer to the next step's start."""
        self._samples.append(latency_s)

    def observe_commit(self, duration_s: float) -> None:
        """How long one journal commit took (statement sent to result)."""
        self._fastest_commit = min(self._fastest_commit, duration_s)

    def limit(self, running: int) -> int:
        """How many runs the worker may drive now, given that it drives ``running``."""
        self._full = self._full or running >= self._limit
        now = self._clock()
        if now >= self._next_update:
            self._update()
            self._next_update = now + self._interval_s
        return self._limit

    def _update(self) -> None:
        samples, self._samples = self._samples, []
        full, self._full = self._full, False
        if self._fastest_commit < math.inf:
            self._fastest_commits.append(self._fastest_commit)
            self._fastest_commit = math.inf
        if len(samples) < _MIN_SAMPLES:
            # Too few steps to judge (slow agents, or idle): no sign of overload.
            if full:
                self._limit = min(self.maximum, math.ceil(self._limit * 1.25))
            return
        median = statistics.median(samples)
        target = self.target_s + min(self._fastest_commits, default=0.0)
        if median > target:
            self._limit = max(self.minimum, math.floor(self._limit * 0.9))
        elif full:
            grown = math.ceil(self._limit * 1.25) if median < target / 2 else self._limit + 1
            self._limit = min(self.maximum, grown)
