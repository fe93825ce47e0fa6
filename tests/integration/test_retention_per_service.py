"""Retention per service: 60 days of an hourly database, a daily Grafana and a weekly step-ca
in one namespace, through a real PostgreSQL catalog and a real store (the local one and the
S3 server the suite starts), with the real retention pass run every day as beat would.

Issue 19's simulation: with one GFS series per namespace, the hourly database backups fill
every slot, and the slower services kept 1 of 9 step-ca backups and 1 of 60 Grafana
backups. Each service must keep what its own `[services.<name>.retention]` table says.

Time is injected the way beat stamps a backup: each backup row is created at its
simulated moment (`queries.create_backup(moment=…)`), and GFS reads those timestamps.
"""

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.health_fleet import make_fleet
from tests.plugins.object_stores import S3Server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Backup
from workers.fleet import Fleet
from workers.operations.backup import run_backup
from workers.operations.restore import run_restore
from workers.operations.retention import apply_retention
from workers.operations.verify import verify_backup
from workers.repository.manifest import MANIFEST_NAME
from workers.services_config import parse_fleet_config
from workers.stores import make_store
from workers.timestamps import format_timestamp, parse_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 3, 1, tzinfo=UTC)  # a Sunday
DAYS = 60
# Separate schedules, so separate backups (minutes apart: one backup of a namespace at a time).
DB_MINUTE, GRAFANA_AT, STEP_CA_AT = 0, (3, 15), (4, 30)
RETENTION_AT = (2, 30)  # RETENTION_SCHEDULE's default, 30 2 * * *


@pytest.fixture(autouse=True)
def _locks(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", redis_server.url)  # retention takes a lock in Redis
    monkeypatch.delenv("LOCK_REDIS_URL", raising=False)
    yield
    dispose_engines()


def services_file(data: Path) -> str:
    # Every count stated, so the settings' RETENTION_KEEP_* (the old per-namespace
    # policy) play no part in what each service keeps.
    return f"""
namespace = "app"
[services.db]
kind = "sqlite"
path = "{data / "app.db"}"
schedule = "{DB_MINUTE} * * * *"
[services.db.retention]
keep-hourly = 24
keep-daily = 7
keep-weekly = 0
keep-monthly = 0
keep-yearly = 0

[services.grafana]
kind = "directory"
path = "{data / "grafana"}"
schedule = "{GRAFANA_AT[1]} {GRAFANA_AT[0]} * * *"
[services.grafana.retention]
keep-hourly = 0
keep-daily = 7
keep-weekly = 0
keep-monthly = 0
keep-yearly = 0

[services.step-ca]
kind = "directory"
path = "{data / "step"}"
schedule = "{STEP_CA_AT[1]} {STEP_CA_AT[0]} * * 0"
[services.step-ca.retention]
keep-hourly = 0
keep-daily = 0
keep-weekly = 4
keep-monthly = 0
keep-yearly = 0
"""


def three_service_fleet(base: Fleet, tmp_path: Path) -> Fleet:
    data = tmp_path / "svc"
    for name in ("grafana", "step"):
        (data / name).mkdir(parents=True)
    with sqlite3.connect(data / "app.db") as db:
        db.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, value TEXT)")
    return replace(base, config=parse_fleet_config(services_file(data)))


def write_state(fleet: Fleet, service: str, moment: datetime) -> None:
    """Each backup holds data that names its moment, so a restore shows which one it was."""
    spec = fleet.config.services_of("app")[service]
    assert spec.path is not None
    if service == "db":
        with sqlite3.connect(spec.path) as db:
            db.execute("INSERT INTO metrics (value) VALUES (?)", (moment.isoformat(),))
    else:
        (spec.path / "state.txt").write_text(f"{service} at {moment.isoformat()}\n")


def scheduled_backup(fleet: Fleet, service: str, moment: datetime) -> str:
    """What beat does for one cron: a backup of that cron's services, stamped `moment`."""
    write_state(fleet, service, moment)
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session,
            namespace="app",
            services=[service],
            only_config=False,
            trigger="schedule",
            moment=moment,
        ).timestamp
    assert stamp == format_timestamp(moment)
    outcome = run_backup(fleet, namespace="app", timestamp=stamp)
    assert outcome.status == SUCCESS, outcome.error
    return stamp


def simulate(fleet: Fleet) -> dict[str, list[str]]:
    """60 days of beat: each hour's backups, and the retention pass every night."""
    taken: dict[str, list[str]] = {"db": [], "grafana": [], "step-ca": []}
    for hour in range(DAYS * 24):
        at = START + timedelta(hours=hour)
        if (at.hour, 30) == RETENTION_AT and hour >= 24:
            apply_retention(fleet, namespace="app")
        taken["db"].append(scheduled_backup(fleet, "db", at.replace(minute=DB_MINUTE)))
        if at.hour == GRAFANA_AT[0]:
            moment = at.replace(minute=GRAFANA_AT[1])
            taken["grafana"].append(scheduled_backup(fleet, "grafana", moment))
        if at.hour == STEP_CA_AT[0] and at.weekday() == 6:
            moment = at.replace(minute=STEP_CA_AT[1])
            taken["step-ca"].append(scheduled_backup(fleet, "step-ca", moment))
    apply_retention(fleet, namespace="app")  # the pass after the last backup
    return taken


def newest_of_each(stamps: list[str], period: Any, count: int) -> set[str]:
    """The newest stamp of each of the `count` newest periods (written out, not gfs.select)."""
    newest: dict[Any, str] = {}
    for stamp in stamps:
        key = period(parse_timestamp(stamp))
        newest[key] = max(newest.get(key, stamp), stamp)
    return {newest[key] for key in sorted(newest)[-count:]}


def in_catalog(fleet: Fleet) -> set[str]:
    with session_scope(fleet.settings.database_url) as session:
        query = select(Backup.timestamp).where(Backup.namespace == "app")
        return set(session.scalars(query))


def in_store(fleet: Fleet) -> set[str]:
    """Backups whose manifest (what makes a backup complete) is in the store."""
    return {
        info.key.split("/")[1]
        for info in fleet.store.list("app/")
        if info.key.endswith("/" + MANIFEST_NAME)
    }


def check_each_service_keeps_its_own_policy(fleet: Fleet, tmp_path: Path) -> None:
    taken = simulate(fleet)
    assert [len(taken[s]) for s in ("db", "grafana", "step-ca")] == [DAYS * 24, DAYS, 9]
    day = lambda t: t.date()  # noqa: E731
    expected = {
        "db": set(taken["db"][-24:]) | newest_of_each(taken["db"], day, 7),
        "grafana": set(taken["grafana"][-7:]),
        "step-ca": set(taken["step-ca"][-4:]),
    }
    assert len(expected["db"]) == 24 + 6  # today's daily is also its newest hourly
    kept = {service: set(stamps) & in_catalog(fleet) for service, stamps in taken.items()}
    assert kept == expected
    everything = set().union(*expected.values())
    assert in_catalog(fleet) == everything
    assert in_store(fleet) == everything  # and nothing else: the rest left the store too
    # What is kept is whole: every kept step-ca and grafana backup reads back against
    # its manifest, and the oldest kept step-ca backup restores what it held.
    for stamp in sorted(expected["step-ca"] | expected["grafana"]):
        assert [r.status for r in verify_backup(fleet, namespace="app", timestamp=stamp)] == [
            SUCCESS
        ]
    oldest = min(expected["step-ca"])
    state = fleet.config.services_of("app")["step-ca"].path
    assert state is not None
    (state / "state.txt").write_text("changed since\n")
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=oldest,
            services=["step-ca"],
            skipped=[],
            backup_url="x",
        ).id
    assert run_restore(fleet, restore_id=restore_id) == SUCCESS
    moment = parse_timestamp(oldest).isoformat()
    assert (state / "state.txt").read_text() == f"step-ca at {moment}\n"


@pytest.mark.timeout(1800)
def test_sixty_days_on_the_local_store(tmp_path: Path, pg_database: str) -> None:
    fleet = three_service_fleet(make_fleet(tmp_path, database_url=pg_database), tmp_path)
    check_each_service_keeps_its_own_policy(fleet, tmp_path)


@pytest.mark.timeout(1800)
def test_sixty_days_on_an_s3_server(
    tmp_path: Path, pg_database: str, s3_server: S3Server, s3_bucket: str
) -> None:
    settings = s3_server.make_settings(s3_bucket)
    base = make_fleet(
        tmp_path, store=make_store(settings), database_url=pg_database, settings=settings
    )
    check_each_service_keeps_its_own_policy(three_service_fleet(base, tmp_path), tmp_path)
