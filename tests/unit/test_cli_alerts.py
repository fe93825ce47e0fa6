"""`backfleet alerts` (the open alerts, and with --all those resolved lately) and the
pointer to it in `backfleet status`, over a real catalog (SQLite)."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from tests.health_fleet import make_fleet, take_backup
from workers.catalog.db import dispose_engines
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, AlertEvent
from workers.monitoring.notify import check_staleness, report_backup_outcome
from workers.settings import get_settings


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def cli_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    fleet = make_fleet(tmp_path, backup_max_age="2h", backfleet_api_keys=SecretStr("k3y-s3cret"))
    monkeypatch.setenv("DATABASE_URL", fleet.settings.database_url)
    get_settings.cache_clear()
    yield fleet
    get_settings.cache_clear()


def test_backfleet_alerts_lists_open_and_recently_resolved_ones(cli_catalog: Fleet) -> None:
    fleet = cli_catalog
    alerter = Alerter(fleet.settings, fleet.secrets())
    alerter.open(
        "backup.stale:app:db",
        AlertEvent(
            event="backup.stale",
            text="Backfleet: service db of namespace app is stale (key k3y-s3cret)",
            namespace="app",
            service="db",
        ),
    )
    alerter.open(
        "storage.over_budget:other",
        AlertEvent(event="storage.over_budget", text="Backfleet: over", namespace="other"),
    )
    alerter.resolve("storage.over_budget:other")
    report_backup_outcome(fleet, "app", "2026-03-02t10-00-00", "Failed", "disk full")
    runner = CliRunner()

    table = runner.invoke(main, ["alerts"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["OPENED", "RESOLVED", "NAMESPACE", "SERVICE", "EVENT", "DELIVERY"]
    assert len(lines) == 3  # the open one only, its message on the next line
    assert "OPEN" in lines[1] and "backup.stale" in lines[1] and " db " in lines[1]
    assert "not delivered: no webhook configured" in lines[1]
    assert lines[2].strip().endswith("is stale (key ***)")  # redacted as stored

    listed = json.loads(runner.invoke(main, ["alerts", "--all", "--json"]).output)
    by_event = {item["event"]: item for item in listed}
    assert set(by_event) == {"backup.stale", "storage.over_budget", "backup.failed"}
    assert by_event["backup.stale"]["status"] == "open"
    assert by_event["backup.stale"]["delivery"] == "none"
    assert by_event["backup.stale"]["resolvedAt"] is None
    assert by_event["storage.over_budget"]["status"] == "resolved"
    assert by_event["storage.over_budget"]["resolveDelivery"] == "none"
    assert by_event["backup.failed"]["status"] == "event"
    assert "disk full" in by_event["backup.failed"]["message"]
    assert set(by_event["backup.stale"]) >= {
        "event",
        "namespace",
        "service",
        "openedAt",
        "resolvedAt",
        "delivery",
        "message",
    }

    only_other = json.loads(
        runner.invoke(main, ["alerts", "--since", "1h", "--json", "--namespace", "other"]).output
    )
    assert [item["event"] for item in only_other] == ["storage.over_budget"]
    table = runner.invoke(main, ["alerts", "--all"]).output
    assert "event" in table and "storage.over_budget" in table
    assert runner.invoke(main, ["alerts", "--namespace", "nowhere"]).output == "no open alerts\n"
    bad = runner.invoke(main, ["alerts", "--since", "soon"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_status_points_at_backfleet_alerts(
    cli_catalog: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = cli_catalog
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    take_backup(fleet, moment=datetime.now(UTC) - timedelta(hours=3))
    check_staleness(fleet)
    shown = CliRunner().invoke(main, ["status"])
    assert shown.exit_code == 1
    assert "2 open alert(s): `backfleet alerts` lists them" in shown.output
