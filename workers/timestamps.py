"""Time in Backfleet, always UTC: backup timestamps as the existing product writes them
(e.g. `2023-02-02t17-03-15`), and five-field cron strings (minute hour day-of-month month
day-of-week)."""

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
