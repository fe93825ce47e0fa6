"""GFS retention with restic's semantics, against sets worked out by hand from the calendar."""

import calendar
from datetime import UTC, datetime, timedelta

from workers.operations.gfs import Policy, select

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2025, 12, 31, 23, tzinfo=UTC)


def hourly_history() -> list[datetime]:
    hours = int((END - START) / timedelta(hours=1)) + 1
    return [START + timedelta(hours=h) for h in range(hours)]


def expected_two_years() -> set[datetime]:
    """What the defaults (24 hourly, 30 daily, 12 weekly, 84 monthly) keep of 2024-2025."""
    keep = {END - timedelta(hours=h) for h in range(24)}  # the last 24 hours
    keep |= {datetime(2025, 12, d, 23, tzinfo=UTC) for d in range(2, 32)}  # the last 30 days
    # Weeks: 2025-12-31 (a Wednesday) is in ISO week 2026-W01; the 11 weeks
    # before end on Sundays at 23:00: 28, 21, 14, 7 Dec, 30, 23, 16, 9, 2 Nov, 26, 19 Oct.
    keep.add(END)
    sunday = datetime(2025, 12, 28, 23, tzinfo=UTC)
    keep |= {sunday - timedelta(weeks=w) for w in range(11)}
    assert min(k for k in keep if k.weekday() == 6) == datetime(2025, 10, 19, 23, tzinfo=UTC)
    # Months: the last hour of each of the 24 months; 60 counts are left over,
    # so the oldest backup is kept as well.
    for year in (2024, 2025):
        for month in range(1, 13):
            last_day = calendar.monthrange(year, month)[1]
            keep.add(datetime(year, month, last_day, 23, tzinfo=UTC))
    keep.add(START)
    return keep


def test_two_years_of_hourly_backups_keep_exactly_the_expected_set() -> None:
    history = hourly_history()
    assert len(history) == 17544  # 2024 is a leap year
    kept = select([(moment, moment) for moment in history], Policy())
    assert set(kept) == expected_two_years()
    # 24 hours; 29 more days; 7 more Sundays (4 fall in those days); 22 more month
    # ends (Dec 2025 is the newest, 30 Nov 2025 a Sunday); the oldest.
    assert len(kept) == 24 + 29 + 7 + 22 + 1
    assert kept[END] == ["hourly", "daily", "weekly", "monthly"]
    assert kept[START] == ["oldest monthly"]


def test_periods_without_a_backup_are_skipped_not_counted() -> None:
    days = [datetime(2025, 3, d, 12, tzinfo=UTC) for d in (1, 5, 9, 20)]
    kept = select([(d, d) for d in days], Policy(hourly=0, daily=3, weekly=0, monthly=0))
    assert set(kept) == set(days[1:])  # three days that have a backup, not the last three dates


def test_the_newest_of_each_period_is_kept() -> None:
    moments = [datetime(2025, 3, 1, h, m, tzinfo=UTC) for h in (1, 2) for m in (0, 30)]
    kept = select([(m, m) for m in moments], Policy(hourly=5, daily=0, weekly=0, monthly=0))
    # The newest of each hour, and the oldest because counts are left over.
    assert set(kept) == {moments[3], moments[1], moments[0]}


def test_minus_one_keeps_every_period_and_zero_keeps_nothing() -> None:
    moments = [datetime(2020 + y, 6, 1, tzinfo=UTC) for y in range(6)]
    items = [(m, m) for m in moments]
    assert set(select(items, Policy(hourly=0, daily=0, weekly=0, monthly=0, yearly=-1))) == set(
        moments
    )
    assert select(items, Policy(hourly=0, daily=0, weekly=0, monthly=0, yearly=0)) == {}
    two = select(items, Policy(hourly=0, daily=0, weekly=0, monthly=0, yearly=2))
    assert set(two) == set(moments[-2:])  # no counts left for the oldest
