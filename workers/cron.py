"""Five-field cron strings (minute hour day-of-month month day-of-week), evaluated in UTC."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery.schedules import crontab


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
