"""Time in Backfleet, always UTC: backup timestamps as the existing product writes them
(e.g. `2023-02-02t17-03-15`), five-field cron strings (minute hour day-of-month month
day-of-week), and durations (`2h`, `90m`: BACKUP_MAX_AGE, a hook's time limit)."""

import re
from calendar import monthrange
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery.schedules import crontab

TIMESTAMP_FORMAT = "%Y-%m-%dt%H-%M-%S"
TIMESTAMP_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}t[0-9]{2}-[0-9]{2}-[0-9]{2}\Z")


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse a backup timestamp; ValueError names the expected form."""
    if not TIMESTAMP_PATTERN.match(text):
        raise ValueError(f"timestamp {text!r} is not of the form 2023-02-02t17-03-15")
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # strptime's own words name its format string, not the date's fault
        raise ValueError(
            f"timestamp {text!r} is not a real moment: its month, day, hour, minute or second "
            "is out of range (the form is 2023-02-02t17-03-15, in UTC)"
        ) from None


# A moment as RFC 3339 writes it (a restore's target time): date, `T`, time with optional
# fraction, and an explicit offset (`Z` or `+00:00`): a moment without a zone is ambiguous.
MOMENT_PATTERN = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


def parse_moment(text: str) -> datetime:
    """An RFC 3339 date-time with its offset (`2026-03-02T14:31:59.250Z`), in UTC;
    ValueError names the expected form. A fraction past microseconds is cut."""
    found = MOMENT_PATTERN.match(text)
    if found is None:
        raise ValueError(
            f"{text[:40]!r} is not an RFC 3339 moment such as 2026-03-02T14:31:59Z (UTC; "
            "the offset is required)"
        )
    day, clock, fraction, offset = found.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}").astimezone(UTC)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a real moment: a field is out of range") from None


def format_moment(moment: datetime) -> str:
    """RFC 3339 in UTC with `Z`, to the microsecond when it has any (`2026-03-02T14:31:59Z`)."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def is_timestamp(text: str) -> bool:
    try:
        parse_timestamp(text)
    except ValueError:
        return False
    return True


def parse_cron(expression: str) -> "crontab":
    """Turn `0 * * * *` into a Celery crontab; ValueError says what is wrong."""
    # Imported here: settings validate cron strings through this module, and
    # celery's import (~60 ms) should not slow every CLI command and worker start.
    from celery.schedules import crontab

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {expression!r} must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except Exception as exc:  # celery raises ValueError and friends for bad fields
        raise ValueError(f"cron {expression!r} is not valid: {exc}") from None


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """`2h`, `90m`, `1d`, `3600s` or a plain number of seconds; at least one second."""
    number = text.strip().lower()
    digits = number.rstrip("smhdw")
    unit = number[len(digits) :]
    if unit not in _DURATION_UNITS or not digits.isdigit() or int(digits) < 1:
        raise ValueError(f"{text!r} is not a duration such as 2h, 90m, 1d or 7200")
    return int(digits) * _DURATION_UNITS[unit]


def format_duration(seconds: float) -> str:
    """`45s`, `12m`, `3h 20m`, `2d 4h`: a wait as a person reads it (to the unit below)."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(whole // 3600, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


# The Gregorian calendar repeats every 400 years, weekdays included (146097 days = 20871 weeks).
_CYCLE_START, _CYCLE_YEARS, _CYCLE_DAYS = 2000, 400, 146097
_MINUTES_PER_DAY = 24 * 60


@lru_cache(maxsize=256)
def longest_gap(expression: str) -> int | None:
    """Seconds of the longest wait between two consecutive runs of the cron (UTC); None if
    it never runs. Exact: a weekly cron gives 7 days, a monthly one 31, a leap-day one 8
    years. Day-of-month and day-of-week must both match, as in Celery's crontab (which
    beat runs)."""
    schedule = parse_cron(expression)
    times = sorted(hour * 60 + minute for hour in schedule.hour for minute in schedule.minute)
    days = _widest_day_gap(
        frozenset(schedule.month_of_year),
        frozenset(schedule.day_of_month),
        frozenset(schedule.day_of_week),
    )
    if days is None or not times:
        return None
    within_a_day = max((b - a for a, b in pairwise(times)), default=0)
    # From the day's last run to the first run of the next run day.
    between_days = days * _MINUTES_PER_DAY - (times[-1] - times[0])
    return int(max(within_a_day, between_days)) * 60


def _widest_day_gap(
    months: frozenset[int], days: frozenset[int], weekdays: frozenset[int]
) -> int | None:
    """The most days from one run day to the next (None: no run day at all)."""
    if len(months) == 12 and len(days) == 31:  # only weekdays matter: a 7-day cycle
        ordered = sorted(weekdays)
        return max(b - a for a, b in zip(ordered, [*ordered[1:], ordered[0] + 7], strict=True))
    # Else walk one whole cycle of the Gregorian calendar, which repeats every 400 years,
    # weekdays included; the gap across its end wraps to its first run day.
    every_weekday = len(weekdays) == 7
    first_day = last_day = None
    widest = 0
    for year in range(_CYCLE_START, _CYCLE_START + _CYCLE_YEARS):
        for month in sorted(months):
            first = date(year, month, 1)
            ordinal, weekday = first.toordinal(), first.isoweekday() % 7  # Sunday is 0
            length = monthrange(year, month)[1]
            for day in sorted(days):
                if day > length or not (every_weekday or (weekday + day - 1) % 7 in weekdays):
                    continue
                today = ordinal + day - 1
                if last_day is None:
                    first_day = today
                else:
                    widest = max(widest, today - last_day)
                last_day = today
    if first_day is None or last_day is None:
        return None
    return max(widest, first_day + _CYCLE_DAYS - last_day)


def next_run(expression: str, after: datetime) -> datetime:
    """The first run of the cron (UTC) after `after`, to the minute."""
    schedule = parse_cron(expression)
    schedule.nowfun = lambda: after  # measured from `after`, not from the wall clock
    # Celery's estimate lands a hair before the minute: round up to it.
    moment: datetime = after + schedule.remaining_estimate(after) + timedelta(seconds=1)
    return moment.replace(second=0, microsecond=0)
