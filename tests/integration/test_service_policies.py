"""Freshness and verification per service, each judged by its own policy, on a real catalog
(SQLite and PostgreSQL), with real backups and a real webhook receiver.

The check is the one the scheduled task runs (workers.monitoring.notify.check_staleness);
time is injected where a test needs the future (`now`), never waited for.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import workers.operations.verify
from tests.health_fleet import make_fleet
from tests.unit.test_metrics_status import scrape
from tests.webhook import WebhookServer, webhook_server
from workers.catalog import queries, reports
from workers.catalog.db import dispose_engines, session_scope
from workers.fleet import Fleet
from workers.monitoring.alerts import AlertEvent, alerter_for
from workers.monitoring.notify import check_staleness
from workers.operations.backup import run_backup
from workers.operations.verify import verify_backups

pytestmark = pytest.mark.integration
HOUR, DAY = 3600, 86400


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        yield request.getfixturevalue("pg_database")
    dispose_engines()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def fleet_of(
    tmp_path: Path, catalog: str, webhook: WebhookServer, services: str, **overrides: Any
) -> Fleet:
    """make_fleet's `db` (sqlite) and `files` (directory) on REGULAR_BACKUP_SCHEDULE
    (hourly), plus `services`, whose `{data}` is the folder of its data."""
    return make_fleet(
        tmp_path,
        database_url=catalog,
        extra_services=services.replace("{data}", str(tmp_path / "data")),
        alert_webhook_url=SecretStr(webhook.url),
        backup_max_age="2h",
        regular_backup_schedule="0 * * * *",
        **overrides,
    )


def backup_of(
    fleet: Fleet, services: list[str], moment: datetime, *, only_config: bool = False
) -> str:
    """A real backup of just these services (as a per-schedule or onlyConfig run takes)."""
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session,
            namespace="app",
            services=services,
            only_config=only_config,
            trigger="test",
            moment=moment,
        ).timestamp
    outcome = run_backup(fleet, namespace="app", timestamp=stamp)
    assert outcome.status == "Success", outcome.error
    return stamp


def stale_services(webhook: WebhookServer) -> list[str]:
    return sorted(body["service"] for body in webhook.received if body["event"] == "backup.stale")


WEEKLY_AND_HOURLY = """
[namespaces.app.services.weekly]
kind = "sqlite"
path = "{data}/app.db"
schedule = "0 3 * * 0"
[namespaces.app.services.hourly]
kind = "directory"
path = "{data}/files"
schedule = "0 * * * *"
"""


def test_a_weekly_service_3_days_old_is_fresh_an_hourly_one_3_hours_old_is_not(
    tmp_path: Path, catalog: str, webhook: WebhookServer
) -> None:
    fleet = fleet_of(tmp_path, catalog, webhook, WEEKLY_AND_HOURLY)
    now = datetime.now(UTC)
    backup_of(fleet, ["db", "files", "hourly", "weekly"], now - timedelta(days=3))
    backup_of(fleet, ["hourly"], now - timedelta(hours=3))
    backup_of(fleet, ["db", "files"], now - timedelta(minutes=30))

    found = {item.service: item for item in check_staleness(fleet)}
    assert {name for name, item in found.items() if item.stale} == {None, "hourly"}
    assert found["weekly"].max_age == 7 * DAY + 2 * HOUR  # its schedule's gap + BACKUP_MAX_AGE
    assert found["weekly"].age is not None and found["weekly"].age > 3 * DAY - 60
    assert found["hourly"].max_age == 1 * HOUR + 2 * HOUR
    # The webhook hears of the hourly service only.
    assert stale_services(webhook) == ["hourly"]
    assert "hourly of namespace app is stale" in webhook.received[0]["text"]
    assert "(its max_age is 3 h)" in webhook.received[0]["text"]

    m = scrape(fleet, {"backup": 0})
    label = lambda service: (("namespace", "app"), ("service", service))  # noqa: E731
    assert m[("backfleet_backup_stale", label("weekly"))] == 0
    assert m[("backfleet_backup_stale", label("hourly"))] == 1
    assert m[("backfleet_backup_stale", label(""))] == 1  # the namespace, through `hourly`
    assert m[("backfleet_backup_max_age_seconds", label("weekly"))] == 7 * DAY + 2 * HOUR
    assert m[("backfleet_backup_max_age_seconds", label("db"))] == 2 * HOUR
    assert m[("backfleet_backup_max_age_seconds", ())] == 2 * HOUR  # BACKUP_MAX_AGE

    backup_of(fleet, ["hourly"], datetime.now(UTC))
    assert not any(item.stale for item in check_staleness(fleet))
    assert stale_services(webhook) == ["hourly", "hourly"]  # closed, said once, not re-sent
    assert webhook.received[-1]["status"] == "resolved"
    check_staleness(fleet)
    assert stale_services(webhook) == ["hourly", "hourly"]


def test_a_fresh_install_alerts_only_once_a_first_run_was_due_plus_the_grace(
    tmp_path: Path, catalog: str, webhook: WebhookServer
) -> None:
    services = WEEKLY_AND_HOURLY.split("[namespaces.app.services.hourly]")[0]
    fleet = fleet_of(tmp_path, catalog, webhook, services)
    installed = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # a Wednesday
    check_staleness(fleet, now=installed)  # the fleet first sees its services

    # db and files: the 11:00 run, plus BACKUP_MAX_AGE (2 h).
    assert not any(f.stale for f in check_staleness(fleet, now=installed.replace(hour=12)))
    assert webhook.received == []
    # A restart changes nothing: when each service was first seen is in the catalog.
    restarted = fleet_of(tmp_path, catalog, webhook, services)
    at_13_01 = datetime(2026, 3, 4, 13, 1, tzinfo=UTC)
    check_staleness(restarted, now=at_13_01)
    assert stale_services(webhook) == ["db", "files"]

    # weekly: Sunday's 03:00 run, plus the 2 h of grace (not its whole 7 d 2 h max_age).
    sunday = datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
    found = {f.service: f for f in check_staleness(fleet, now=sunday + timedelta(hours=1))}
    assert not found["weekly"].stale
    assert found["weekly"].due_by == sunday + timedelta(hours=2)
    assert stale_services(webhook) == ["db", "files"]
    check_staleness(fleet, now=sunday + timedelta(hours=2, minutes=1))
    assert stale_services(webhook) == ["db", "files", "weekly"]
    weekly = webhook.received[-1]
    assert "no successful backup, and one was due by 2026-03-08 05:00 UTC" in weekly["text"]


def test_a_service_only_in_only_config_backups_is_judged_and_verified_by_them(
    tmp_path: Path, catalog: str, webhook: WebhookServer
) -> None:
    fleet = fleet_of(
        tmp_path,
        catalog,
        webhook,
        """
[namespaces.app.services.settings]
kind = "directory"
path = "{data}/files"
config = true
max_age = "1d"
""",
        verify_sample_size=0,
    )
    now = datetime.now(UTC)
    config_only = backup_of(fleet, ["settings"], now - timedelta(hours=20), only_config=True)
    full = backup_of(fleet, ["db", "files"], now - timedelta(minutes=10))

    found = {f.service: f for f in check_staleness(fleet)}
    assert found["settings"].last_success == config_only and not found["settings"].stale
    assert webhook.received == []

    # Each service's newest backup is verified: the onlyConfig one holds `settings`.
    verified = [r.timestamp for r in verify_backups(fleet)]
    assert verified == [full, config_only]


def test_verification_takes_each_due_service_s_newest_backup_and_skips_the_others(
    tmp_path: Path, catalog: str, webhook: WebhookServer
) -> None:
    fleet = fleet_of(
        tmp_path,
        catalog,
        webhook,
        """
[namespaces.app.services.fast]
kind = "sqlite"
path = "{data}/app.db"
verify = "1h"
[namespaces.app.services.slow]
kind = "directory"
path = "{data}/files"
verify = "7d"
""",
        verify_sample_size=0,
    )
    now = datetime.now(UTC)
    everything = ["db", "fast", "files", "slow"]
    first = backup_of(fleet, everything, now - timedelta(hours=5))
    assert [r.timestamp for r in verify_backups(fleet)] == [first]  # none verified yet: all due
    with session_scope(fleet.settings.database_url) as session:
        good = queries.newest_verified_good(session, namespace="app", service="slow")
        assert good is not None and good.timestamp == first

    second = backup_of(fleet, everything, now - timedelta(hours=4))
    third = backup_of(fleet, ["slow"], now - timedelta(hours=3))  # its own schedule's run

    # Within the hour nothing is due; two hours on, `fast` is (its newest is `second`),
    # while `slow` (newest: `third`), `db` and `files` were verified within their cadence.
    assert verify_backups(fleet, now=datetime.now(UTC) + timedelta(minutes=30)) == []
    later = datetime.now(UTC) + timedelta(hours=2)
    assert [r.timestamp for r in verify_backups(fleet, now=later)] == [second]
    with session_scope(fleet.settings.database_url) as session:
        fast = queries.newest_verified_good(session, namespace="app", service="fast")
        slow = queries.newest_verified_good(session, namespace="app", service="slow")
        assert fast is not None and fast.timestamp == second
        assert slow is not None and slow.timestamp == second  # `third` is not verified yet
        backup = queries.get_backup(session, namespace="app", timestamp=third)
        assert backup is not None and backup.verified is None

    # A week on, every service is due: each one's newest backup, newest first, once each.
    week = datetime.now(UTC) + timedelta(days=7)
    assert [r.timestamp for r in verify_backups(fleet, now=week)] == [third, second]


class Clock:
    """The verification's clock, moved by hand: each read of a backup takes `read` of it."""

    def __init__(self, at: datetime, read: timedelta) -> None:
        self.at, self.read = at, read

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def slow_reads(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every check of a backup in a store takes 70 minutes on the verification's clock."""
    clock = Clock(datetime.now(UTC), timedelta(minutes=70))
    real_check = workers.operations.verify.check_backup

    def check_backup(*args: Any, **kwargs: Any) -> Any:
        result = real_check(*args, **kwargs)
        clock.at += clock.read
        return result

    monkeypatch.setattr(workers.operations.verify, "utcnow", clock)
    monkeypatch.setattr(workers.operations.verify, "check_backup", check_backup)
    return clock


OTHER_NAMESPACE = """
[namespaces.other.services.docs]
kind = "directory"
path = "{data}/files"
"""


def test_a_daily_pass_verifies_every_day_however_long_the_reads_take(
    tmp_path: Path, catalog: str, webhook: WebhookServer, slow_reads: Clock
) -> None:
    # VERIFY_EVERY 1d on the daily VERIFY_SCHEDULE (the defaults); two namespaces, so the
    # second one's turn comes 70 minutes into the pass.
    fleet = fleet_of(tmp_path, catalog, webhook, OTHER_NAMESPACE, verify_sample_size=0)
    app = backup_of(fleet, ["db", "files"], datetime.now(UTC) - timedelta(hours=1))
    with session_scope(fleet.settings.database_url) as session:
        other = queries.create_backup(
            session, namespace="other", services=["docs"], only_config=False, trigger="test"
        ).timestamp
    assert run_backup(fleet, namespace="other", timestamp=other).status == "Success"

    first_pass = datetime.now(UTC) + timedelta(minutes=5)
    for day in range(4):
        slow_reads.at = first_pass + timedelta(days=day)  # beat starts the pass on time
        verified = [(r.namespace, r.timestamp) for r in verify_backups(fleet)]
        assert verified == [("app", app), ("other", other)], f"day {day}"


def test_a_failed_check_is_tried_again_at_the_next_pass_not_a_cadence_later(
    tmp_path: Path, catalog: str, webhook: WebhookServer
) -> None:
    fleet = fleet_of(tmp_path, catalog, webhook, "", verify_sample_size=0, verify_every="7d")
    stamp = backup_of(fleet, ["db", "files"], datetime.now(UTC) - timedelta(hours=1))
    (artifact,) = (tmp_path / "store" / "app" / stamp).glob("files.*")
    hidden = artifact.with_name("away")
    day = lambda n: datetime.now(UTC) + timedelta(days=n)  # noqa: E731

    artifact.rename(hidden)  # the store does not answer for it today
    assert [r.status for r in verify_backups(fleet, now=day(0))] == ["Failed"]
    hidden.rename(artifact)
    assert [r.status for r in verify_backups(fleet, now=day(1))] == ["Success"]
    assert verify_backups(fleet, now=day(2)) == []  # then verified within its 7 days

    # A check of the newest backup that fails between two due passes (asked for by hand,
    # or in the sample) makes it due at the next pass too.
    artifact.rename(hidden)
    failed = verify_backups(fleet, namespace="app", timestamp=stamp, now=day(3))
    assert [r.status for r in failed] == ["Failed"]
    hidden.rename(artifact)
    assert [r.status for r in verify_backups(fleet, now=day(4))] == ["Success"]
    assert verify_backups(fleet, now=day(5)) == []


def test_an_upgrade_keeps_a_service_that_has_been_failing_stale_and_its_alert_open(
    tmp_path: Path, catalog: str, webhook: WebhookServer
) -> None:
    fleet = fleet_of(
        tmp_path,
        catalog,
        webhook,
        """
[namespaces.app.services.legacy]
kind = "directory"
path = "{data}/files"
""",
    )
    now = datetime.now(UTC)
    backup_of(fleet, ["db", "files"], now - timedelta(minutes=30))
    # Three weeks of hourly backups in which `legacy` failed (the version before services_seen).
    with session_scope(fleet.settings.database_url) as session:
        for hours in (500, 300, 2):
            moment = now - timedelta(hours=hours)
            backup = queries.create_backup(
                session,
                namespace="app",
                services=["legacy"],
                only_config=False,
                trigger="test",
                moment=moment,
            )
            backup.status, backup.created_at, backup.finished_at = "Failed", moment, moment
    condition = "backup.stale:app:legacy"
    alert = AlertEvent("backup.stale", "legacy is stale", namespace="app", service="legacy")
    assert alerter_for(fleet).open(condition, alert)  # opened by the earlier version

    # The upgrade: services_seen is empty, so the check first sees `legacy` now.
    found = {f.service: f for f in check_staleness(fleet)}
    assert found["legacy"].stale and found["legacy"].last_success is None
    assert found["legacy"].due_by is not None and found["legacy"].due_by < now
    assert alerter_for(fleet).open_conditions(condition) == [condition]
    assert stale_services(webhook) == ["legacy"]  # still the one alert: not closed, not resent


def test_the_stale_alerts_of_services_and_namespaces_removed_from_the_file_are_closed(
    tmp_path: Path, catalog: str, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = fleet_of(tmp_path, catalog, webhook, "")
    backup_of(fleet, ["db"], datetime.now(UTC) - timedelta(hours=3))  # db stale; files never
    alerter = alerter_for(fleet)
    for namespace, service in (("app", "removed"), ("gone", "db"), ("gone", None)):
        condition = f"backup.stale:{namespace}" + (f":{service}" if service else "")
        alert = AlertEvent("backup.stale", "stale", namespace=namespace, service=service)
        assert alerter.open(condition, alert)

    with caplog.at_level("INFO", logger="workers.monitoring.notify"):
        check_staleness(fleet)
    # Only the configured stale service's alert stays open (files: due later).
    assert alerter.open_conditions("backup.stale:") == ["backup.stale:app:db"]
    with session_scope(fleet.settings.database_url) as session:
        assert reports.open_alert_count(session, namespace="gone") == 0
    assert "service removed of namespace app is no longer in the services file" in caplog.text
    assert "namespace gone is no longer in the services file" in caplog.text
    m = scrape(fleet, {"backup": 0})
    assert m[("backfleet_alerts_open", (("event", "backup.stale"),))] == 1
