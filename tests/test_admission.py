"""The worker's admission limit: it follows step latency, not a fixed count."""

from __future__ import annotations

from baton_server.executor.admission import Admission


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def interval(
    admission: Admission, clock: Clock, *, running: int, latency_ms: float, steps: int = 20
) -> int:
    """One interval: ``steps`` step latencies observed while driving ``running`` runs."""
    for _ in range(steps):
        admission.observe(latency_ms / 1000)
    admission.limit(running)
    clock.now += 0.5
    return admission.limit(running)


def limiter(**options: float) -> tuple[Admission, Clock]:
    clock = Clock()
    settings = {"maximum": 100, "target_s": 0.002, "initial": 16, **options}
    admission = Admission(
        maximum=int(settings["maximum"]),
        target_s=settings["target_s"],
        initial=int(settings["initial"]),
        clock=clock,
    )
    return admission, clock


def test_a_full_worker_with_quick_steps_takes_more_runs() -> None:
    admission, clock = limiter()
    assert interval(admission, clock, running=16, latency_ms=0.5) == 20  # far under: +25%
    assert interval(admission, clock, running=20, latency_ms=1.5) == 21  # under: +1
    limits = [interval(admission, clock, running=100, latency_ms=0.5) for _ in range(20)]
    assert limits[-1] == 100  # never past the maximum


def test_slow_steps_shrink_the_limit_while_shrinking_helps() -> None:
    admission, clock = limiter()
    # Latency that follows the number of runs: each shrink helps, down to the target.
    limit, limits = 16, []
    for _ in range(10):
        limit = interval(admission, clock, running=limit, latency_ms=limit * 0.3)
        limits.append(limit)
    assert limits[:6] == [14, 12, 10, 9, 8, 7]
    assert set(limits[6:]) <= {6, 7}  # 1.8 / 2.1 ms: around the 2 ms target
    # Far over and improving with every shrink, the limit goes down to the minimum.
    admission, clock = limiter()
    latency = 100.0
    for _ in range(30):  # 100 ms down to 4.2 ms: over the target throughout
        interval(admission, clock, running=16, latency_ms=latency)
        latency *= 0.9
    assert admission.limit(16) == admission.minimum == 2


def test_shrinking_that_does_not_help_stops_until_latency_gets_worse() -> None:
    # Latency that fewer runs do not change (a slow database, a busy machine): three
    # shrinks without effect, then the limit holds instead of sinking to the minimum.
    admission, clock = limiter()
    limits = [interval(admission, clock, running=16, latency_ms=5) for _ in range(20)]
    assert limits[:3] == [14, 12, 10]
    assert set(limits[3:]) == {10}
    # Half as slow again is a new overload: it shrinks again.
    assert interval(admission, clock, running=10, latency_ms=8) == 9
    # Once under the target it grows as usual, and a later overload shrinks at once.
    assert interval(admission, clock, running=9, latency_ms=1.5) == 10
    assert interval(admission, clock, running=10, latency_ms=5) == 9


def test_a_worker_that_is_not_full_keeps_its_limit() -> None:
    admission, clock = limiter()
    assert interval(admission, clock, running=3, latency_ms=0.5) == 16
    assert interval(admission, clock, running=0, latency_ms=0.5, steps=0) == 16


def test_too_few_steps_to_judge_is_no_sign_of_overload() -> None:
    """Slow agents: few step transitions per interval, and a full worker grows."""
    admission, clock = limiter()
    assert interval(admission, clock, running=16, latency_ms=50, steps=3) == 20


def test_the_round_trip_to_postgresql_is_not_overload() -> None:
    admission, clock = limiter()
    admission.observe_commit(0.004)  # PostgreSQL 4 ms away: steps take 5 ms at best
    assert interval(admission, clock, running=16, latency_ms=5) == 17
    assert interval(admission, clock, running=17, latency_ms=7) == 15


def test_the_slowest_steps_decide_not_the_median() -> None:
    # A quick median with a tail over the target (2 of 100 steps) is overload.
    admission, clock = limiter()
    for _ in range(98):
        admission.observe(0.0005)
    for _ in range(2):
        admission.observe(0.005)
    admission.limit(16)
    clock.now += 0.5
    assert admission.limit(16) == 14


def test_busy_once_steps_pass_half_the_budget() -> None:
    admission, clock = limiter()
    assert not admission.busy
    interval(admission, clock, running=4, latency_ms=0.5)
    assert not admission.busy
    interval(admission, clock, running=4, latency_ms=1.5)  # under 2 ms, past half of it
    assert admission.busy
    interval(admission, clock, running=4, latency_ms=0.5, steps=0)  # nothing to judge
    assert not admission.busy
