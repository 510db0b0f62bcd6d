"""The chaos benchmark, bounded: every fault once, under load, in one run.

``bench/chaos.py`` is the full version (1,000 runs, a worker killed every 5 s); this runs
the same code with 60 runs over ten seconds, one worker kill, one API server kill, one
Redis restart with its data deleted and one immediate PostgreSQL restart, with short
worker leases so that orphaned runs are taken over within seconds. Real processes
throughout: its own PostgreSQL and Redis, two ``baton serve``, two ``baton worker``, the
lean A2A agent.
"""

from __future__ import annotations

from bench import chaos


async def test_every_fault_at_once_loses_nothing_and_answers_no_internal_error() -> None:
    options = "--runs 60 --rate 6 --kill-every 6 --fast-recovery --settle-s 60"
    args = chaos.parse_args([*options.split(), "--agent-delay-ms", "200"])
    report = await chaos.run(args)
    rendered = "\n".join(chaos.render(report))

    assert sorted(f["kind"] for f in report.faults) == [
        "API server kill -9",
        "PostgreSQL immediate restart",
        "Redis kill -9, data deleted",
        "worker kill -9",
    ], rendered
    assert (report.accepted, report.completed) == (60, 60), rendered
    assert (report.lost, report.stuck, report.wrong_output) == (0, 0, 0), rendered
    assert report.unexplained_duplicates == 0, rendered
    assert not report.forbidden_answers, rendered
    # Runs of the killed worker are taken over once their 3 s lease has expired.
    assert report.orphan_progress_max_s < 15, rendered
    assert report.ok, rendered
