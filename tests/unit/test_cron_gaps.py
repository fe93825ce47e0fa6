"""The longest gap between two runs of a cron: what a service's derived max_age is made of."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from workers.fleet import Fleet
from workers.monitoring.health import service_max_age
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.memory import MemoryStore
from workers.timestamps import longest_gap, next_run

DAY, HOUR, MINUTE = 86400, 3600, 60


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 3 * * 0", 7 * DAY),  # weekly
        ("0 0 1 * *", 31 * DAY),  # monthly: January 1st to February 1st
        ("0 * * * *", HOUR),  # hourly
        ("*/7 * * * *", 7 * MINUTE),  # :56 to the next :00 is shorter
        ("0 3,15 * * *", 12 * HOUR),
        ("30 2 * * 1-5", 3 * DAY),  # Friday to Monday
        ("0 0,12 1 * *", 31 * DAY - 12 * HOUR),  # from the 1st's noon run to the next 1st
        ("0 0 31 * *", 61 * DAY),  # August 31st to October 31st
        ("0 0 * 1 *", 336 * DAY),  # every day of January: January 31st to January 1st
        ("0 0 13 * 5", 427 * DAY),  # Friday the 13th: at most 14 months apart
        ("0 0 29 2 *", (8 * 365 + 1) * DAY),  # leap days: 2096 to 2104 (2100 is not leap)
    ],
)
def test_the_longest_gap_of_a_cron(cron: str, gap: int) -> None:
    assert longest_gap(cron) == gap


@pytest.mark.parametrize(
    ("cron", "span"),
    [
        ("0 3 * * 0", timedelta(weeks=8)),
        ("0 0 1 * *", timedelta(days=400)),
        ("30 2 * * 1-5", timedelta(weeks=3)),
        ("*/7 * * * *", timedelta(hours=3)),
        ("0 0 31 * *", timedelta(days=400)),
    ],
)
def test_celery_s_own_runs_agree(cron: str, span: timedelta) -> None:
    """Beat's runs, stepped through with Celery's crontab, are never further apart."""
    start = datetime(2027, 1, 1, tzinfo=UTC)
    runs = [next_run(cron, start)]
    while runs[-1] < start + span:
        runs.append(next_run(cron, runs[-1]))
    widest = max((b - a).total_seconds() for a, b in pairwise(runs))
    assert widest == longest_gap(cron)


def policy_fleet(services: str) -> Fleet:
    config = parse_fleet_config(f'namespace = "app"\n{services}')
    settings = Settings(backup_max_age="2h", regular_backup_schedule="0 * * * *")
    return Fleet(settings=settings, config=config, store=MemoryStore())


def test_a_service_s_max_age_is_its_own_or_derived_from_its_schedule() -> None:
    fleet = policy_fleet(
        """
[services.weekly]
kind = "sqlite"
path = "/w.db"
schedule = "0 3 * * 0"
[services.monthly]
kind = "sqlite"
path = "/m.db"
schedule = "0 0 1 * *"
[services.stated]
kind = "sqlite"
path = "/s.db"
schedule = "0 3 * * 0"
max_age = "8d"
[services.regular]
kind = "sqlite"
path = "/r.db"
"""
    )
    # Its schedule's longest gap plus BACKUP_MAX_AGE as grace.
    assert service_max_age(fleet, "app", "weekly") == 7 * DAY + 2 * HOUR
    assert service_max_age(fleet, "app", "monthly") == 31 * DAY + 2 * HOUR
    assert service_max_age(fleet, "app", "stated") == 8 * DAY  # its own max_age wins
    assert service_max_age(fleet, "app", "regular") == 2 * HOUR  # BACKUP_MAX_AGE
