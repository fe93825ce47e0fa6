"""Time in Backfleet, always UTC: backup timestamps as the existing product writes them
(e.g. `2023-02-02t17-03-15`), five-field cron strings (minute hour day-of-month month
day-of-week), and durations (`2h`, `90m`: BACKUP_MAX_AGE, a hook's time limit)."""

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery.schedules import crontab

TIMESTAMP_FORMAT = "%Y-%m-%dt%H-%M-%S"
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}t\d{2}-\d{2}-\d{2}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse a backup timestamp; ValueError names the expected form."""
    if not TIMESTAMP_PATTERN.match(text):
        raise ValueError(f"timestamp {text!r} is not of the form 2023-02-02t17-03-15")
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


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
