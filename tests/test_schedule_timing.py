"""When schedules fire: cron in IANA time zones across daylight-saving changes,
intervals and fixed times. Pure computation, no services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from baton_server.schedules.timing import Timing, TimingError, check_cron, interval_of, zone

ZURICH = ZoneInfo("Europe/Zurich")
NOW = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)


def cron(expression: str, tz: ZoneInfo = ZURICH) -> Timing:
    return Timing(tz=tz, anchor=NOW, cron=expression)


def test_a_daily_local_time_stays_local_on_both_sides_of_daylight_saving_changes() -> None:
    spring = cron("0 9 * * *").upcoming(
        cron("0 9 * * *").next_after(datetime(2026, 3, 27, 12, tzinfo=UTC)), 4
    )
    assert [t.astimezone(ZURICH).hour for t in spring] == [9, 9, 9, 9]
    assert [t.astimezone(UTC).hour for t in spring] == [8, 7, 7, 7]  # CET, then CEST

    autumn_start = datetime(2026, 10, 23, 12, tzinfo=UTC)
    autumn = cron("0 9 * * *").upcoming(cron("0 9 * * *").next_after(autumn_start), 4)
    assert [t.astimezone(ZURICH).hour for t in autumn] == [9, 9, 9, 9]
    assert [t.astimezone(UTC).hour for t in autumn] == [7, 8, 8, 8]


def test_a_local_time_that_does_not_exist_fires_once_at_the_next_valid_instant() -> None:
    timing = cron("30 2 * * *")
    fires = timing.upcoming(timing.next_after(datetime(2026, 3, 27, 12, tzinfo=UTC)), 3)
    # 2026-03-29 02:30 does not exist in Zurich (02:00 -> 03:00).
    assert [t.astimezone(ZURICH).strftime("%d %H:%M") for t in fires] == [
        "28 02:30",
        "29 03:00",
        "30 02:30",
    ]


def test_an_ambiguous_local_time_fires_once() -> None:
    timing = cron("30 2 * * *")
    fires = timing.upcoming(timing.next_after(datetime(2026, 10, 24, 12, tzinfo=UTC)), 2)
    # 2026-10-25 02:30 happens twice in Zurich (03:00 -> 02:00): only the first fires.
    assert fires[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert fires[1] == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_the_latest_slot_at_or_before_a_moment() -> None:
    timing = cron("*/15 * * * *", ZoneInfo("UTC"))
    at = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert timing.latest_until(at) == at
    assert timing.latest_until(at + timedelta(seconds=59.5)) == at
    assert timing.latest_until(at - timedelta(microseconds=1)) == at - timedelta(minutes=15)
    assert timing.count(at - timedelta(hours=1), at) == 5


def test_intervals_count_elapsed_time_from_their_anchor() -> None:
    timing = Timing(tz=ZURICH, anchor=NOW, interval=interval_of(90, "seconds"))
    assert timing.next_after(NOW - timedelta(days=1)) == NOW + timedelta(seconds=90)
    assert timing.next_after(NOW + timedelta(seconds=90)) == NOW + timedelta(seconds=180)
    assert timing.latest_until(NOW + timedelta(seconds=100)) == NOW + timedelta(seconds=90)
    assert timing.latest_until(NOW + timedelta(seconds=10)) is None
    assert timing.count(NOW + timedelta(seconds=90), NOW + timedelta(seconds=900)) == 10


def test_a_fixed_time_is_one_slot() -> None:
    moment = NOW + timedelta(hours=1)
    timing = Timing(tz=ZURICH, anchor=NOW, fixed=moment)
    assert timing.upcoming(timing.next_after(NOW), 5) == [moment]
    assert timing.next_after(moment) is None
    assert timing.latest_until(moment) == moment


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "invalid cron expression"),
        ("0 0 * * * *", "5 fields"),
        ("@daily", "5 fields"),
        ("0 0 30 2 *", "invalid cron expression"),
        ("", "5 fields"),
    ],
)
def test_bad_cron_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(TimingError, match=message) as raised:
        check_cron(expression, ZURICH, NOW)
    assert raised.value.field == "cron_expression"


def test_bad_time_zones_and_intervals_name_their_field() -> None:
    for name in ("Mars/Olympus", "../../etc/passwd", ""):
        with pytest.raises(TimingError) as raised:
            zone(name)
        assert raised.value.field == "timezone"
    for value, unit in ((0, "seconds"), (-5, "minutes"), (367, "days")):
        with pytest.raises(TimingError) as raised:
            interval_of(value, unit)
        assert raised.value.field == "interval_value"
