"""How many runs one worker drives at once: as many as keep its steps within budget.

A worker that takes on more runs than the machine can carry makes every step of every
run wait - for the CPU, for PostgreSQL - and a run in progress then crawls through its
steps. Finishing started runs first is better: runs not yet admitted wait in the Redis
stream (PENDING, visible as executor lag) until there is room.

The limit follows the worker's step latency: the time from an agent's answer to the next
step's start (the journal commit and the worker's own queueing are most of it). Every
interval, the interval's 99th percentile is compared with the target: the configured
budget plus the fastest journal commit of the last five minutes, so that the round trip
to a PostgreSQL far away does not read as overload. The percentile, not the median: a
budget for the slowest steps lets the worker use the machine (a 2 ms median target left
a third of two cores idle) while still bounding what any step waits. Over the target,
the limit shrinks by a tenth; well under it, it grows by a quarter, else by one - but
only while the worker is full, so a quiet worker keeps the limit it had. Runs whose
agents are slow cost no latency, so with such workloads the limit climbs to ``maximum``.

Shrinking stops when it stops helping: after three shrinks in a row (about a quarter
fewer runs) that did not bring the percentile 5% under where they started, the steps are
slow for a reason fewer runs do not remove (a slow or shared database, a machine busy
with other work), and the limit holds instead of sinking to ``minimum``, which would only
give up throughput. Three, not one: one interval's figure is noisy. The limit shrinks
again once the percentile rises half as much again (a new overload), and grows as usual
once it is under the target.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

_BASELINE_WINDOW_S = 300.0
_MIN_SAMPLES = 8
#: Shrinks helped if the percentile fell below this share of the one before them.
_HELPED = 0.95
#: Shrinks in a row that did not help, after which the limit holds.
_FRUITLESS = 3
#: While holding, a percentile this many times the one it held at is a new overload.
_WORSE = 1.5


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


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
        # While over the target: the percentile before the shrinks that did not help yet,
        # how many those are, and the percentile the limit holds at (None: not holding).
        self._shrinking_from: float | None = None
        self._fruitless = 0
        self._held_at: float | None = None
        #: The last interval's steps were past half the budget: the machine is busy even
        #: if runs are not held back (deliverers yield to it, see webhooks/delivery.py).
        self.busy = False
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
            self.busy = False
            if full:
                self._limit = min(self.maximum, math.ceil(self._limit * 1.25))
            return
        slowest = _p99(samples)
        target = self.target_s + min(self._fastest_commits, default=0.0)
        self.busy = slowest > target / 2
        if slowest > target:
            self._over_target(slowest)
            return
        self._shrinking_from = self._held_at = None
        self._fruitless = 0
        if full:
            grown = math.ceil(self._limit * 1.25) if slowest < target / 2 else self._limit + 1
            self._limit = min(self.maximum, grown)

    def _over_target(self, slowest: float) -> None:
        if self._held_at is not None:
            if slowest <= self._held_at * _WORSE:
                return
            self._held_at = self._shrinking_from = None  # a new overload
        if self._shrinking_from is None or slowest < self._shrinking_from * _HELPED:
            self._shrinking_from, self._fruitless = slowest, 0
        else:
            self._fruitless += 1
            if self._fruitless >= _FRUITLESS:
                self._held_at = slowest
                return
        self._limit = max(self.minimum, math.floor(self._limit * 0.9))
